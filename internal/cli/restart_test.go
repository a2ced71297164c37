package cli

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/spf13/pflag"
)

// restart --<option> is one request: the daemon reads, changes and restarts
// the apps (then the table is listed, as after every restart).
func TestRestartWithOptionIsOneRequest(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644)
	env := []string{"PATH=" + os.Getenv("PATH")}
	f := &apitest.Fake{}
	if code, _, stderr := runFake(t, f, dir, env, "start", "app.js", "--name", "web", "-i", "2"); code != 0 {
		t.Fatal(stderr)
	}
	before := len(f.Calls())

	code, stdout, stderr := runFake(t, f, dir, env, "restart", "web", "--kill-timeout", "5000", "-o", "out.log")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := []string{"restart [web] overrides=[kill_timeout out_file]", "list"}
	if got := f.Calls()[before:]; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if !strings.Contains(stdout, "Applying action restartProcessId on app [web] with new options: --kill-timeout --output") {
		t.Errorf("stdout:\n%s", stdout)
	}
	for _, p := range f.Procs() {
		if p.App.KillTimeout != 5000 || p.App.OutFile != filepath.Join(dir, "out.log") || p.Restarts != 1 {
			t.Errorf("pm_id %d after restart: kill_timeout %d out_file %q restarts %d", p.PMID, p.App.KillTimeout, p.App.OutFile, p.Restarts)
		}
	}

	// reload: the same request, and the daemon's note that it restarted.
	before = len(f.Calls())
	code, stdout, stderr = runFake(t, f, dir, env, "reload", "0", "--max-memory-restart", "200M", "--update-env")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want = []string{"reload [0] update-env=map[PATH:" + os.Getenv("PATH") + "] overrides=[max_memory_restart]", "list"}
	if got := f.Calls()[before:]; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if !strings.Contains(stdout, "note: reload with changed options restarts web") {
		t.Errorf("stdout lacks the note:\n%s", stdout)
	}

	// Bad values are refused before anything is sent.
	before = len(f.Calls())
	for _, args := range [][]string{
		{"restart", "web", "--kill-timeout", "abc"},
		{"start", "web", "--name", "other"},
		{"restart", "web", "--cwd", "missing"},
		{"reload", "ecosystem.config.js", "--time"},
	} {
		if code, _, _ := runFake(t, f, dir, env, args...); code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
	}
	// (Reads are fine: start <app> lists the apps to know it.)
	if got := slices.DeleteFunc(f.Calls()[before:], func(c string) bool { return c == "list" }); len(got) != 0 {
		t.Errorf("refused restarts sent %q", got)
	}
}

// Every option flag of start, given to restart, changes the app as it does
// when given to start: the table's field names and value types are right.
func TestRestartOptionsMatchStart(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644)
	env := []string{"PATH=" + os.Getenv("PATH")}
	options := []string{
		"-i", "3", "--namespace", "ns", "-x",
		"--wait-ready", "--listen-timeout", "5000", "--kill-timeout", "3s", "--kill-signal", "term",
		"--shutdown-with-message", "--no-autorestart", "--no-autostart", "--max-restarts", "3", "--min-uptime", "10s",
		"--restart-delay", "250", "--exp-backoff-restart-delay", "100", "--stop-exit-codes", "0,3",
		"--merge-logs", "--time", "--log-date-format", "YYYY", "-o", "out.log", "-e", "/tmp/err.log",
		"-l", "NULL", "--increment-var", "PORT", "--instance-var", "INST", "--interpreter-args", "--harmony --x",
		"--interpreter", "node", "--listen", ":3000", "--listen", ":3001", "--max-memory-restart", "150M",
		"--cron-restart", "0 * * * *", "--watch", "--ignore-watch", "node_modules", "--log-type", "json",
		"--log-max-size", "10M", "--log-max-files", "4", "--uid", "nobody", "--gid", "nogroup",
	}
	started := &apitest.Fake{}
	if code, _, stderr := runFake(t, started, dir, env, append([]string{"start", "app.js", "--name", "web"}, options...)...); code != 0 {
		t.Fatal(stderr)
	}
	restarted := &apitest.Fake{}
	if code, _, stderr := runFake(t, restarted, dir, env, "start", "app.js", "--name", "web"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runFake(t, restarted, dir, env, append([]string{"restart", "web"}, options...)...); code != 0 {
		t.Fatal(stderr)
	}
	want, got := started.Procs()[0].App, restarted.Procs()[0].App
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restart with options:\n got %+v\nwant %+v", got, want)
	}
}

// The option table names real flags and real app fields, and covers every
// flag of start that is an option.
func TestOptionFlagsTable(t *testing.T) {
	fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
	f := &startFlags{}
	(&app{}).addStartFlags(fs, f)
	inTable := map[string]bool{}
	for _, o := range optionFlags(f) {
		inTable[o.flag] = true
		if fs.Lookup(o.flag) == nil {
			t.Errorf("%s: no such flag", o.flag)
		}
		var ov api.Overrides
		if err := ov.Set(o.field, nil); err != nil {
			t.Errorf("%s: %v", o.flag, err)
		}
	}
	apart := map[string]bool{"name": true, "cwd": true, "force": true, "update-env": true, "env": true, "only": true}
	fs.VisitAll(func(fl *pflag.Flag) {
		if !inTable[fl.Name] && !apart[fl.Name] {
			t.Errorf("start flag --%s is neither in the option table nor handled apart", fl.Name)
		}
	})
}

// Targets reach the daemon as given, except ecosystem files and /regex/,
// which the CLI expands to app names.
func TestResolveTargets(t *testing.T) {
	f := &apitest.Fake{}
	f.Start(context.Background(), []appspec.App{{Name: "web-1"}, {Name: "web-2", Instances: 2}, {Name: "db"}}, api.StartOptions{})
	a := &app{}
	got, err := a.resolveTargets(context.Background(), f, []string{"db", "/^web-/", "7"}, "")
	if err != nil || !slices.Equal(got, []string{"db", "web-1", "web-2", "7"}) {
		t.Errorf("resolveTargets = %q, %v", got, err)
	}
	if _, err := a.resolveTargets(context.Background(), f, nil, ""); err != api.ErrNoTarget {
		t.Errorf("no target: %v", err)
	}
}

// PM2's flags that change no option (-s, the no-op flags) leave a reload a plain reload.
func TestFlagsThatAreNoOptions(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644)
	env := []string{"PATH=" + os.Getenv("PATH")}
	f := &apitest.Fake{}
	if code, _, stderr := runFake(t, f, dir, env, "start", "app.js", "--name", "web", "--no-vizion", "--no-pmx"); code != 0 {
		t.Fatal(stderr)
	}
	before := len(f.Calls())
	code, stdout, stderr := runFake(t, f, dir, env, "reload", "web", "-s", "--no-automation", "--deep-monitoring")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := f.Calls()[before:]; len(got) == 0 || got[0] != "reload [web]" {
		t.Errorf("calls %q, want a plain reload", got)
	}
	if stdout != "" {
		t.Errorf("-s printed %q", stdout)
	}
}
