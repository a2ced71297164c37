package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/testutil"
)

// healthAppEnv selects the health-check test apps (this file's init runs them before TestMain).
const healthAppEnv = "CORRAL_HEALTH_TESTAPP"

func init() {
	if mode := os.Getenv(healthAppEnv); mode != "" && (len(os.Args) < 2 || os.Args[1] != activation.ShimCommand) {
		os.Exit(healthApp(mode))
	}
}

// healthApp runs a health-check test app:
//
//	http     serves HTTP on 127.0.0.1:$PORT — as a cluster worker with CLUSTER=1, else on its own
//	         socket. "/" answers 200 "hello from <pid>" (500 with BROKEN=1); "/health" answers
//	         503 until READY_AFTER_MS have passed since the start, then 200 (always 503 with
//	         BROKEN=1, and while UNREADY_FILE holds this process's pid); "/live" answers 500 while
//	         LIVE_FAIL_FILE holds this process's pid.
//	listen   a listen-mode app (LISTEN_FDS): serves "/" with its pid and, once serving, creates
//	         $READY_DIR/<pid>; with BROKEN=1 it never accepts and never creates the file.
//	watchdog sends WATCHDOG=1 every WATCHDOG_USEC/2 until STOP_FILE holds its pid.
//	notify   a plain program (no Node IPC): after NOTIFY_AFTER_MS it sends READY=1 to
//	         $NOTIFY_SOCKET (systemd's sd_notify), prints "notified", then sleeps until SIGINT.
func healthApp(mode string) int {
	switch mode {
	case "http":
		return healthHTTPApp()
	case "listen":
		return healthListenApp()
	case "watchdog":
		usec, _ := strconv.Atoi(os.Getenv("WATCHDOG_USEC"))
		c, err := net.Dial("unixgram", notifyAddr(os.Getenv("NOTIFY_SOCKET")))
		if err != nil || usec == 0 {
			fmt.Fprintln(os.Stderr, "watchdog:", err, usec)
			return 1
		}
		me := strconv.Itoa(os.Getpid())
		go func() {
			for {
				if b, _ := os.ReadFile(os.Getenv("STOP_FILE")); strings.TrimSpace(string(b)) == me {
					return // hung
				}
				c.Write([]byte("WATCHDOG=1"))
				time.Sleep(time.Duration(usec/2) * time.Microsecond)
			}
		}()
		return sleepApp()
	case "notify":
		d, _ := strconv.Atoi(os.Getenv("NOTIFY_AFTER_MS"))
		time.Sleep(time.Duration(d) * time.Millisecond)
		c, err := net.Dial("unixgram", notifyAddr(os.Getenv("NOTIFY_SOCKET")))
		if err != nil {
			fmt.Fprintln(os.Stderr, "notify:", err)
			return 1
		}
		if _, err := c.Write([]byte("STATUS=warmed up\nREADY=1")); err != nil {
			fmt.Fprintln(os.Stderr, "notify:", err)
			return 1
		}
		c.Close()
		fmt.Println("notified")
		return sleepApp()
	}
	return 2
}

func notifyAddr(s string) string {
	if strings.HasPrefix(s, "@") {
		return "\x00" + s[1:]
	}
	return s
}

