package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/appspec"
)

func TestDenoArgs(t *testing.T) {
	env := "--allow-env=" + clusterWorkerEnv
	for _, c := range []struct {
		in      []string
		cluster bool
		want    []string
	}{
		{nil, false, []string{"run"}},
		{nil, true, []string{"run", env}},
		{[]string{"-A"}, true, []string{"run", "-A"}},
		{[]string{"run", "--allow-net"}, true, []string{"run", env, "--allow-net"}},
		{[]string{"--allow-env=PORT", "--allow-net"}, true, []string{"run", "--allow-env=PORT," + clusterWorkerEnv, "--allow-net"}},
		{[]string{"run", "--allow-env"}, true, []string{"run", "--allow-env"}},
		{[]string{"serve"}, false, []string{"serve"}},
	} {
		if got := denoArgs(c.in, c.cluster); !slices.Equal(got, c.want) {
			t.Errorf("denoArgs(%q, %v) = %q, want %q", c.in, c.cluster, got, c.want)
		}
	}
}

// Bun and Deno scripts run in cluster mode, with the arguments each needs; other interpreters fall back
// to fork mode with a note.
func TestResolveRuntimes(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"bun", "deno", "python3"} {
		os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "app.mjs"), []byte(""), 0o644)
	for _, c := range []struct {
		interp, argv, mode string
		note               bool
	}{
		{"bun", "bun app.mjs", "cluster", false},
		{"deno", "deno run --allow-env=" + clusterWorkerEnv + " --allow-net app.mjs", "cluster", false},
		{"python3", "python3 --allow-net app.mjs", "fork", true},
	} {
		if c.interp == "deno" {
			spec := appspec.App{Script: "app.mjs", Cwd: dir, Interpreter: filepath.Join(dir, "deno"), ExecMode: "cluster", Instances: 2}
			if _, r, _ := resolveApp(spec, "/usr/bin/corral"); !slices.ContainsFunc(r.notes, func(n string) bool { return strings.Contains(n, "cannot listen") }) {
				t.Errorf("deno without --allow-net: notes %q", r.notes)
			}
		}
		spec := appspec.App{Script: "app.mjs", Cwd: dir, Interpreter: filepath.Join(dir, c.interp), ExecMode: "cluster", Instances: 2,
			InterpreterArgs: []string{"--allow-net"}}
		if c.interp == "bun" {
			spec.InterpreterArgs = nil
		}
		_, r, err := resolveApp(spec, "/usr/bin/corral")
		if err != nil {
			t.Fatal(err)
		}
		var argv []string
		for _, a := range r.argv {
			argv = append(argv, filepath.Base(a))
		}
		note := slices.ContainsFunc(r.notes, func(n string) bool { return strings.Contains(n, "exec_mode cluster needs") })
		if strings.Join(argv, " ") != c.argv || r.mode.String() != c.mode || note != c.note {
			t.Errorf("%s: argv %q, mode %s, notes %q", c.interp, argv, r.mode, r.notes)
		}
	}
}
