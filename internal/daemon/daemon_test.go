package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// newTestManager returns a Manager with a fresh home, closed (and checked for invalid state
// transitions) when the test ends; after Close, no goroutine started since the call may be left
// (testutil.CheckGoroutines). Set CORRAL_TEST_LOG=1 to see the daemon's log.
func newTestManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	return newTestManagerClosedWithin(t, cfg, closeTimeout)
}

// newTestManagerClosedWithin is newTestManager with the bound on Close at cleanup given.
func newTestManagerClosedWithin(t *testing.T, cfg Config, closeTimeout time.Duration) *Manager {
	t.Helper()
	testutil.CheckGoroutines(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Home = t.TempDir()
	cfg.Self = exe
	if os.Getenv("CORRAL_TEST_LOG") == "1" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Bounded, so that a Manager that is stuck fails the test instead of hanging the suite.
		closed := make(chan struct{})
		go func() {
			m.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(closeTimeout):
			t.Errorf("Close did not return within %v; goroutines:\n%s", closeTimeout, goroutineDump())
			return
		}
		m.mu.Lock()
		bad := m.badTransitions
		m.mu.Unlock()
		if bad != 0 {
			t.Errorf("%d invalid state transitions (run with CORRAL_TEST_LOG=1)", bad)
		}
	})
	return m
}

// closeTimeout bounds Manager.Close in the tests: longer than any test app's kill_timeout plus
// Close's own wait for goroutines.
const closeTimeout = 40 * time.Second

// goroutineDump returns the stacks of all goroutines, cut to a readable size.
func goroutineDump() string {
	buf := make([]byte, 256<<10)
	return string(buf[:runtime.Stack(buf, true)])
}

func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// goApp is an app that runs this test binary in the given test-app mode.
func goApp(t *testing.T, name, mode string, env map[string]string) appspec.App {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := environ()
	e[testAppEnv] = mode
	if _, ok := e["GORACE"]; !ok {
		e["GORACE"] = "atexit_sleep_ms=0" // a -race child would otherwise linger 1s at exit
	}
	for k, v := range env {
		e[k] = v
	}
	return appspec.App{Name: name, Script: exe, Cwd: filepath.Dir(exe), Env: e}
}

// nodeApp is an app running a script with node. Without node the test is skipped, or fails
// when CI=true (nodetest.Node).
func nodeApp(t *testing.T, name, script string, env map[string]string) appspec.App {
	t.Helper()
	nodetest.Node(t)
	e := environ()
	for k, v := range env {
		e[k] = v
	}
	return appspec.App{Name: name, Script: script, Cwd: filepath.Dir(script), Env: e}
}

