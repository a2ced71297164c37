package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/procstat"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// lastNote returns the newest note of p, or "".
func lastNote(p api.Proc) string {
	if len(p.Notes) == 0 {
		return ""
	}
	return p.Notes[len(p.Notes)-1]
}

// appCron returns the cron_restart expression scheduled for a ("" when none).
func appCron(m *Manager, a *app) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.cron == nil {
		return ""
	}
	return a.cron.expr
}

func appByName(t *testing.T, m *Manager, name string) *app {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil {
		t.Fatalf("no app %q", name)
	}
	return a
}

func TestCronRestart(t *testing.T) {
	m := newTestManager(t, Config{})

	bad := goApp(t, "badcron", "sleep", nil)
	bad.CronRestart = "*/1 * *"
	if _, err := m.Start(context.Background(), []appspec.App{bad}, api.StartOptions{}); err == nil ||
		!strings.Contains(err.Error(), `cron_restart "*/1 * *"`) || !strings.Contains(err.Error(), "badcron") {
		t.Fatalf("start with a bad cron_restart: %v", err)
	}
	if list, _ := m.List(context.Background()); len(list) != 0 {
		t.Fatalf("a bad cron_restart started %d instances", len(list))
	}

	a := goApp(t, "ticker", "sleep", nil)
	a.CronRestart = "*/1 * * * * *" // every second
	web := goApp(t, "tickweb", "http", nil)
	web.Listen = []string{"127.0.0.1:0"}
	web.CronRestart = "*/1 * * * * *"
	t0 := time.Now()
	procs := start(t, m, a, web)
	q := waitProc(t, m, procs[0].PMID, "a cron restart", func(q api.Proc) bool {
		return q.Restarts >= 1 && q.Status == "online" && lastNote(q) != ""
	})
	if d := time.Since(t0); d > 2500*time.Millisecond {
		t.Errorf("first cron restart after %v; the schedule fires every second", d)
	}
	if q.PID == procs[0].PID || !strings.Contains(lastNote(q), "cron_restart */1 * * * * *: restarted") {
		t.Errorf("after the cron restart: pid %d (was %d) notes %q", q.PID, procs[0].PID, q.Notes)
	}
	// A listen app is reloaded, not restarted.
	w := waitProc(t, m, procs[1].PMID, "a cron reload", func(q api.Proc) bool {
		return q.Restarts >= 1 && q.Status == "online" && lastNote(q) != ""
	})
	if w.PID == procs[1].PID || !strings.Contains(lastNote(w), ": reloaded") {
		t.Errorf("listen app after cron: pid %d (was %d) notes %q", w.PID, procs[1].PID, w.Notes)
	}

	// A new definition replaces the schedule; stop removes it, restart brings it back, delete
	// removes it for good.
	ta := appByName(t, m, "ticker")
	a.CronRestart = "0 0 1 1 *"
	if _, err := m.Start(context.Background(), []appspec.App{a}, api.StartOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := appCron(m, ta); got != "0 0 1 1 *" {
		t.Errorf("after redefinition: schedule %q", got)
	}
	if _, err := m.Stop(context.Background(), []string{"ticker", "tickweb"}); err != nil {
		t.Fatal(err)
	}
	wa := appByName(t, m, "tickweb")
	if got, got2 := appCron(m, ta), appCron(m, wa); got != "" || got2 != "" {
		t.Errorf("after stop: schedules %q and %q", got, got2)
	}
	if _, _, err := m.Restart(context.Background(), []string{"ticker"}, api.RestartOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := appCron(m, ta); got != "0 0 1 1 *" {
		t.Errorf("after restart: schedule %q", got)
	}
	if _, err := m.Delete(context.Background(), []string{"ticker"}); err != nil {
		t.Fatal(err)
	}
	if got := appCron(m, ta); got != "" {
		t.Errorf("after delete: schedule %q", got)
	}
}

// watchState returns a copy of the watcher stats of a and whether it is idle (false when a has
// no watcher). The caller holds m.mu.
func watchState(a *app) (watchStats, bool, bool) {
	if a.watch == nil {
		return watchStats{}, false, false
	}
	return a.watch.stats, a.watch.idle(), true
}

func TestWatchRestartsOnceAndIgnores(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "node_modules/pkg", ".git", "logs", "build"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(rel+time.Now().String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := newTestManager(t, Config{})
	a := goApp(t, "watched", "sleep", nil)
	a.Cwd = dir
	a.Watch = []string{"."}
	a.WatchDelay = 200
	a.IgnoreWatch = []string{"*.tmp", "build"}
	a.OutFile = filepath.Join(dir, "src", "app-out.log") // its own log: written at every start, ignored
	p := startSleepers(t, m, a)[0]
	wa := appByName(t, m, "watched")

	// wait waits until the watcher is idle and cond holds for its stats and the instance.
	wait := func(what string, cond func(watchStats, api.Proc) bool) (watchStats, api.Proc) {
		t.Helper()
		var st watchStats
		var q api.Proc
		ok := m.waitCond(10*time.Second, func() bool {
			s, idle, ok := watchState(wa)
			if !ok || !idle {
				return false
			}
			st, q = s, m.proc(m.procs[p.PMID])
			return cond(st, q)
		})
		if !ok {
			t.Fatalf("timed out waiting for %s: watcher %+v, restarts %d status %q", what, st, q.Restarts, q.Status)
		}
		return st, q
	}
	// barrier writes an ignored dotfile and waits until the watcher has seen it: every change
	// made before has been handled then (inotify keeps order).
	n := 0
	barrier := func() (watchStats, api.Proc) {
		t.Helper()
		n++
		name := fmt.Sprintf(".barrier-%d", n)
		before := func() int { m.mu.Lock(); defer m.mu.Unlock(); return wa.watch.stats.ignored }()
		write(name)
		return wait("the barrier", func(s watchStats, _ api.Proc) bool { return s.ignored > before })
	}
	wait("the watcher", func(s watchStats, _ api.Proc) bool { return s.ready })

	// A burst of changes, each seen by the watcher: one restart, watch_delay after the last.
	var last time.Time
	for _, f := range []string{"src/a.js", "src/b.js", "src/a.js"} {
		m.mu.Lock()
		events := wa.watch.stats.events
		m.mu.Unlock()
		last = time.Now()
		write(f)
		if !m.waitCond(10*time.Second, func() bool { return wa.watch.stats.events > events }) {
			t.Fatalf("the watcher did not see %s change", f)
		}
	}
	st, q := wait("a watch restart", func(s watchStats, q api.Proc) bool {
		return s.restarts >= 1 && q.Status == "online" && lastNote(q) != ""
	})
	if q.Restarts != 1 || st.restarts != 1 || q.PID == p.PID || !strings.Contains(lastNote(q), "watch: src/a.js changed: restarted") {
		t.Fatalf("after a burst of changes: restart_time %d, watch restarts %d, pid %d (was %d), notes %q",
			q.Restarts, st.restarts, q.PID, p.PID, q.Notes)
	}
	if d := q.StartedAt.Sub(last); d < 200*time.Millisecond {
		t.Errorf("restarted %v after the last change; watch_delay is 200ms", d)
	}
	st, q = barrier()
	if q.Restarts != 1 || st.restarts != 1 {
		t.Fatalf("restart_time %d after the debounce, want it to stay 1", q.Restarts)
	}

	// Ignored: node_modules, .git, logs, dotfiles (default); *.tmp and build (ignore_watch).
	events := st.events
	write("node_modules/pkg/index.js")
	write("node_modules/new.js")
	write(".git/HEAD")
	write("logs/app.log")
	write(".env")
	write("src/x.tmp")
	write("build/out.js")
	if err := os.Mkdir(filepath.Join(dir, "src", "build"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, q = barrier()
	if st.events != events || q.Restarts != 1 {
		t.Fatalf("changes on ignored paths: %d relevant events (want %d), restart_time %d", st.events, events, q.Restarts)
	}

	// A new directory is watched too (its creation is a change itself).
	dirs := st.dirs
	if err := os.Mkdir(filepath.Join(dir, "src", "deep"), 0o700); err != nil {
		t.Fatal(err)
	}
	wait("the new directory", func(s watchStats, q api.Proc) bool { return s.dirs > dirs && q.Restarts == 2 && q.Status == "online" })
	write("src/deep/c.js")
	_, q = wait("a change in the new directory", func(s watchStats, q api.Proc) bool {
		return q.Restarts == 3 && q.Status == "online" && lastNote(q) != ""
	})
	if !strings.Contains(lastNote(q), "watch: src/deep/c.js changed") {
		t.Errorf("notes %q", q.Notes)
	}

	// Stop removes the watcher.
	if _, err := m.Stop(context.Background(), []string{"watched"}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	gone := wa.watch == nil
	m.mu.Unlock()
	if !gone {
		t.Error("the watcher survived stop")
	}
}

func TestIgnoreRules(t *testing.T) {
	rules, err := compileIgnore([]string{"*.log", "build", "public/uploads", "**/gen/*.js", "/srv/app/tmp", "dat[0-9]"}, "/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	ignored := func(rel string) bool {
		for _, r := range rules {
			if r.match(rel) {
				return true
			}
		}
		return false
	}
	for rel, want := range map[string]bool{
		"a.log": true, "x/y/a.log": true, "a.log.js": false,
		"build": true, "src/build/x.js": true, "builder/x.js": false,
		"public/uploads/a.png": true, "x/public/uploads/a.png": false, "public/uploadsx": false,
		"gen/a.js": true, "src/gen/a.js": true, "src/gen/sub/a.js": false,
		"tmp/a": true, "src/tmp/a": false,
		"dat1/x": true, "data/x": false,
	} {
		if got := ignored(rel); got != want {
			t.Errorf("%s: ignored %v, want %v", rel, got, want)
		}
	}
	if _, err := compileIgnore([]string{"src/[a-"}, "/"); err == nil || !strings.Contains(err.Error(), `ignore_watch "src/[a-"`) {
		t.Errorf("bad glob: %v", err)
	}
	for below, want := range map[string]bool{"": false, "/src/a.js": false, "/.git/HEAD": true, "/a/.env": true,
		"/node_modules/x": true, "/logs/a": true, "/catalog/x": false} {
		if got := defaultIgnored(below); got != want {
			t.Errorf("default ignore %q: %v, want %v", below, got, want)
		}
	}
}

func TestWatchRelevant(t *testing.T) {
	rules, err := compileIgnore([]string{"*.tmp"}, "/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cwd: "/srv/app", dirs: []string{"/srv/app", "/data/shared"},
		files: map[string]bool{"/etc/app.json": true}, rules: rules}
	for p, want := range map[string]string{
		"/srv/app/src/a.js":         "src/a.js",
		"/srv/app/.env":             "",
		"/srv/app/src/x.tmp":        "",
		"/srv/app/node_modules/a":   "",
		"/data/shared/q.csv":        "/data/shared/q.csv",
		"/data/shared/.cache/x":     "",
		"/data/sharedx/q.csv":       "",
		"/etc/app.json":             "/etc/app.json",
		"/etc/passwd":               "",
		"/srv/application/index.js": "",
	} {
		rel, ok := w.relevant(p)
		if got := map[bool]string{true: rel, false: ""}[ok]; got != want {
			t.Errorf("%s: relevant as %q, want %q", p, got, want)
		}
	}
}

func TestMaxMemoryRestartWithinTwoSeconds(t *testing.T) {
	m := newTestManager(t, Config{}) // default sampling: every second
	lines := followLogs(t, m)
	a := goApp(t, "hog100", "hog", map[string]string{"HOG_MB": "100"})
	a.MaxMemoryRestart = 50 << 20
	p := start(t, m, a)[0]
	crossed := lines.waitCount(t, 1, func(l api.LogLine) bool { return l.Text == fmt.Sprintf("hogging %d", p.PID) })[0].Time
	// The restart counts when the replacement is launched; the note follows once restartOne returns.
	q := waitProc(t, m, p.PMID, "a memory restart and its note", func(q api.Proc) bool {
		return q.Restarts >= 1 && strings.Contains(strings.Join(q.Notes, "|"), "max_memory_restart")
	})
	if d := time.Since(crossed); d > 2*time.Second {
		t.Errorf("restarted %v after using 100 MB (max_memory_restart 50M); want within 2s", d)
	}
	if q.PID == p.PID || !alive(q.PID) && q.Status == "online" || !strings.Contains(strings.Join(q.Notes, "|"), "max_memory_restart") {
		t.Errorf("after the memory restart: pid %d (was %d) status %q notes %q", q.PID, p.PID, q.Status, q.Notes)
	}
}

func TestLogRotationKeepsMaxFiles(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "spew", "spew", map[string]string{"SPEW_LINES": "3000"})
	a.LogMaxSize = 10 << 10
	a.LogMaxFiles = 3
	a.Autorestart = new(bool)
	p := start(t, m, a)[0]
	waitProc(t, m, p.PMID, "the exit", func(q api.Proc) bool { return q.Status == "stopped" })
	// The output reaches the file shortly after the exit; no event tells when.
	var b []byte
	if !testutil.Eventually(10*time.Second, func() bool {
		b, _ = os.ReadFile(p.OutLog)
		return bytes.HasSuffix(b, []byte("spew done\n"))
	}) {
		t.Fatalf("the out log never got the last line; it ends with %q", b[max(0, len(b)-100):])
	}
	// Delete closes the log files, which waits for the pruning of old rotated files.
	if _, err := m.Delete(context.Background(), []string{"spew"}); err != nil {
		t.Fatal(err)
	}
	rotated, err := filepath.Glob(filepath.Join(m.cfg.Home, "logs", "spew-out__*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 3 {
		t.Fatalf("%d rotated out logs, want log_max_files 3: %q", len(rotated), rotated)
	}
	fi, err := os.Stat(p.OutLog)
	if err != nil || fi.Size() == 0 || fi.Size() > 300000/3 {
		t.Errorf("current out log: %v, size %d", err, fi.Size())
	}
}

// procEnviron reads the environment a process runs with.
func procEnviron(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestUpdateEnvReplacesShellEnvAppEnvWins(t *testing.T) {
	m := newTestManager(t, Config{})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]string{testAppEnv: "sleep", "OWN": "app", "SHARED": "app", "GORACE": "atexit_sleep_ms=0"}
	a := appspec.App{Name: "envy", Script: exe, Cwd: filepath.Dir(exe), Env: own,
		ShellEnv: map[string]string{"SHARED": "shell", "GONE": "x", "PATH": os.Getenv("PATH")}}
	p := startSleepers(t, m, a)[0]
	check := func(what string, env map[string]string, want map[string]string, absent ...string) {
		t.Helper()
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, env[k], v)
			}
		}
		for _, k := range absent {
			if v, ok := env[k]; ok {
				t.Errorf("%s: %s=%q, want it unset", what, k, v)
			}
		}
	}
	check("start", p.Env, map[string]string{"OWN": "app", "SHARED": "app", "GONE": "x"})
	check("start (process)", procEnviron(t, p.PID), map[string]string{"OWN": "app", "SHARED": "app", "GONE": "x"})

	lines := followLogs(t, m)
	newShell := map[string]string{"SHARED": "shell2", "NEW": "y", "PATH": os.Getenv("PATH")}
	procs, _, err := m.Restart(context.Background(), []string{"envy"}, api.RestartOptions{UpdateEnv: true, Env: newShell})
	if err != nil {
		t.Fatal(err)
	}
	q := procs[0]
	lines.waitCount(t, 1, func(l api.LogLine) bool { return l.Text == fmt.Sprintf("started %d", q.PID) })
	want := map[string]string{"OWN": "app", "SHARED": "app", "NEW": "y", "pm_id": "0"}
	check("--update-env", q.Env, want, "GONE")
	check("--update-env (process)", procEnviron(t, q.PID), want, "GONE")
	apps, _ := m.Apps(context.Background())
	if len(apps) != 1 || apps[0].ShellEnv["NEW"] != "y" || apps[0].ShellEnv["SHARED"] != "shell2" || apps[0].Env["OWN"] != "app" {
		t.Errorf("saved definition: env %v shell env %v", apps[0].Env, apps[0].ShellEnv)
	}

	// A plain restart keeps the frozen environment.
	procs, _, err = m.Restart(context.Background(), []string{"envy"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("restart", procs[0].Env, want, "GONE")
}

func TestReaperCollectsOrphans(t *testing.T) {
	m := newTestManager(t, Config{Subreaper: true})
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	lines := followLogs(t, m)
	a := goApp(t, "orphaner", "orphaner", map[string]string{"GRANDCHILD_PID_FILE": pidFile})
	a.Autorestart = new(bool) // one orphan only
	p := start(t, m, a)[0]
	l := lines.waitCount(t, 1, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "orphaned ") })[0]
	orphan, err := strconv.Atoi(strings.TrimPrefix(l.Text, "orphaned "))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if st, err := procstat.ReadStat(orphan); err == nil && st.PPID == os.Getpid() {
			unix.Kill(orphan, unix.SIGKILL)
		}
	})
	st, err := procstat.ReadStat(orphan)
	if err != nil || st.PPID != os.Getpid() || st.PGRP == p.PID {
		t.Fatalf("orphan %d: %+v %v; want it re-parented to the daemon (pid %d) outside the app's group", orphan, st, err, os.Getpid())
	}
	if err := unix.Kill(orphan, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// No event tells when a /proc entry goes: poll, with a deadline.
	if !testutil.Eventually(5*time.Second, func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(orphan))
		return errors.Is(err, os.ErrNotExist)
	}) {
		st, _ := procstat.ReadStat(orphan)
		t.Fatalf("orphan %d not reaped: state %c", orphan, st.State)
	}
	q := waitProc(t, m, p.PMID, "online", func(api.Proc) bool { return true })
	if q.Status != "online" || q.PID != p.PID || q.Restarts != 0 || !alive(p.PID) {
		t.Fatalf("the app after its orphan was reaped: status %q pid %d (was %d) restarts %d", q.Status, q.PID, p.PID, q.Restarts)
	}
	// The app's own exit status still reaches its own Wait.
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := waitProc(t, m, p.PMID, "the exit", func(q api.Proc) bool { return q.Status == "stopped" })
	if r.ExitSignal != "SIGKILL" {
		t.Errorf("exit of the app recorded as %d/%q, want SIGKILL", r.ExitCode, r.ExitSignal)
	}
}

// An exec probe is a child of the daemon in a process group of its own, as an orphan would be:
// the reaper leaves it to the probe's own Wait, which gets its real exit status (ECHILD before,
// and a probe that passed counted as failed).
func TestReaperLeavesExecProbesAlone(t *testing.T) {
	m := newTestManager(t, Config{Subreaper: true})
	for _, code := range []int{0, 3} {
		cmd := exec.Command("sh", "-c", fmt.Sprintf("exit %d", code))
		cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
		waited, err := m.kids.startHelper(cmd)
		if err != nil {
			t.Fatal(err)
		}
		// The helper is a zombie outside the daemon's group: what the reaper takes, unless told.
		if !testutil.Eventually(5*time.Second, func() bool {
			st, err := procstat.ReadStat(cmd.Process.Pid)
			return err == nil && st.State == 'Z'
		}) {
			t.Fatal("the helper did not exit")
		}
		m.reapOrphans()
		err = cmd.Wait()
		waited()
		if got := cmd.ProcessState; got == nil || got.ExitCode() != code {
			t.Fatalf("exit %d: the helper's own Wait got %v (%v)", code, got, err)
		}
	}
}
