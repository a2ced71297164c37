package api

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	// Not in pm_id order, as a map-backed table hands them over.
	procs := []Proc{
		{PMID: 3, Name: "api", Namespace: "shop"},
		{PMID: 0, Name: "web", Namespace: "shop"},
		{PMID: 1, Name: "web", Namespace: "shop"},
		{PMID: 2, Name: "worker"}, // no namespace: "default"
		{PMID: 4, Name: "7", Namespace: "default"},
		{PMID: 7, Name: "cron", Namespace: "default"},
	}
	ids := func(ps []Proc) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.PMID)
		}
		return out
	}
	for _, c := range []struct {
		targets []string
		want    []int
	}{
		{[]string{"all"}, []int{0, 1, 2, 3, 4, 7}},
		{[]string{"web"}, []int{0, 1}},
		{[]string{"1"}, []int{1}},
		{[]string{"shop"}, []int{0, 1, 3}},
		{[]string{"default"}, []int{2, 4, 7}},
		{[]string{"/^w/"}, []int{0, 1, 2}},
		{[]string{"/ork/"}, []int{2}},                // unanchored
		{[]string{"7"}, []int{4, 7}},                 // the pm_id and the app called "7"
		{[]string{" web ", "0", "web"}, []int{0, 1}}, // trimmed, no duplicates
		{[]string{"worker", "api"}, []int{2, 3}},     // pm_id order, not target order
	} {
		got, err := Match(procs, c.targets)
		if err != nil || !slices.Equal(ids(got), c.want) {
			t.Errorf("Match(%q) = %v, %v; want %v", c.targets, ids(got), err, c.want)
		}
	}

	// Every unknown target is named; nothing is returned.
	got, err := Match(procs, []string{"web", "ghost", "/^z/", "42"})
	if !errors.Is(err, ErrUnknownTarget) || got != nil {
		t.Fatalf("unknown targets: %v, %v", ids(got), err)
	}
	for _, name := range []string{"ghost", "/^z/", "42"} {
		if !strings.Contains(err.Error(), "process or namespace not found: "+name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if strings.Contains(err.Error(), "web") {
		t.Errorf("error %q names a target that exists", err)
	}

	// "all" of nothing is unknown too; no target and a bad regex are errors of their own.
	if _, err := Match(nil, []string{"all"}); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("all of nothing: %v", err)
	}
	if _, err := Match(procs, nil); !errors.Is(err, ErrNoTarget) {
		t.Errorf("no target: %v", err)
	}
	if _, err := Match(procs, []string{"/[/"}); err == nil || errors.Is(err, ErrUnknownTarget) || !strings.Contains(err.Error(), "target /[/") {
		t.Errorf("bad regex: %v", err)
	}
	// "/" and "//" are names, not regexes.
	if _, err := Match(procs, []string{"//"}); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("//: %v", err)
	}
}

func TestLookup(t *testing.T) {
	procs := []Proc{{PMID: 0, Name: "web", Namespace: "shop"}, {PMID: 1, Name: "web"}, {PMID: 2, Name: "db"}}
	if got := Lookup(procs, "web"); len(got) != 2 {
		t.Errorf("by name: %v", got)
	}
	if got := Lookup(procs, "2"); len(got) != 1 || got[0].Name != "db" {
		t.Errorf("by id: %v", got)
	}
	for _, ref := range []string{"all", "shop", "/w/", "3"} {
		if got := Lookup(procs, ref); got != nil {
			t.Errorf("Lookup(%q) = %v, want nil", ref, got)
		}
	}
}

func TestIsEcosystemFile(t *testing.T) {
	for in, want := range map[string]bool{"ecosystem.config.js": true, "pm2.config.CJS": true, "x.config.mjs": true, "apps.json": true,
		"a.yml": true, "a.yaml": true, "app.js": false, "server.mjs": false, "web": false} {
		if got := IsEcosystemFile(in); got != want {
			t.Errorf("IsEcosystemFile(%q) = %v", in, got)
		}
	}
}