func start(t *testing.T, m *Manager, apps ...appspec.App) []api.Proc {
	t.Helper()
	procs, err := m.Start(context.Background(), apps, api.StartOptions{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return procs
}

// startSleepers starts apps in the "sleep" (or "child") mode and waits until each instance
// printed "started <pid>", i.e. has installed its signal handlers.
func startSleepers(t *testing.T, m *Manager, apps ...appspec.App) []api.Proc {
	t.Helper()
	lines := followLogs(t, m)
	procs := start(t, m, apps...)
	for _, p := range procs {
		lines.waitCount(t, 1, func(l api.LogLine) bool { return l.Text == fmt.Sprintf("started %d", p.PID) })
	}
	return procs
}

// waitProc waits (on state-change events) until cond holds for instance id.
func waitProc(t *testing.T, m *Manager, id int, what string, cond func(api.Proc) bool) api.Proc {
	t.Helper()
	var last api.Proc
	ok := m.waitCond(15*time.Second, func() bool {
		in := m.procs[id]
		if in == nil {
			return false
		}
		last = m.proc(in)
		return cond(last)
	})
	if !ok {
		t.Fatalf("pm_id %d: timed out waiting for %s; last: status=%q pid=%d restarts=%d unstable=%d exit=%d/%s notes=%q",
			id, what, last.Status, last.PID, last.Restarts, last.UnstableRestarts, last.ExitCode, last.ExitSignal, last.Notes)
	}
	return last
}

// groupGone reports whether no process of group pgid exists.
func groupGone(pgid int) bool {
	return errors.Is(unix.Kill(-pgid, 0), unix.ESRCH)
}

func alive(pid int) bool { return unix.Kill(pid, 0) == nil }

// logLines collects live log lines in the background.
type logLines struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []api.LogLine
}

func followLogs(t *testing.T, m *Manager, targets ...string) *logLines {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := m.Logs(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	l := &logLines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		for line := range ch {
			l.mu.Lock()
			l.lines = append(l.lines, line)
			l.cond.Broadcast()
			l.mu.Unlock()
		}
	}()
	return l
}

// waitCount waits until n lines satisfy match.
func (l *logLines) waitCount(t *testing.T, n int, match func(api.LogLine) bool) []api.LogLine {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(10 * time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		var got []api.LogLine
		for _, line := range l.lines {
			if match(line) {
				got = append(got, line)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d matching log lines, got %d: %+v", n, len(got), l.lines)
		}
		l.cond.Wait()
	}
}

func TestForkStartCrashRestartStop(t *testing.T) {
	m := newTestManager(t, Config{})
	lines := followLogs(t, m)
	procs := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))
	if len(procs) != 1 {
		t.Fatalf("got %d procs", len(procs))
	}
	p := procs[0]
	if p.Status != "online" || p.PID <= 0 || !alive(p.PID) {
		t.Fatalf("after start: status %q pid %d", p.Status, p.PID)
	}
	if p.App.ExecMode != "fork" || p.Interpreter != "none" || p.Env["pm_id"] != "0" || p.Env["NODE_APP_INSTANCE"] != "0" ||
		p.Env["PM2_HOME"] != m.cfg.Home || p.Env["CORRAL_HOME"] != m.cfg.Home || p.Env["unique_id"] == "" || p.Env["name"] != "sleeper" {
		t.Errorf("resolution/env: mode %q interpreter %q env pm_id=%q instance=%q home=%q unique_id=%q",
			p.App.ExecMode, p.Interpreter, p.Env["pm_id"], p.Env["NODE_APP_INSTANCE"], p.Env["PM2_HOME"], p.Env["unique_id"])
	}
	if want := filepath.Join(m.cfg.Home, "logs", "sleeper-out.log"); p.OutLog != want {
		t.Errorf("out log %q, want %q", p.OutLog, want)
	}
	if pid, _ := os.ReadFile(p.PidFile); string(pid) != strconv.Itoa(p.PID) {
		t.Errorf("pid file %s holds %q, want %d", p.PidFile, pid, p.PID)
	}

	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p2 := waitProc(t, m, p.PMID, "a restart", func(q api.Proc) bool { return q.Status == "online" && q.Restarts == 1 })
	if p2.PID == p.PID || p2.PID <= 0 {
		t.Errorf("restarted pid %d, old %d", p2.PID, p.PID)
	}
	lines.waitCount(t, 1, func(l api.LogLine) bool { return l.Text == fmt.Sprintf("started %d", p2.PID) })
	if p2.ExitSignal != "SIGKILL" || p2.ExitCode != 128+9 {
		t.Errorf("exit recorded as code %d signal %q, want 137 SIGKILL", p2.ExitCode, p2.ExitSignal)
	}

	stopped, err := m.Stop(context.Background(), []string{"sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	if stopped[0].Status != "stopped" || stopped[0].PID != 0 {
		t.Errorf("after stop: status %q pid %d", stopped[0].Status, stopped[0].PID)
	}
	if !groupGone(p2.PID) {
		t.Errorf("process group %d still exists after stop", p2.PID)
	}
	if stopped[0].ExitCode != 0 || stopped[0].ExitSignal != "" {
		t.Errorf("graceful stop recorded as code %d signal %q", stopped[0].ExitCode, stopped[0].ExitSignal)
	}
	if _, err := os.Stat(p.PidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after stop: %v", err)
	}
	out, _ := os.ReadFile(p.OutLog)
	if !strings.Contains(string(out), fmt.Sprintf("started %d\n", p.PID)) || !strings.Contains(string(out), fmt.Sprintf("started %d\n", p2.PID)) {
		t.Errorf("out log lacks the start lines of both runs:\n%s", out)
	}
}

func TestStopKillsWholeGroupAfterKillTimeout(t *testing.T) {
	m := newTestManager(t, Config{Subreaper: true})
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	logs := followLogs(t, m)
	a := goApp(t, "parent", "child", map[string]string{"GRANDCHILD_PID_FILE": pidFile})
	a.KillTimeout = 300
	started := time.Now()
	p := start(t, m, a)[0]
	logs.waitCount(t, 2, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "started ") })
	// kill_timeout counts from the stop request, not from the start: let the app run longer than it
	// first (the condition is time itself, so this wait is the test's subject, not a guess).
	testutil.WaitFor(t, 5*time.Second, "the app to run for twice kill_timeout", func() bool {
		return time.Since(started) > 600*time.Millisecond
	})
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	grandchild, _ := strconv.Atoi(string(b))
	if !alive(grandchild) {
		t.Fatalf("grandchild %d not running", grandchild)
	}
	t0 := time.Now()
	if _, err := m.Stop(context.Background(), []string{"parent"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("stop took %v; the grandchild ignores SIGINT, so it should take kill_timeout (300ms)", d)
	}
	if !groupGone(p.PID) || alive(grandchild) {
		t.Errorf("after stop: group %d gone=%v, grandchild %d alive=%v", p.PID, groupGone(p.PID), grandchild, alive(grandchild))
	}
}