func healthHTTPApp() int {
	start := time.Now()
	pid := strconv.Itoa(os.Getpid())
	broken := os.Getenv("BROKEN") == "1"
	after, _ := strconv.Atoi(os.Getenv("READY_AFTER_MS"))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		if broken {
			http.Error(w, "broken build "+pid, http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "hello from "+pid)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if b, err := os.ReadFile(os.Getenv("UNREADY_FILE")); err == nil && strings.TrimSpace(string(b)) == pid {
			http.Error(w, "overloaded "+pid, http.StatusServiceUnavailable)
			return
		}
		if broken || time.Since(start) < time.Duration(after)*time.Millisecond {
			http.Error(w, "warming up "+pid, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/live", func(w http.ResponseWriter, r *http.Request) {
		if b, err := os.ReadFile(os.Getenv("LIVE_FAIL_FILE")); err == nil && strings.TrimSpace(string(b)) == pid {
			http.Error(w, "wedged "+pid, http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "alive")
	})
	srv := &http.Server{Handler: mux}
	addr := "127.0.0.1:" + os.Getenv("PORT")
	if os.Getenv("CLUSTER") == "1" {
		if err := cluster.ServeHTTP(srv, "tcp", addr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = srv.Serve(ln) }()
	return sleepApp()
}

func healthGoApp(t *testing.T, name, mode string, env map[string]string) appspec.App {
	t.Helper()
	a := goApp(t, name, "", env)
	delete(a.Env, testAppEnv)
	a.Env[healthAppEnv] = mode
	return a
}

func fastHTTPProbe(path string) *appspec.Probe {
	return &appspec.Probe{HTTPGet: &appspec.HTTPGetAction{Path: path}, PeriodSeconds: 0.2, FailureThreshold: 2}
}

// An app whose readiness endpoint answers 503 for 2 s is online only after that, and is
// "launching" with the probe's output meanwhile.
func TestReadinessProbeGatesOnline(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	a := healthGoApp(t, "warm", "http", map[string]string{"PORT": strconv.Itoa(port), "READY_AFTER_MS": "2000"})
	a.ReadinessProbe = fastHTTPProbe("/health")
	a.ListenTimeout = 10000
	began := time.Now()
	type result struct {
		procs []api.Proc
		err   error
	}
	done := make(chan result, 1)
	go func() {
		procs, err := m.Start(context.Background(), []appspec.App{a}, api.StartOptions{})
		done <- result{procs, err}
	}()
	// Meanwhile: launching, and the probe saw the 503.
	var seen api.Proc
	if !m.waitCond(10*time.Second, func() bool {
		in := m.procs[0]
		if in == nil {
			return false
		}
		seen = m.proc(in)
		return strings.Contains(seen.Readiness, "503")
	}) {
		t.Fatalf("the probe's 503 never showed; last: %+v", seen.Readiness)
	}
	if seen.Status != "launching" {
		t.Errorf("status while the probe fails: %q, want launching", seen.Status)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	took := time.Since(began)
	p := res.procs[0]
	if p.Status != "online" || p.Readiness != "ready" {
		t.Fatalf("after start: status %q readiness %q", p.Status, p.Readiness)
	}
	if took < 2*time.Second {
		t.Errorf("online after %v, before the app was ready (2s)", took)
	}
	if err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/health", port)); err != nil {
		t.Errorf("health once online: %v", err)
	}
	t.Logf("online after %v", took.Round(time.Millisecond))
}

// A reload onto a broken version (its readiness never passes) of a cluster app under
// Connection: close load: no request fails, only the old workers serve, the reload fails naming
// the instance and the probe's output, and the old workers stay online.
func TestBrokenReloadKeepsOldWorkersServing(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	a := healthGoApp(t, "web", "http", map[string]string{"PORT": strconv.Itoa(port), "CLUSTER": "1"})
	a.ExecMode, a.Instances = "cluster", 2
	a.ReadinessProbe = fastHTTPProbe("/health")
	a.ListenTimeout = 3000
	procs := start(t, m, a)
	old := map[string]bool{}
	for _, p := range procs {
		if p.Status != "online" {
			t.Fatalf("pm_id %d: %q", p.PMID, p.Status)
		}
		old[strconv.Itoa(p.PID)] = true
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	err := reloadBrokenUnderLoad(t, m, "web", a.Env, url, old)
	if err == nil || !strings.Contains(err.Error(), "instance 0") || !strings.Contains(err.Error(), "503") ||
		!strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("reload onto a broken version: err %v", err)
	}
	list, _ := m.List(context.Background())
	for i, p := range list {
		if p.Status != "online" || p.PID != procs[i].PID {
			t.Errorf("after the failed reload: pm_id %d status %q pid %d (was %d)", p.PMID, p.Status, p.PID, procs[i].PID)
		}
	}
	if _, err := getPid(url); err != nil {
		t.Errorf("after the failed reload: %v", err)
	}
}

// reloadBrokenUnderLoad reloads app name with BROKEN=1 added to appEnv (a version whose readiness
// never passes) while 4 clients send Connection: close requests to url, and fails the test unless
// every request succeeded and was served by one of the old pids. It returns the reload's error.
func reloadBrokenUnderLoad(t *testing.T, m *Manager, name string, appEnv map[string]string, url string, old map[string]bool) error {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	servedBy := map[string]int{}
	sent, failed := 0, 0
	var firstErr error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				pid, err := getPid(url)
				mu.Lock()
				sent++
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					servedBy[pid]++
				}
				mu.Unlock()
			}
		})
	}
	env := maps.Clone(appEnv)
	if env == nil {
		env = map[string]string{}
	}
	env["BROKEN"] = "1"
	_, _, err := m.Reload(context.Background(), []string{name}, api.RestartOptions{AppEnv: env})
	close(stop)
	wg.Wait()
	t.Logf("broken reload of %s under load: %d requests, %d failed, served by %v; reload error: %v", name, sent, failed, servedBy, err)
	if failed > 0 || sent == 0 {
		t.Errorf("%d of %d requests failed; first: %v", failed, sent, firstErr)
	}
	for pid := range servedBy {
		if !old[pid] {
			t.Errorf("pid %s (not an old process) served requests", pid)
		}
	}
	return err
}

