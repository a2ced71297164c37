package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// RestartOptions.AppEnv replaces the app's own variables (an ecosystem file read again), with
// or without --update-env; an app in the older merged form (no ShellEnv) is split first, its
// whole environment becoming the shell environment under the new own variables.
func TestRestartAppEnvReplacesOwnVariables(t *testing.T) {
	m := newTestManager(t, Config{})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{testAppEnv: "sleep", "GORACE": "atexit_sleep_ms=0"}
	merged := map[string]string{"PATH": os.Getenv("PATH"), "SHELL_ONLY": "s", "BAR": "old", "DROPPED": "d"}
	for k, v := range base {
		merged[k] = v
	}
	startSleepers(t, m, appspec.App{Name: "own", Script: exe, Cwd: filepath.Dir(exe), Env: merged})

	restart := func(what string, opts api.RestartOptions, reload bool) api.Proc {
		t.Helper()
		op := m.Restart
		if reload {
			op = m.Reload
		}
		procs, _, err := op(context.Background(), []string{"own"}, opts)
		if err != nil || len(procs) != 1 {
			t.Fatalf("%s: %v %v", what, procs, err)
		}
		return procs[0]
	}
	own := map[string]string{"BAR": "new"}
	for k, v := range base {
		own[k] = v
	}
	p := restart("restart with AppEnv", api.RestartOptions{AppEnv: own}, false)
	if p.Env["BAR"] != "new" || p.Env["SHELL_ONLY"] != "s" || p.App.Env["DROPPED"] != "" || p.App.ShellEnv["BAR"] != "old" {
		t.Errorf("restart with AppEnv: env %v, own %v, shell %v", p.Env, p.App.Env, p.App.ShellEnv)
	}

	// Reload with --update-env and AppEnv: both maps are replaced; the own variables win.
	shell := map[string]string{"PATH": os.Getenv("PATH"), "BAR": "shell", "NEW": "1"}
	own2 := map[string]string{"BAR": "newer"}
	for k, v := range base {
		own2[k] = v
	}
	p = restart("reload --update-env with AppEnv", api.RestartOptions{UpdateEnv: true, Env: shell, AppEnv: own2}, true)
	if p.Env["BAR"] != "newer" || p.Env["NEW"] != "1" {
		t.Errorf("reload: env %v", p.Env)
	}
	for _, k := range []string{"SHELL_ONLY", "DROPPED"} {
		if v, ok := p.Env[k]; ok {
			t.Errorf("reload: %s=%q, want it unset", k, v)
		}
	}
	apps, _ := m.Apps(context.Background())
	if len(apps) != 1 || apps[0].Env["BAR"] != "newer" || apps[0].ShellEnv["BAR"] != "shell" {
		t.Errorf("saved definition: env %v shell env %v", apps[0].Env, apps[0].ShellEnv)
	}
}