func TestKillTimeoutSIGKILL(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "stubborn", "sleep", map[string]string{"IGNORE_SIGINT": "1"})
	a.KillTimeout = 400
	a.KillSignal = "SIGTERM"
	p := startSleepers(t, m, a)[0]
	t0 := time.Now()
	procs, err := m.Stop(context.Background(), []string{strconv.Itoa(p.PMID)})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 400*time.Millisecond {
		t.Errorf("stop took %v, less than kill_timeout", d)
	}
	if procs[0].Status != "stopped" || procs[0].ExitSignal != "SIGKILL" {
		t.Errorf("status %q exit signal %q, want stopped/SIGKILL", procs[0].Status, procs[0].ExitSignal)
	}
	if !groupGone(p.PID) {
		t.Error("process group survived")
	}
}

func TestStopExitCodes(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "quitter", "crash", map[string]string{"EXIT_CODE": "3", "CRASH_AFTER_MS": "50"})
	a.StopExitCodes = []int{3}
	p := start(t, m, a)[0]
	q := waitProc(t, m, p.PMID, "stopped", func(q api.Proc) bool { return q.Status == "stopped" })
	if q.ExitCode != 3 || q.Restarts != 0 {
		t.Errorf("exit code %d restarts %d, want 3 and 0", q.ExitCode, q.Restarts)
	}
}

func TestMaxRestartsErrored(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "crasher", "crash", map[string]string{"EXIT_CODE": "2"})
	a.MaxRestarts = 3
	p := start(t, m, a)[0]
	q := waitProc(t, m, p.PMID, "errored", func(q api.Proc) bool { return q.Status == "errored" })
	if q.Restarts != 2 || q.UnstableRestarts != 3 || q.ExitCode != 2 || q.PID != 0 {
		t.Errorf("restarts %d unstable %d exit %d pid %d, want 2, 3, 2, 0", q.Restarts, q.UnstableRestarts, q.ExitCode, q.PID)
	}
	// An errored app can be restarted by hand, with fresh counters; as in PM2, restarting an app
	// that is not running does not count a restart.
	procs, _, err := m.Restart(context.Background(), []string{"crasher"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if procs[0].Restarts != 2 {
		t.Errorf("manual restart: restarts %d, want 2", procs[0].Restarts)
	}
	waitProc(t, m, p.PMID, "errored again", func(q api.Proc) bool { return q.Status == "errored" })
}

func TestRestartDelayAndBackoff(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "slow", "crash", nil)
	a.RestartDelay = 400
	a.MaxRestarts = 2
	p := start(t, m, a)[0]
	waitProc(t, m, p.PMID, "waiting restart", func(q api.Proc) bool { return q.Status == "waiting restart" })
	t0 := time.Now()
	waitProc(t, m, p.PMID, "the restart", func(q api.Proc) bool { return q.Restarts == 1 })
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("restarted after %v, restart_delay is 400ms", d)
	}

	b := goApp(t, "backoff", "crash", nil)
	b.ExpBackoffRestartDelay = 40
	b.MaxRestarts = 5
	p = start(t, m, b)[0]
	q := waitProc(t, m, p.PMID, "errored", func(q api.Proc) bool { return q.Status == "errored" })
	m.mu.Lock()
	prev := m.procs[p.PMID].st.PrevRestartDelay
	m.mu.Unlock()
	// Delays 40, 60, 90, 135 ms for the four restarts before the fifth unstable exit.
	if prev != 135 || q.Restarts != 4 {
		t.Errorf("last backoff delay %dms after %d restarts, want 135ms after 4", prev, q.Restarts)
	}
}

