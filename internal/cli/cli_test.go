package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// runFake runs the CLI in-process against b.
func runFake(t *testing.T, b api.Backend, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"corral"}, args...), Options{
		Stdout: &out, Stderr: &errb, Environ: env, Dir: dir, Backend: b,
	})
	return code, out.String(), errb.String()
}

func TestStartFlagsBuildTheApp(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &apitest.Fake{}
	code, _, stderr := runFake(t, f, dir, []string{"A=1", "PATH=" + os.Getenv("PATH")},
		"start", "app.js", "-n", "api", "-i", "max", "--namespace", "ns",
		"--wait-ready", "--listen-timeout", "5000", "--kill-timeout", "3s", "--kill-signal", "term",
		"--shutdown-with-message", "--no-autorestart", "--max-restarts", "3", "--min-uptime", "10s",
		"--restart-delay", "250", "--exp-backoff-restart-delay", "100", "--stop-exit-codes", "0,3",
		"--merge-logs", "--time", "--log-date-format", "YYYY", "-o", "out.log", "-e", "/tmp/err.log",
		"-l", "NULL", "--increment-var", "PORT", "--instance-var", "INST", "--interpreter-args", "--harmony --x",
		"--interpreter", "node", "--listen", ":3000", "--listen", ":3001", "--max-memory-restart", "150M",
		"--cron-restart", "0 * * * *", "--watch", "--log-type", "json", "--log-max-size", "10M",
		"--log-max-files", "4", "--", "a", "--b")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if len(f.Procs()) == 0 {
		t.Fatal("nothing started")
	}
	got := f.Procs()[0].App
	no := false
	want := appspec.App{
		Name: "api", Namespace: "ns", Script: filepath.Join(dir, "app.js"), Args: []string{"a", "--b"}, Cwd: dir,
		Interpreter: "node", InterpreterArgs: []string{"--harmony", "--x"},
		Instances: runtime.NumCPU(), ExecMode: "cluster", Listen: []string{":3000", ":3001"},
		ShellEnv:    map[string]string{"A": "1", "PATH": os.Getenv("PATH")},
		Autorestart: &no, MaxRestarts: 3, MinUptime: 10000, RestartDelay: 250, ExpBackoffRestartDelay: 100,
		StopExitCodes: []int{0, 3}, KillTimeout: 3000, KillSignal: "SIGTERM", ListenTimeout: 5000,
		WaitReady: true, ShutdownWithMessage: true,
		OutFile: filepath.Join(dir, "out.log"), ErrorFile: "/tmp/err.log", LogFile: "NULL",
		MergeLogs: true, LogDateFormat: "YYYY", Time: true, LogType: "json", LogMaxSize: 10 << 20, LogMaxFiles: 4,
		InstanceVar: "INST", IncrementVar: "PORT", Watch: []string{"."}, MaxMemoryRestart: 150 << 20,
		CronRestart: "0 * * * *",
	}
	want.Defaults() // the fake applies defaults
	if !reflect.DeepEqual(got, want) {
		t.Errorf("app:\n got %+v\nwant %+v", got, want)
	}
}

