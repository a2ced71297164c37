package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/container"
)

func TestRuntimeArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/usr/bin/corral-runtime start app.js -i 2", "corral runtime start app.js -i 2"},
		{"corral-runtime app.js --raw", "corral runtime app.js --raw"},
		{"./corral-runtime", "corral runtime"},
		{"corral-runtime --version", "corral --version"},
		{"/usr/bin/corral start app.js", "/usr/bin/corral start app.js"},
		{"corral-runtime-x app.js", "corral-runtime-x app.js"},
	} {
		if got := strings.Join(RuntimeArgs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("RuntimeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := RuntimeArgs(nil); got != nil {
		t.Errorf("RuntimeArgs(nil) = %q", got)
	}
}

// runtimeCall is what a fake Options.Runtime received.
type runtimeCall struct {
	apps []appspec.App
	cfg  container.Options
}

// runRuntimeCLI runs a command line with a fake container runtime that
// returns code, in dir with CORRAL_HOME=home (when not empty).
func runRuntimeCLI(t *testing.T, dir, home string, code int, args ...string) (int, *runtimeCall, string) {
	t.Helper()
	var call *runtimeCall
	var out bytes.Buffer
	environ := []string{"PATH=" + os.Getenv("PATH"), "FOO=bar"}
	if home != "" {
		environ = append(environ, "CORRAL_HOME="+home)
	}
	rc := Run(context.Background(), append([]string{"corral"}, args...), Options{
		Stdout: &out, Stderr: &out, Dir: dir, Environ: environ, Self: "/bin/corral",
		Runtime: func(_ context.Context, apps []appspec.App, cfg container.Options) int {
			call = &runtimeCall{apps: apps, cfg: cfg}
			cfg.Ready(":1234")
			return code
		},
	})
	return rc, call, out.String()
}

// `corral runtime` builds its apps exactly as start does and hands the
// runtime options over; the runtime's exit code is the command's.
func TestRuntimeCommandScript(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644)
	rc, call, out := runRuntimeCLI(t, dir, "rel-home", 3,
		"runtime", "start", "app.js", "-i", "2", "--name", "web", "--kill-timeout", "3s", "--port", "0", "--json", "--no-auto-exit", "--", "x", "y")
	if rc != 3 || call == nil {
		t.Fatalf("exit %d, call %v: %s", rc, call, out)
	}
	if len(call.apps) != 1 {
		t.Fatalf("apps: %+v", call.apps)
	}
	a := call.apps[0]
	if a.Name != "web" || a.Instances != 2 || a.ExecMode != "cluster" || a.KillTimeout != 3000 ||
		a.Script != filepath.Join(dir, "app.js") || !slices.Equal(a.Args, []string{"x", "y"}) || a.RunEnv()["FOO"] != "bar" {
		t.Errorf("app: %+v", a)
	}
	c := call.cfg
	if c.ProbeAddr != ":0" || !c.JSON || c.Raw || !c.NoAutoExit || c.Home != filepath.Join(dir, "rel-home") || c.Self != "/bin/corral" {
		t.Errorf("config: %+v", c)
	}
	if !strings.Contains(out, "corral-runtime: probes on :1234\n") {
		t.Errorf("Ready did not print the probe address: %q", out)
	}

	// corral-runtime app.js (no "start"), no probes, no CORRAL_HOME, exit 0.
	rc, call, out = runRuntimeCLI(t, dir, "", 0, RuntimeArgs([]string{"corral-runtime", "app.js", "--raw", "--web"})[1:]...)
	if rc != 0 || call == nil {
		t.Fatalf("exit %d: %s", rc, out)
	}
	if call.apps[0].Name != "app" || call.cfg.Home != "" || !call.cfg.Raw || call.cfg.ProbeAddr != ":9615" {
		t.Errorf("app %+v config %+v", call.apps[0], call.cfg)
	}
	// PM2's "--web <port>".
	if rc, call, out = runRuntimeCLI(t, dir, "", 0, "runtime", "--web", "9000", "app.js"); rc != 0 || call.cfg.ProbeAddr != ":9000" {
		t.Errorf("--web 9000 app.js: %d %q", rc, out)
	}
	if rc, call, out = runRuntimeCLI(t, dir, "", 0, "runtime", "app.js", "--web", "9001"); rc != 0 || call.cfg.ProbeAddr != ":9001" {
		t.Errorf("app.js --web 9001: %d %q", rc, out)
	}
}

func TestRuntimeCommandEcosystem(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.js"), []byte("//"), 0o644)
	os.WriteFile(filepath.Join(dir, "eco.json"), []byte(`{"apps": [
		{"name": "a", "script": "a.js", "env": {"X": "1"}, "env_prod": {"X": "2"}},
		{"name": "b", "script": "a.js"}]}`), 0o644)
	rc, call, out := runRuntimeCLI(t, dir, "", 0, "runtime", "eco.json", "--only", "a", "--env", "prod", "--port", "127.0.0.1:9000")
	if rc != 0 || call == nil {
		t.Fatalf("exit %d: %s", rc, out)
	}
	if len(call.apps) != 1 || call.apps[0].Name != "a" || call.apps[0].Env["X"] != "2" || call.apps[0].ShellEnv["FOO"] != "bar" ||
		call.apps[0].Script != filepath.Join(dir, "a.js") || call.cfg.ProbeAddr != "127.0.0.1:9000" {
		t.Errorf("apps %+v config %+v", call.apps, call.cfg)
	}
}

// Bad input is reported before the runtime starts.
func TestRuntimeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runtime"}, "no script or ecosystem file given"},
		{[]string{"runtime", "start"}, "no script or ecosystem file given"},
		{[]string{"runtime", "start", "a.js", "b.js"}, "one script or ecosystem file at a time"},
		{[]string{"runtime", "missing.js"}, "script not found"},
		{[]string{"runtime", "missing.config.js"}, "missing.config.js"},
		{[]string{"runtime", "app.js", "--port", "70000"}, `--port "70000"`},
		{[]string{"runtime", "app.js", "--web=x:y"}, `--web "x:y"`},
		{[]string{"runtime", "app.js", "--raw", "--json"}, "exclude each other"},
		{[]string{"runtime", "app.js", "-i", "lots"}, "--instances"},
	} {
		rc, call, out := runRuntimeCLI(t, dir, "", 0, tc.args...)
		if rc != 1 || call != nil || !strings.Contains(out, tc.want) {
			t.Errorf("corral %s: exit %d, runtime called %v, output %q; want an error with %q", strings.Join(tc.args, " "), rc, call != nil, out, tc.want)
		}
	}
	// Without a runtime built in.
	var out bytes.Buffer
	rc := Run(context.Background(), []string{"corral", "runtime", "app.js"}, Options{Stdout: &out, Stderr: &out, Dir: dir, Environ: []string{}})
	if rc != 1 || !strings.Contains(out.String(), "no container runtime") {
		t.Errorf("no runtime: %d %q", rc, out.String())
	}
}