func TestUnknownTargetChangesNothing(t *testing.T) {
	m := newTestManager(t, Config{})
	p := startSleepers(t, m, goApp(t, "keep", "sleep", nil))[0]
	for _, op := range []func() error{
		func() error { _, err := m.Stop(context.Background(), []string{"keep", "nope"}); return err },
		func() error { _, err := m.Delete(context.Background(), []string{"42"}); return err },
		func() error { _, err := m.Scale(context.Background(), "nope", "2"); return err },
	} {
		if err := op(); !errors.Is(err, api.ErrUnknownTarget) {
			t.Errorf("error %v does not wrap ErrUnknownTarget", err)
		}
	}
	q := waitProc(t, m, p.PMID, "online", func(q api.Proc) bool { return true })
	if q.Status != "online" || q.PID != p.PID {
		t.Errorf("an unknown target changed the app: status %q pid %d (was %d)", q.Status, q.PID, p.PID)
	}
}

func TestScaleDeleteIDs(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "web", "sleep", nil)
	a.IncrementVar = "PORT"
	a.Env["PORT"] = "5000"
	start(t, m, a)
	procs, err := m.Scale(context.Background(), "web", "3")
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 3 {
		t.Fatalf("scale 3: %d instances", len(procs))
	}
	for i, p := range procs {
		if p.PMID != i || p.Instance != i || p.Status != "online" || p.Env["PORT"] != strconv.Itoa(5000+i) {
			t.Errorf("instance %d: pm_id %d index %d status %q PORT %q", i, p.PMID, p.Instance, p.Status, p.Env["PORT"])
		}
	}
	if procs[1].OutLog != filepath.Join(m.cfg.Home, "logs", "web-out-1.log") {
		t.Errorf("second instance logs to %s", procs[1].OutLog)
	}
	procs, err = m.Scale(context.Background(), "web", "-2")
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Instance != 0 {
		t.Fatalf("scale -2 left %+v", procs)
	}
	if _, err := m.Delete(context.Background(), []string{"all"}); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.List(context.Background()); len(list) != 0 {
		t.Fatalf("list after delete all: %d entries", len(list))
	}
	p := start(t, m, goApp(t, "again", "sleep", nil))[0]
	if p.PMID != 0 {
		t.Errorf("pm_id after the table emptied: %d, want 0", p.PMID)
	}
}