func TestStartResolution(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "worker.py"), []byte(""), 0o644)
	os.WriteFile(filepath.Join(dir, "top.sh"), []byte(""), 0o755)
	env := []string{"PATH=" + os.Getenv("PATH")}
	cases := []struct {
		args                    []string
		name, script, cwd, mode string
	}{
		{[]string{"start", "worker.py", "--cwd", "sub"}, "worker", filepath.Join(sub, "worker.py"), sub, ""},
		{[]string{"start", "top.sh", "--cwd", "sub"}, "top", filepath.Join(dir, "top.sh"), sub, ""},         // falls back to the CLI's dir
		{[]string{"start", "sub/worker.py", "-i", "2"}, "worker", filepath.Join(sub, "worker.py"), dir, ""}, // not node: no cluster
		{[]string{"start", "top.sh", "-x", "--name", "t2"}, "t2", filepath.Join(dir, "top.sh"), dir, "fork"},
		{[]string{"start", "top.sh", "-x", "cluster", "--name", "t3"}, "t3", filepath.Join(dir, "top.sh"), dir, "cluster"},
		{[]string{"start", "top.sh", "--exec-mode", "cluster_mode", "--name", "t4"}, "t4", filepath.Join(dir, "top.sh"), dir, "cluster"},
		{[]string{"start", "python3 -m http.server"}, "python3", "python3 -m http.server", dir, ""},
		{[]string{"start", "sh"}, "sh", "sh", dir, ""}, // on $PATH
	}
	for _, c := range cases {
		f := &apitest.Fake{}
		code, _, stderr := runFake(t, f, dir, env, c.args...)
		if code != 0 {
			t.Errorf("%q: exit %d: %s", c.args, code, stderr)
			continue
		}
		a := f.Procs()[0].App
		if a.Name != c.name || a.Script != c.script || a.Cwd != c.cwd || a.ExecMode != c.mode {
			t.Errorf("%q: name %q script %q cwd %q mode %q; want %q %q %q %q", c.args, a.Name, a.Script, a.Cwd, a.ExecMode, c.name, c.script, c.cwd, c.mode)
		}
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.js"), []byte(""), 0o644)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"start", "nope.js"}, "script not found: nope.js"},
		{[]string{"start", "./bin/nope"}, "script not found"},
		{[]string{"start", "app.js", "-i", "many"}, "--instances"},
		{[]string{"start", "app.js", "--exec-mode", "turbo"}, `--exec-mode: "turbo"`},
		{[]string{"start", "app.js", "--stop-exit-codes", "x"}, "--stop-exit-codes"},
		{[]string{"start", "app.js", "--log-type", "xml"}, "--log-type"},
		{[]string{"start", "app.js", "--min-uptime", "soon"}, "--min-uptime"},
		{[]string{"start", "app.js", "--cwd", "missing"}, "--cwd missing: not a directory"},
		{[]string{"start", "a.js", "b.js", "--name", "x"}, "--name names one app"},
		{[]string{"stop"}, "no process given"},
		{[]string{"stop", "/[/"}, "target /[/"},
		{[]string{"scale", "app", "lots"}, "not a count"},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, c := range cases {
		f := &apitest.Fake{}
		code, stdout, stderr := runFake(t, f, dir, nil, c.args...)
		if code != 1 || !strings.HasPrefix(stderr, "[corral] ") || !strings.Contains(stderr, c.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line containing %q", c.args, code, stderr, c.msg)
		}
		if calls := slices.DeleteFunc(f.Calls(), func(c string) bool { return c == "list" }); len(calls) != 0 || len(f.Procs()) != 0 {
			t.Errorf("%q changed state: calls %v", c.args, calls)
		}
		_ = stdout
	}
}

func TestRegexTargets(t *testing.T) {
	f := &apitest.Fake{}
	ctx := context.Background()
	f.Start(ctx, []appspec.App{{Name: "web-1"}, {Name: "web-2"}, {Name: "db"}}, api.StartOptions{})
	code, _, stderr := runFake(t, f, t.TempDir(), nil, "stop", "/^web-/")
	if code != 0 {
		t.Fatal(stderr)
	}
	var stopped []string
	for _, p := range f.Procs() {
		if p.Status == "stopped" {
			stopped = append(stopped, p.Name)
		}
	}
	if !reflect.DeepEqual(stopped, []string{"web-1", "web-2"}) {
		t.Errorf("stopped %v", stopped)
	}
	if code, _, stderr := runFake(t, f, t.TempDir(), nil, "stop", "/^zzz/"); code != 1 || !strings.Contains(stderr, "not found: /^zzz/") {
		t.Errorf("no match: exit %d %q", code, stderr)
	}
}

func TestPreprocess(t *testing.T) {
	got := preprocess([]string{"start", "a.js", "-x", "cluster", "-x", "--", "-x", "fork"})
	want := []string{"start", "a.js", "--exec-mode=cluster", "-x", "--", "-x", "fork"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
}

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 3*time.Minute + 5*time.Second: "3m", 2 * time.Hour: "2h", 4*24*time.Hour + time.Hour: "4D", -time.Second: "0s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0b", 512: "512b", 1536: "1.5kb", 55263232: "52.7mb", 3 << 30: "3.0gb"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := humanCPU(12.345); got != "12.3%" {
		t.Errorf("humanCPU = %q", got)
	}
}

