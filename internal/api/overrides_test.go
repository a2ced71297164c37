package api

import (
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/appspec"
)

func TestOverridesApply(t *testing.T) {
	no := false
	app := appspec.App{
		Name: "web", Script: "/srv/web/app.js", Cwd: "/srv/web", KillTimeout: 1600, MaxMemoryRestart: 1 << 20,
		InterpreterArgs: []string{"--harmony"}, Autorestart: &no, OutFile: "/var/log/web.out",
		Env: map[string]string{"A": "1"},
	}
	var ov Overrides
	for field, v := range map[string]any{
		"kill_timeout":     int64(5000),
		"interpreter_args": nil,          // cleared
		"autorestart":      (*bool)(nil), // back to the default
		"out_file":         "logs/out.log",
		"error_file":       "NULL",
		"log_file":         "/abs/all.log",
	} {
		if err := ov.Set(field, v); err != nil {
			t.Fatalf("Set(%s): %v", field, err)
		}
	}
	got, err := ov.Apply(app)
	if err != nil {
		t.Fatal(err)
	}
	want := app
	want.KillTimeout = 5000
	want.InterpreterArgs = nil
	want.Autorestart = nil
	want.OutFile = "/srv/web/logs/out.log" // relative to the app's cwd
	want.ErrorFile = "NULL"
	want.LogFile = "/abs/all.log"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Apply:\n got %+v\nwant %+v", got, want)
	}
	if app.KillTimeout != 1600 || app.InterpreterArgs == nil {
		t.Error("Apply changed its argument")
	}

	// A relative log path follows a new cwd given with it.
	var moved Overrides
	moved.Set("cwd", "/srv/new")
	moved.Set("out_file", "out.log")
	if got, _ := moved.Apply(app); got.Cwd != "/srv/new" || got.OutFile != "/srv/new/out.log" {
		t.Errorf("with a new cwd: cwd %q out_file %q", got.Cwd, got.OutFile)
	}
}

func TestOverridesRefuse(t *testing.T) {
	var ov Overrides
	if err := ov.Set("kill_timeout", "5s"); err == nil || !strings.Contains(err.Error(), "kill_timeout") {
		t.Errorf("wrong type: %v", err)
	}
	if err := ov.Set("colour", "red"); err == nil {
		t.Error("unknown field accepted")
	}
	if err := ov.Set("env_sets", nil); err == nil {
		t.Error("a field without a JSON name accepted")
	}
	if len(ov.Fields) != 0 {
		t.Errorf("refused values recorded: %q", ov.Fields)
	}
	app := appspec.App{Name: "web", Script: "a.js"}
	for _, fields := range [][]string{{"kill_timeout", "bogus"}} {
		ov := Overrides{Fields: fields, App: appspec.App{Name: "other", KillTimeout: 1}}
		got, err := ov.Apply(app)
		if err == nil || !reflect.DeepEqual(got, app) {
			t.Errorf("Apply(%q) = %+v, %v; want an error and the app unchanged", fields, got, err)
		}
	}
	// "name" renames (PM2's restart --name).
	ov = Overrides{Fields: []string{"name"}, App: appspec.App{Name: "other", KillTimeout: 1}}
	if got, err := ov.Apply(app); err != nil || got.Name != "other" || got.KillTimeout != 0 {
		t.Errorf("Apply(name) = %+v, %v", got, err)
	}
}

func TestOverridesFrom(t *testing.T) {
	cur := appspec.App{Name: "web", Script: "/a.js", KillTimeout: 1600, InterpreterArgs: []string{"--x"}, Env: map[string]string{"A": "1"}}
	next := appspec.App{Name: "web", Script: "/a.js", KillTimeout: 3000, LogDateFormat: "YYYY", Env: map[string]string{"A": "2"}}
	ov := OverridesFrom(cur, next)
	if !reflect.DeepEqual(ov.Fields, []string{"kill_timeout", "log_date_format"}) {
		t.Fatalf("fields %q", ov.Fields)
	}
	got, err := ov.Apply(cur)
	if err != nil || got.KillTimeout != 3000 || got.LogDateFormat != "YYYY" || !reflect.DeepEqual(got.InterpreterArgs, []string{"--x"}) || got.Env["A"] != "1" {
		t.Errorf("applied %+v, %v", got, err)
	}
	if ov := OverridesFrom(cur, cur); len(ov.Fields) != 0 {
		t.Errorf("same app: %q", ov.Fields)
	}
}