func TestLogsFilesFlushAndStream(t *testing.T) {
	m := newTestManager(t, Config{})
	lines := followLogs(t, m)
	a := goApp(t, "talker", "crash", map[string]string{"EXIT_CODE": "0"})
	a.Autorestart = new(bool)
	a.Time = true
	p := start(t, m, a)[0]
	waitProc(t, m, p.PMID, "stopped", func(q api.Proc) bool { return q.Status == "stopped" })
	got := lines.waitCount(t, 2, func(l api.LogLine) bool { return l.PMID == p.PMID })
	streams := map[string]string{}
	for _, l := range got {
		streams[l.Stream] = l.Text
	}
	if streams["out"] != fmt.Sprintf("crash %d", p.PID) || streams["err"] != "oops" {
		t.Errorf("streamed lines %+v", got)
	}
	out, _ := os.ReadFile(p.OutLog)
	errLog, _ := os.ReadFile(p.ErrLog)
	if !strings.HasSuffix(string(out), fmt.Sprintf(": crash %d\n", p.PID)) || !strings.HasSuffix(string(errLog), ": oops\n") {
		t.Errorf("log files: out %q err %q", out, errLog)
	}
	if err := m.Flush(context.Background(), []string{"talker"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p.OutLog); err != nil || fi.Size() != 0 {
		t.Errorf("out log after flush: %v size %d", err, fi.Size())
	}
}

func TestListenModeHTTPSurvivesCrash(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "api", "http", nil)
	a.Listen = []string{"127.0.0.1:0"}
	a.Instances = 2
	procs := start(t, m, a)
	m.mu.Lock()
	l, err := net.FileListener(m.apps["api"].listeners[0])
	m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	get := func(path string) (string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("X-Pid"), nil
	}
	pids := map[string]bool{}
	for _, p := range procs {
		pids[strconv.Itoa(p.PID)] = true
	}
	for range 20 {
		pid, err := get("/")
		if err != nil {
			t.Fatal(err)
		}
		if !pids[pid] {
			t.Fatalf("answered by pid %s, not one of the instances %v", pid, pids)
		}
	}
	client.Get("http://" + addr + "/crash") // the answering instance dies without a response
	var crashed api.Proc
	ok := m.waitCond(10*time.Second, func() bool {
		for _, in := range m.procs {
			if in.st.Restarts == 1 && in.st.Status == StatusOnline {
				crashed = m.proc(in)
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatal("no instance restarted after /crash")
	}
	if pids[strconv.Itoa(crashed.PID)] {
		t.Errorf("restarted instance kept pid %d", crashed.PID)
	}
	for range 20 {
		if _, err := get("/"); err != nil {
			t.Fatalf("after the crash: %v", err)
		}
	}
}

func TestReloadListenModeRollsAndFailsSafely(t *testing.T) {
	m := newTestManager(t, Config{})
	failFile := filepath.Join(t.TempDir(), "fail")
	a := goApp(t, "svc", "http", map[string]string{"FAIL_FILE": failFile})
	a.Listen = []string{"127.0.0.1:0"}
	a.ListenTimeout = 2000
	p := start(t, m, a)[0]

	procs, _, err := m.Reload(context.Background(), []string{"svc"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if procs[0].PID == p.PID || procs[0].Restarts != 1 || procs[0].Status != "online" || !groupGone(p.PID) {
		t.Errorf("after reload: pid %d (old %d, gone %v) restarts %d status %q",
			procs[0].PID, p.PID, groupGone(p.PID), procs[0].Restarts, procs[0].Status)
	}

	if err := os.WriteFile(failFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = m.Reload(context.Background(), []string{"svc"}, api.RestartOptions{})
	if err == nil || !strings.Contains(err.Error(), "pm_id 0") || !strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("reload with a failing replacement: err %v", err)
	}
	list, _ := m.List(context.Background())
	if list[0].PID != procs[0].PID || list[0].Status != "online" || list[0].Restarts != 1 || !alive(procs[0].PID) {
		t.Errorf("after the failed reload: pid %d (want %d) status %q restarts %d", list[0].PID, procs[0].PID, list[0].Status, list[0].Restarts)
	}
}

func TestReloadForkFallsBackToRestart(t *testing.T) {
	m := newTestManager(t, Config{})
	p := startSleepers(t, m, goApp(t, "plain", "sleep", nil))[0]
	procs, notes, err := m.Reload(context.Background(), []string{"plain"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "fell back to restart") || procs[0].PID == p.PID || procs[0].Restarts != 1 {
		t.Errorf("notes %q pid %d->%d restarts %d", notes, p.PID, procs[0].PID, procs[0].Restarts)
	}
}

func TestNodeWaitReady(t *testing.T) {
	m := newTestManager(t, Config{})
	a := nodeApp(t, "ready", nodetest.Example(t, "ready.js"), map[string]string{"PORT": "0", "HOST": "127.0.0.1", "READY_DELAY_MS": "400"})
	a.WaitReady = true
	a.ListenTimeout = 10000
	t0 := time.Now()
	p := start(t, m, a)[0]
	d := time.Since(t0)
	if p.Status != "online" || d < 400*time.Millisecond || d > 8*time.Second {
		t.Errorf("wait_ready: status %q after %v (ready is sent after 400ms, listen_timeout 10s)", p.Status, d)
	}
	if p.Interpreter != "node" || p.App.ExecMode != "fork" {
		t.Errorf("interpreter %q mode %q", p.Interpreter, p.App.ExecMode)
	}

	// Without "ready", listen_timeout makes it online anyway.
	b := nodeApp(t, "silent", nodetest.Example(t, "echo-ipc.js"), nil)
	b.WaitReady = true
	b.ListenTimeout = 300
	t0 = time.Now()
	q := start(t, m, b)[0]
	if d := time.Since(t0); q.Status != "online" || d < 300*time.Millisecond {
		t.Errorf("listen_timeout: status %q after %v", q.Status, d)
	}
}

func TestNodeShutdownWithMessage(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "shut.js")
	flag := filepath.Join(dir, "got-shutdown")
	js := `process.on('SIGINT', () => {});
process.on('message', (m) => {
  if (m === 'shutdown') { require('fs').writeFileSync(process.env.FLAG, 'yes'); process.exit(0); }
});
console.log('up');
`
	if err := os.WriteFile(script, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, Config{})
	a := nodeApp(t, "shut", script, map[string]string{"FLAG": flag})
	a.ShutdownWithMessage = true
	a.KillTimeout = 8000
	start(t, m, a)
	t0 := time.Now()
	procs, err := m.Stop(context.Background(), []string{"shut"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("stop took %v: the shutdown message did not end the app", d)
	}
	if b, err := os.ReadFile(flag); err != nil || string(b) != "yes" {
		t.Errorf("flag file: %q %v", b, err)
	}
	if procs[0].ExitCode != 0 || procs[0].ExitSignal != "" {
		t.Errorf("exit %d %q", procs[0].ExitCode, procs[0].ExitSignal)
	}
}

func TestNodeClusterReloadLosesNoRequest(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	a := nodeApp(t, "cweb", nodetest.Example(t, "app.js"), map[string]string{"PORT": strconv.Itoa(port), "HOST": "127.0.0.1"})
	a.Instances = 2
	clusterReloadLosesNothing(t, m, a, port)
}

func TestGoClusterReloadLosesNoRequestAndRestarts(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	a := goApp(t, "gweb", "cluster-http", map[string]string{"PORT": strconv.Itoa(port)})
	a.Instances = 2
	a.ExecMode = "cluster"
	clusterReloadLosesNothing(t, m, a, port)

	// A crashed worker is replaced on the same primary; the socket stays open meanwhile.
	list, _ := m.List(context.Background())
	if err := unix.Kill(list[0].PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	q := waitProc(t, m, list[0].PMID, "a restart", func(q api.Proc) bool { return q.Status == "online" && q.Restarts == 2 })
	if q.PID == list[0].PID || q.ExitSignal != "SIGKILL" {
		t.Errorf("after the crash: pid %d (was %d), exit signal %q", q.PID, list[0].PID, q.ExitSignal)
	}
	if err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil {
		t.Errorf("after the crash: %v", err)
	}
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

// httpGet makes one request with Connection: close and reads the whole answer.
func httpGet(url string) error {
	resp, err := noKeepAlive.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// clusterReloadLosesNothing starts a cluster app serving HTTP on port and reloads it while two
// clients send a steady stream of requests; none may fail.
func clusterReloadLosesNothing(t *testing.T, m *Manager, a appspec.App, port int) {
	t.Helper()
	procs := start(t, m, a)
	for _, p := range procs {
		if p.App.ExecMode != "cluster" || p.Status != "online" {
			t.Fatalf("instance %d: mode %q status %q", p.PMID, p.App.ExecMode, p.Status)
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// Wait until the workers listen (the primary holds the socket from the first listen on).
	m.mu.Lock()
	var listening []<-chan struct{}
	for _, in := range m.procs {
		listening = append(listening, in.run.worker.Listening())
	}
	m.mu.Unlock()
	for _, ch := range listening {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("workers never listened")
		}
	}
	if err := httpGet(url); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent, failed int
	var firstErr error
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := httpGet(url)
				mu.Lock()
				sent++
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				}
				mu.Unlock()
			}
		}()
	}
	reloaded, _, err := m.Reload(context.Background(), []string{a.Name}, api.RestartOptions{})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range reloaded {
		if p.PID == procs[i].PID || p.Restarts != 1 || p.Status != "online" {
			t.Errorf("pm_id %d after reload: pid %d (was %d) restarts %d status %q", p.PMID, p.PID, procs[i].PID, p.Restarts, p.Status)
		}
		if !groupGone(procs[i].PID) {
			t.Errorf("old worker %d still running", procs[i].PID)
		}
	}
	t.Logf("%d requests during the reload, %d failed", sent, failed)
	if failed > 0 || sent == 0 {
		t.Errorf("%d of %d requests failed during the reload; first: %v", failed, sent, firstErr)
	}
	if err := httpGet(url); err != nil {
		t.Errorf("after reload: %v", err)
	}
}

func TestSmartStartDuplicateAndUpdateEnv(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "smart", "sleep", map[string]string{"GREETING": "hi"})
	p := startSleepers(t, m, a)[0]

	// The same script again under the same name: refused without Force.
	if _, err := m.Start(context.Background(), []appspec.App{a}, api.StartOptions{}); !errors.Is(err, ErrAlreadyLaunched) {
		t.Fatalf("duplicate start: %v", err)
	}
	// By name only: a restart with the stored definition.
	procs, err := m.Start(context.Background(), []appspec.App{{Name: "smart", Script: "smart"}}, api.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].PMID != p.PMID || procs[0].Restarts != 1 || procs[0].PID == p.PID {
		t.Fatalf("smart start: %+v", procs)
	}
	// Restart keeps the frozen env; --update-env takes the CLI's.
	procs, _, err = m.Restart(context.Background(), []string{"smart"}, api.RestartOptions{})
	if err != nil || procs[0].Env["GREETING"] != "hi" {
		t.Fatalf("restart: %v, GREETING=%q", err, procs[0].Env["GREETING"])
	}
	procs, _, err = m.Restart(context.Background(), []string{"smart"}, api.RestartOptions{UpdateEnv: true, Env: map[string]string{"GREETING": "hello"}})
	if err != nil || procs[0].Env["GREETING"] != "hello" || procs[0].Restarts != 3 {
		t.Fatalf("restart --update-env: %v, GREETING=%q restarts %d", err, procs[0].Env["GREETING"], procs[0].Restarts)
	}
	// With Force the new definition replaces the old one.
	a.Instances = 2
	procs, err = m.Start(context.Background(), []appspec.App{a}, api.StartOptions{Force: true})
	if err != nil || len(procs) != 2 || procs[1].Status != "online" {
		t.Fatalf("forced start: %v %+v", err, procs)
	}
	if apps, _ := m.Apps(context.Background()); len(apps) != 1 || apps[0].Instances != 2 || apps[0].Interpreter != "none" {
		t.Errorf("apps: %+v", apps)
	}
}

func TestShutdownStopsAllAndRefusesWork(t *testing.T) {
	m := newTestManager(t, Config{})
	procs := startSleepers(t, m, goApp(t, "a", "sleep", nil), goApp(t, "b", "sleep", nil))
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, _ := m.List(context.Background())
	for i, p := range list {
		if p.Status != "stopped" || !groupGone(procs[i].PID) {
			t.Errorf("%s after shutdown: %q, group gone %v", p.Name, p.Status, groupGone(procs[i].PID))
		}
	}
	if _, err := m.Start(context.Background(), []appspec.App{goApp(t, "c", "sleep", nil)}, api.StartOptions{}); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("start after shutdown: %v", err)
	}
}

func TestDeleteClosesListenSockets(t *testing.T) {
	m := newTestManager(t, Config{})
	sock := filepath.Join(t.TempDir(), "app.sock")
	a := goApp(t, "unixweb", "http", nil)
	a.Listen = []string{"unix:" + sock}
	start(t, m, a)
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://unix/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := m.Delete(context.Background(), []string{"unixweb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after delete: %v", err)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Error("the socket still accepts connections after delete")
	}
}

func TestResolveApp(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "srv.js")
	if err := os.WriteFile(js, []byte("//"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PATH": os.Getenv("PATH")}
	nodePath, nodeErr := lookPath("node", env["PATH"])
	type tc struct {
		name    string
		app     appspec.App
		mode    execMode
		interp  string
		argv0   string
		wantErr string
	}
	cases := []tc{
		{name: "command string", app: appspec.App{Script: "echo hi; sleep 1", Cwd: dir, Env: env}, mode: modeFork, interp: "none"},
		{name: "PATH program", app: appspec.App{Script: "sleep", Args: []string{"5"}, Cwd: dir, Env: env}, mode: modeFork, interp: "none"},
		{name: "missing", app: appspec.App{Script: "no-such-thing-here", Cwd: dir, Env: env}, wantErr: "not found"},
		{name: "bad exec_mode", app: appspec.App{Script: "sleep", ExecMode: "turbo", Cwd: dir, Env: env}, wantErr: "exec_mode"},
		{name: "listen", app: appspec.App{Script: "sleep", Listen: []string{":0"}, Cwd: dir, Env: env}, mode: modeListen, interp: "none"},
	}
	if nodeErr != nil {
		// The node cases are skipped, or fail under CI, as every test that needs node.
		t.Run("node", func(t *testing.T) { nodetest.Node(t) })
	} else {
		cases = append(cases,
			tc{name: "node fork", app: appspec.App{Script: "srv.js", Cwd: dir, Env: env}, mode: modeFork, interp: "node", argv0: nodePath},
			tc{name: "node -i 2", app: appspec.App{Script: "srv.js", Instances: 2, Cwd: dir, Env: env}, mode: modeCluster, interp: "node", argv0: nodePath},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, r, err := resolveApp(c.app, "/usr/bin/corral")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.mode != c.mode || r.interpreter != c.interp || (c.argv0 != "" && r.argv[0] != c.argv0) {
				t.Errorf("mode %v interpreter %q argv %q", r.mode, r.interpreter, r.argv)
			}
			if spec.Name == "" || spec.Namespace != "default" || !filepath.IsAbs(r.argv[0]) {
				t.Errorf("name %q namespace %q argv0 %q", spec.Name, spec.Namespace, r.argv[0])
			}
		})
	}
	if _, r, _ := resolveApp(appspec.App{Script: "echo hi; sleep 1", Cwd: dir, Env: env}, ""); len(r.argv) < 3 || r.argv[1] != "-c" {
		t.Errorf("command string argv %q", r.argv)
	}
}

func TestLogPaths(t *testing.T) {
	spec := appspec.App{Name: "my app", Cwd: "/srv", Instances: 2}
	out, errLog, combined, pid := logPaths("/h", spec, 3)
	if out != "/h/logs/my+app-out-3.log" || errLog != "/h/logs/my+app-error-3.log" || combined != "" || pid != "/h/pids/my+app-3.pid" {
		t.Errorf("defaults: %s %s %q %s", out, errLog, combined, pid)
	}
	spec.OutFile, spec.ErrorFile, spec.LogFile = "out.log", "NULL", "/var/log/all"
	out, errLog, combined, _ = logPaths("/h", spec, 0)
	if out != "/srv/out-0.log" || errLog != os.DevNull || combined != "/var/log/all-0" {
		t.Errorf("custom: %s %s %s", out, errLog, combined)
	}
	spec.MergeLogs = true
	if out, _, _, _ = logPaths("/h", spec, 1); out != "/srv/out.log" {
		t.Errorf("merge_logs: %s", out)
	}
}

func TestTransitionTable(t *testing.T) {
	for _, c := range []struct {
		from, to Status
		ok       bool
	}{
		{"", StatusLaunching, true},
		{StatusLaunching, StatusOnline, true},
		{StatusOnline, StatusStopping, true},
		{StatusStopping, StatusStopped, true},
		{StatusStopped, StatusOnline, false},
		{StatusErrored, StatusOnline, false},
		{StatusWaitingRestart, StatusLaunching, true},
		{StatusStopped, StatusStopping, false},
	} {
		if got := canTransition(c.from, c.to); got != c.ok {
			t.Errorf("%q → %q allowed=%v, want %v", c.from, c.to, got, c.ok)
		}
	}
}

func TestMonitoringAndMaxMemoryRestart(t *testing.T) {
	m := newTestManager(t, Config{SampleInterval: 50 * time.Millisecond})
	p := startSleepers(t, m, goApp(t, "idle", "sleep", nil))[0]
	q := waitProc(t, m, p.PMID, "a memory sample", func(q api.Proc) bool { return q.Memory > 0 })
	if q.Memory > 1<<30 || q.CPU < 0 {
		t.Errorf("implausible sample: cpu %v memory %d", q.CPU, q.Memory)
	}

	a := goApp(t, "hog", "hog", nil)
	a.MaxMemoryRestart = 32 << 20
	h := start(t, m, a)[0]
	// The note is added once the restart has returned, just after the replacement is online.
	r := waitProc(t, m, h.PMID, "a memory restart", func(q api.Proc) bool {
		return q.Restarts >= 1 && q.Status == "online" && len(q.Notes) > 0
	})
	if r.PID == h.PID || !strings.Contains(r.Notes[len(r.Notes)-1], "max_memory_restart") {
		t.Errorf("after the memory restart: pid %d (was %d) notes %q", r.PID, h.PID, r.Notes)
	}
	if stopped, _ := m.Stop(context.Background(), []string{"idle"}); stopped[0].Memory != 0 || stopped[0].CPU != 0 {
		t.Errorf("stopped instance reports cpu %v memory %d", stopped[0].CPU, stopped[0].Memory)
	}
}