// getPid makes one Connection: close request and returns the X-Pid of the answer (an error
// unless 200).
func getPid(url string) (string, error) {
	resp, err := noKeepAlive.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b[:n])
	}
	return resp.Header.Get("X-Pid"), nil
}

// A failing liveness probe restarts the instance, with the reason in its state and in the
// event feed.
func TestLivenessFailureRestarts(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	failFile := filepath.Join(t.TempDir(), "wedged")
	a := healthGoApp(t, "live", "http", map[string]string{"PORT": strconv.Itoa(port), "LIVE_FAIL_FILE": failFile})
	a.ReadinessProbe = fastHTTPProbe("/health")
	a.LivenessProbe = fastHTTPProbe("/live")
	p := start(t, m, a)[0]
	_, sub := m.ev.Subscribe(0, 0)
	defer sub.Close()
	evs := sub.C()
	if err := os.WriteFile(failFile, []byte(strconv.Itoa(p.PID)), 0o600); err != nil {
		t.Fatal(err)
	}
	q := waitProc(t, m, p.PMID, "a liveness restart", func(q api.Proc) bool {
		return q.LivenessRestarts == 1 && q.Status == "online" && q.PID != p.PID
	})
	if !strings.Contains(q.RestartReason, "liveness") || !strings.Contains(q.RestartReason, "500") || q.Restarts != 1 {
		t.Errorf("after the restart: reason %q restarts %d", q.RestartReason, q.Restarts)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-evs:
			if e.Type == events.Restart && e.Reason == "liveness" {
				if !strings.Contains(e.Message, "500") {
					t.Errorf("event message %q", e.Message)
				}
				return
			}
		case <-deadline:
			t.Fatal("no liveness restart event")
		}
	}
}

// A program that is not Node says it is ready with sd_notify READY=1 (wait_ready): online then,
// not after listen_timeout.
func TestSDNotifyReadiness(t *testing.T) {
	m := newTestManager(t, Config{})
	a := healthGoApp(t, "notifier", "notify", map[string]string{"NOTIFY_AFTER_MS": "800"})
	a.WaitReady = true
	a.ListenTimeout = 20000
	began := time.Now()
	p := start(t, m, a)[0]
	took := time.Since(began)
	if p.Status != "online" || took < 800*time.Millisecond || took > 15*time.Second {
		t.Fatalf("status %q after %v (READY=1 after 800ms, listen_timeout 20s)", p.Status, took)
	}
	t.Logf("online after %v", took.Round(time.Millisecond))
}

// A depends_on chain of three apps — db (ready: a readiness probe that passes after 1 s),
// migrate (completed: a one-shot job) and web — starts in order from one Start, whatever the
// order given, and stops in reverse; a cycle and an unknown name start nothing.
func TestDependsOnChainAndCycle(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	no := false
	db := healthGoApp(t, "db", "http", map[string]string{"PORT": strconv.Itoa(port), "READY_AFTER_MS": "1000"})
	db.ReadinessProbe = fastHTTPProbe("/health")
	db.ListenTimeout = 10000
	migrate := goApp(t, "migrate", "crash", map[string]string{"EXIT_CODE": "0", "CRASH_AFTER_MS": "300"})
	migrate.Autorestart = &no
	migrate.DependsOn = []appspec.Dependency{{Name: "db", Condition: "healthy"}}
	web := goApp(t, "web", "sleep", nil)
	web.DependsOn = []appspec.Dependency{{Name: "migrate", Condition: "completed"}, {Name: "db"}}

	// A cycle, and an unknown name: errors, and nothing started.
	a1 := goApp(t, "a1", "sleep", nil)
	a2 := goApp(t, "a2", "sleep", nil)
	a1.DependsOn = []appspec.Dependency{{Name: "a2"}}
	a2.DependsOn = []appspec.Dependency{{Name: "a1"}}
	if _, err := m.Start(context.Background(), []appspec.App{a1, a2}, api.StartOptions{}); err == nil || !strings.Contains(err.Error(), "cycle a1 → a2 → a1") {
		t.Fatalf("cycle: %v", err)
	}
	a1.DependsOn = []appspec.Dependency{{Name: "nosuch"}}
	if _, err := m.Start(context.Background(), []appspec.App{a1}, api.StartOptions{}); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("unknown name: %v", err)
	}
	if list, _ := m.List(context.Background()); len(list) != 0 {
		t.Fatalf("after refused starts: %d processes", len(list))
	}

	_, sub := m.ev.Subscribe(0, 0)
	defer sub.Close()
	if _, err := m.Start(context.Background(), []appspec.App{web, migrate, db}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stop(context.Background(), []string{"all"}); err != nil {
		t.Fatal(err)
	}
	// The feed, in order: what happened to whom.
	var seq []string
	timeout := time.After(10 * time.Second)
	for len(seq) == 0 || seq[len(seq)-1] != "db stopped" {
		select {
		case e := <-sub.C():
			switch e.Type {
			case events.Status:
				seq = append(seq, e.App+" "+e.To)
			case events.Exit:
				if e.Code != nil {
					seq = append(seq, e.App+" exit "+strconv.Itoa(*e.Code))
				}
			}
		case <-timeout:
			t.Fatalf("events so far: %q", seq)
		}
	}
	at := func(s string) int {
		for i, x := range seq {
			if x == s {
				return i
			}
		}
		t.Fatalf("no %q in %q", s, seq)
		return -1
	}
	if !(at("db online") < at("migrate launching") && at("migrate exit 0") < at("web launching") &&
		at("web stopped") < at("db stopping")) {
		t.Errorf("order: %q", seq)
	}
	t.Logf("%q", seq)
}