func TestDefaultName(t *testing.T) {
	for in, want := range map[string]string{"/srv/app.js": "app", "server": "server", "npm run dev": "npm", "/x/.env": ".env", "a.b.c": "a.b"} {
		if got := defaultName(in); got != want {
			t.Errorf("defaultName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListTableAndSort(t *testing.T) {
	now := time.Now()
	procs := []api.Proc{
		{PMID: 1, Name: "b", Status: "online", PID: 42, StartedAt: now.Add(-90 * time.Second), Memory: 2048, CPU: 1.25, App: appspec.App{ExecMode: "cluster"}},
		{PMID: 0, Name: "a", Status: "stopped", PID: 0, Restarts: 3},
	}
	if err := sortProcs(procs, "name:asc"); err != nil || procs[0].Name != "a" {
		t.Fatalf("sort: %v %v", err, procs[0].Name)
	}
	if err := sortProcs(procs, "id:desc"); err != nil || procs[0].PMID != 1 {
		t.Fatalf("sort desc: %v", err)
	}
	if err := sortProcs(procs, "color"); err == nil {
		t.Error("unknown sort field accepted")
	}
	var buf bytes.Buffer
	writeList(&buf, procs, now)
	out := buf.String()
	for _, want := range []string{
		"│ id │ name │ namespace │ mode    │ pid │ uptime │ ↺ │ status  │ cpu  │ mem   │",
		"│ 1  │ b    │ default   │ cluster │ 42  │ 1m     │ 0 │ online  │ 1.3% │ 2.0kb │",
		"│ 0  │ a    │ default   │ fork    │ 0   │ 0      │ 3 │ stopped │ 0%   │ 0b    │",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestLogsJSONIsPM2Shape: `logs --json` prints PM2's JSON log line through the one encoder the log
// files use (no HTML escaping, toISOString timestamps).
func TestLogsJSONIsPM2Shape(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("//"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &apitest.Fake{}
	if code, _, stderr := runFake(t, f, dir, nil, "start", "app.js", "-n", "web"); code != 0 {
		t.Fatalf("start: exit %d: %s", code, stderr)
	}
	ch := make(chan api.LogLine, 1)
	ch <- api.LogLine{PMID: 0, Name: "web", Stream: "err", Text: `<b>"x" & y</b>`, Time: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	close(ch)
	f.LogStream = ch
	code, stdout, stderr := runFake(t, f, dir, nil, "logs", "web", "--json", "--lines", "0")
	if code != 0 {
		t.Fatalf("logs: exit %d: %s", code, stderr)
	}
	want := `{"message":"<b>\"x\" & y</b>","timestamp":"2026-11-30T08:00:00.000Z","type":"err","process_id":0,"app_name":"web"}` + "\n"
	if !strings.HasSuffix(stdout, want) {
		t.Fatalf("logs --json printed\n%s\nwant it to end with\n%s", stdout, want)
	}
}

// TestListWarnsWhenTheDaemonIsOutOfDate: after the binary on disk was upgraded, ls says so and
// names `corral update`, as PM2's ls does; with the same version it says nothing.
func TestListWarnsWhenTheDaemonIsOutOfDate(t *testing.T) {
	f := &apitest.Fake{Version: "0.0.1-old"}
	code, stdout, stderr := runFake(t, f, t.TempDir(), nil, "ls")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "In-memory corral is out-of-date") || !strings.Contains(stdout, "$ corral update") ||
		!strings.Contains(stdout, "In memory corral version: 0.0.1-old") || !strings.Contains(stdout, "Local corral version: "+Version) {
		t.Fatalf("ls did not warn about the old daemon:\n%s", stdout)
	}
	f.Version = Version
	if _, stdout, _ = runFake(t, f, t.TempDir(), nil, "ls"); strings.Contains(stdout, "out-of-date") {
		t.Fatalf("ls warned with the same version:\n%s", stdout)
	}
}
