package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/statefile"
)

// failingBackend is the fake process table refusing to start some apps.
type failingBackend struct {
	apitest.Fake
	fail map[string]bool
}

func (f *failingBackend) Start(ctx context.Context, apps []appspec.App, o api.StartOptions) ([]api.Proc, error) {
	for _, a := range apps {
		if f.fail[a.Name] {
			return nil, errors.New("script vanished")
		}
	}
	return f.Fake.Start(ctx, apps, o)
}

func runWith(t *testing.T, b api.Backend, home string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rc := Run(context.Background(), append([]string{"corral"}, args...), Options{
		Stdout: &out, Stderr: &errb, Dir: t.TempDir(), Environ: []string{"CORRAL_HOME=" + home}, Backend: b,
	})
	return rc, out.String(), errb.String()
}

// resurrect starts what the dump lists, leaves running apps alone, starts a
// name listed twice once, and reports apps that fail while starting the rest.
func TestResurrectSkipsRunningAndReportsFailures(t *testing.T) {
	home := t.TempDir()
	dump := filepath.Join(home, dumpName)
	apps := []appspec.App{
		{Name: "a", Script: "/x/a.js"},
		{Name: "b", Script: "/x/b.js", Instances: 2, ExecMode: "cluster", KillTimeout: 3000},
		{Name: "b", Script: "/x/b.js"},
		{Name: "c", Script: "/x/c.js"},
		{Name: "d", Script: "/x/d.js", Env: map[string]string{"K": "v"}},
	}
	if err := statefile.Save(dump, apps, false); err != nil {
		t.Fatal(err)
	}
	b := &failingBackend{fail: map[string]bool{"c": true}}
	b.Fake.Start(context.Background(), []appspec.App{{Name: "a", Script: "/x/a.js"}}, api.StartOptions{})

	rc, out, errOut := runWith(t, b, home, "resurrect")
	if rc != 1 {
		t.Errorf("exit %d, want 1 (c failed)", rc)
	}
	for _, want := range []string{
		"a: already in the process list (online), left alone",
		"b: listed twice in the dump, started once",
		"Restored b (2 instances, cluster)",
		"Restored d (1 instance, fork)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "1 of 5 apps failed to start") || !strings.Contains(errOut, "c: script vanished") {
		t.Errorf("stderr: %q", errOut)
	}
	procs, _ := b.List(context.Background())
	var got []string
	for _, p := range procs {
		got = append(got, p.Name)
		if p.Name == "b" && p.App.KillTimeout != 3000 || p.Name == "d" && p.Env["K"] != "v" {
			t.Errorf("%s started with %+v", p.Name, p.App)
		}
	}
	if strings.Join(got, ",") != "a,b,b,d" {
		t.Errorf("processes after resurrect: %v", got)
	}
}

// save writes the daemon's apps; an empty list does not replace a non-empty
// dump unless forced; cleardump empties it; resurrect without a dump says so.
func TestSaveEmptyAndCleardump(t *testing.T) {
	home := t.TempDir()
	dump := filepath.Join(home, dumpName)
	b := &apitest.Fake{}
	b.Start(context.Background(), []appspec.App{{Name: "a", Script: "/x/a.js"}}, api.StartOptions{})
	if rc, out, errOut := runWith(t, b, home, "save"); rc != 0 || !strings.Contains(out, "Successfully saved 1 app in "+dump) {
		t.Fatalf("save: %d %s %s", rc, out, errOut)
	}
	before, _ := os.ReadFile(dump)

	empty := &apitest.Fake{}
	rc, _, errOut := runWith(t, empty, home, "dump")
	if rc != 1 || !strings.Contains(errOut, "not overwriting it") {
		t.Errorf("empty save: %d %q", rc, errOut)
	}
	if after, _ := os.ReadFile(dump); !bytes.Equal(after, before) {
		t.Error("the refused save changed the dump")
	}
	if rc, out, _ := runWith(t, empty, home, "save", "--force"); rc != 0 || !strings.Contains(out, "saved 0 apps") {
		t.Errorf("save --force: %d %s", rc, out)
	}
	if got, _, _ := statefile.Load(dump); len(got) != 0 {
		t.Errorf("dump after save --force: %+v", got)
	}
	if bak, _, err := statefile.Load(dump + statefile.BackupSuffix); err != nil || len(bak) != 1 {
		t.Errorf("backup after save --force: %+v %v", bak, err)
	}

	runWith(t, b, home, "save")
	if rc, out, _ := runWith(t, b, home, "cleardump"); rc != 0 || !strings.Contains(out, "cleared") {
		t.Errorf("cleardump: %d %s", rc, out)
	}
	if got, _, err := statefile.Load(dump); err != nil || len(got) != 0 {
		t.Errorf("dump after cleardump: %+v %v", got, err)
	}

	other := t.TempDir()
	if rc, out, _ := runWith(t, empty, other, "resurrect"); rc != 0 || !strings.Contains(out, "Nothing to restore") {
		t.Errorf("resurrect without a dump: %d %s", rc, out)
	}
	os.WriteFile(filepath.Join(other, dumpName), []byte("{"), 0o600)
	if rc, _, errOut := runWith(t, empty, other, "resurrect"); rc != 1 || !strings.Contains(errOut, "dump unusable") {
		t.Errorf("resurrect of a corrupt dump without backup: %d %s", rc, errOut)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain/path-1.2":   "plain/path-1.2",
		"":                 "''",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"PATH=/a:/b":       "PATH=/a:/b",
		"$HOME":            "'$HOME'",
		"corral-x.service": "corral-x.service",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// A dump saved before the app name rules, with names they refuse, still loads: those apps start
// under fixed names, with a warning each, and nothing is lost.
func TestResurrectRenamesAppsWithRefusedNames(t *testing.T) {
	home := t.TempDir()
	apps := []appspec.App{
		{Name: "0", Script: "/x/zero.js"},
		{Name: "all", Script: "/x/all.js"},
		{Name: "two\nlines", Script: "/x/t.js"},
		{Name: "0-app", Script: "/x/taken.js"},
		{Name: "ok", Script: "/x/ok.js"},
	}
	if err := statefile.Save(filepath.Join(home, dumpName), apps, false); err != nil {
		t.Fatal(err)
	}
	b := &apitest.Fake{}
	rc, out, errOut := runWith(t, b, home, "resurrect")
	if rc != 0 {
		t.Fatalf("exit %d\n%s\n%s", rc, out, errOut)
	}
	for _, want := range []string{
		`warning: app name "0" is ambiguous: as a target, a number is a pm_id; add a letter: started as "0-app-2"`,
		`warning: app name "all" is ambiguous: as a target, "all" means every process: started as "all-app"`,
		`warning: app name "two\nlines" contains a control character (U+000A): names must be printable: started as "two_lines"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	procs, _ := b.List(context.Background())
	var got []string
	for _, p := range procs {
		got = append(got, p.Name)
	}
	if strings.Join(got, ",") != "0-app-2,all-app,two_lines,0-app,ok" {
		t.Errorf("started %q", got)
	}
}