func healthListenApp() int {
	if os.Getenv("BROKEN") == "1" {
		return sleepApp() // holds the shared socket, accepts nothing: not ready, never
	}
	ls, err := activation.Listeners()
	if err != nil || len(ls) != 1 {
		fmt.Fprintf(os.Stderr, "listeners: %v (%d)\n", err, len(ls))
		return 1
	}
	pid := strconv.Itoa(os.Getpid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		fmt.Fprint(w, "hello from "+pid)
	})}
	go func() { _ = srv.Serve(ls[0]) }()
	if os.Getenv("CHATTY") == "1" {
		go func() {
			for {
				fmt.Println("serving " + pid)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("READY_DIR"), pid), nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := sleepApp()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return code
}

// A listen-mode app (the kernel shares its socket) gets the same gated reload with an exec probe
// that checks the process it is given ($CORRAL_PROBE_PID): a replacement that never gets ready is
// stopped, no request fails, the old processes serve, and the error carries the probe's output.
func TestListenModeGatedReload(t *testing.T) {
	m := newTestManager(t, Config{})
	readyDir := t.TempDir()
	a := healthGoApp(t, "lsn", "listen", map[string]string{"READY_DIR": readyDir})
	port := testutil.FreePort(t)
	a.Listen = []string{"127.0.0.1:" + strconv.Itoa(port)}
	a.Instances = 2
	a.ListenTimeout = 2000
	a.ReadinessProbe = &appspec.Probe{Exec: &appspec.ExecAction{Command: []string{"sh", "-c", `test -f "$READY_DIR/$CORRAL_PROBE_PID" || { echo "no $READY_DIR/$CORRAL_PROBE_PID"; exit 1; }`}},
		PeriodSeconds: 0.2}
	procs := start(t, m, a)
	old := map[string]bool{}
	for _, p := range procs {
		if p.Status != "online" || p.Readiness != "ready" {
			t.Fatalf("pm_id %d: %q %q", p.PMID, p.Status, p.Readiness)
		}
		old[strconv.Itoa(p.PID)] = true
	}
	if len(procs[0].Notes) != 0 {
		t.Errorf("notes for an exec probe: %q", procs[0].Notes)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	err := reloadBrokenUnderLoad(t, m, "lsn", a.Env, url, old)
	if err == nil || !strings.Contains(err.Error(), "exec sh: exit status 1: no ") || !strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("reload: %v", err)
	}
	list, _ := m.List(context.Background())
	for _, p := range list {
		if p.Env["BROKEN"] != "" {
			t.Errorf("pm_id %d kept the refused environment", p.PMID)
		}
	}
}

func TestProbeNotesWarnAboutTheSharedSocket(t *testing.T) {
	a := appspec.App{Listen: []string{"127.0.0.1:8080"}, ReadinessProbe: fastHTTPProbe("/health")}
	if n := probeNotes(a, modeListen); len(n) != 1 || !strings.Contains(n[0], "shared listen socket") {
		t.Errorf("listen mode, probe of the shared port: %q", n)
	}
	a.ReadinessProbe.HTTPGet.Port = 9090
	if n := probeNotes(a, modeListen); len(n) != 0 {
		t.Errorf("a port of its own: %q", n)
	}
	a.ReadinessProbe.HTTPGet.Port = 0
	if n := probeNotes(a, modeCluster); len(n) != 0 {
		t.Errorf("cluster mode (probed through Worker.Dial): %q", n)
	}
}

// After it was ready, a cluster worker whose readiness probe fails is held out of the round robin
// (still online, "not ready: ..."), and comes back once it passes again.
func TestReadinessAfterOnlineHoldsTheWorker(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	unready := filepath.Join(t.TempDir(), "unready")
	a := healthGoApp(t, "pool", "http", map[string]string{"PORT": strconv.Itoa(port), "CLUSTER": "1", "UNREADY_FILE": unready})
	a.ExecMode, a.Instances = "cluster", 2
	a.ReadinessProbe = fastHTTPProbe("/health")
	procs := start(t, m, a)
	sick := procs[0]
	if err := os.WriteFile(unready, []byte(strconv.Itoa(sick.PID)), 0o600); err != nil {
		t.Fatal(err)
	}
	q := waitProc(t, m, sick.PMID, "not ready", func(q api.Proc) bool { return strings.HasPrefix(q.Readiness, "not ready") })
	if q.Status != "online" || !strings.Contains(q.Readiness, "overloaded") {
		t.Errorf("unready worker: status %q readiness %q", q.Status, q.Readiness)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := 0; i < 20; i++ {
		pid, err := getPid(url)
		if err != nil {
			t.Fatal(err)
		}
		if pid == strconv.Itoa(sick.PID) {
			t.Fatalf("request %d served by the unready worker %d", i, sick.PID)
		}
	}
	os.Remove(unready)
	waitProc(t, m, sick.PMID, "ready again", func(q api.Proc) bool { return q.Readiness == "ready" })
	seen := false
	for i := 0; i < 40 && !seen; i++ {
		pid, err := getPid(url)
		if err != nil {
			t.Fatal(err)
		}
		seen = pid == strconv.Itoa(sick.PID)
	}
	if !seen {
		t.Errorf("the worker ready again served none of 40 requests")
	}
}

// watchdog_sec: a program that stops sending WATCHDOG=1 is restarted with the reason.
func TestWatchdogRestarts(t *testing.T) {
	m := newTestManager(t, Config{})
	stopFile := filepath.Join(t.TempDir(), "stop-petting")
	a := healthGoApp(t, "dog", "watchdog", map[string]string{"STOP_FILE": stopFile})
	a.WatchdogSec = 0.6
	p := start(t, m, a)[0]
	// It pets every WATCHDOG_USEC/2 until STOP_FILE names its pid.
	if err := os.WriteFile(stopFile, []byte(strconv.Itoa(p.PID)), 0o600); err != nil {
		t.Fatal(err)
	}
	q := waitProc(t, m, p.PMID, "a watchdog restart", func(q api.Proc) bool { return q.LivenessRestarts == 1 && q.PID != p.PID && q.Status == "online" })
	if !strings.Contains(q.RestartReason, "no WATCHDOG=1") {
		t.Errorf("reason %q", q.RestartReason)
	}
}

// A log_line readiness probe sees only the process it checks: during a reload, the old process's
// matching lines do not make a silent replacement ready.
func TestLogLineProbeSeesItsOwnProcess(t *testing.T) {
	m := newTestManager(t, Config{})
	a := healthGoApp(t, "chatty", "listen", map[string]string{"READY_DIR": t.TempDir(), "CHATTY": "1"})
	a.Listen = []string{"127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))}
	a.ListenTimeout = 1500
	a.ReadinessProbe = &appspec.Probe{LogLine: `^serving \d+$`, PeriodSeconds: 0.1}
	p := start(t, m, a)[0]
	if p.Status != "online" || p.Readiness != "ready" {
		t.Fatalf("start: %q %q", p.Status, p.Readiness)
	}
	env := map[string]string{}
	for k, v := range a.Env {
		env[k] = v
	}
	env["BROKEN"] = "1" // accepts nothing, prints nothing
	_, _, err := m.Reload(context.Background(), []string{"chatty"}, api.RestartOptions{AppEnv: env})
	if err == nil || !strings.Contains(err.Error(), "no match") {
		t.Fatalf("reload onto a silent replacement: %v", err)
	}
	if list, _ := m.List(context.Background()); list[0].PID != p.PID || list[0].Status != "online" {
		t.Errorf("after: %+v", list[0])
	}
}
