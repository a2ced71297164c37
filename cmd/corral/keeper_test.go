package main

// The keeper with the real corral binary (issue 8, part 2): a daemon SIGKILLed under HTTP load, a
// `corral update` under load (and one to a broken binary), a keeper SIGKILLed, and `corral kill`.
// The apps are this test binary re-executed as an HTTP server ($CORRAL_TESTAPP=http: on its
// LISTEN_FDS socket in listen mode, or as a cluster worker) or a ticker ($CORRAL_TESTAPP=tick),
// and examples/node/app.js (cluster) and echo-ipc.js (fork, with a Node IPC channel) when Node is
// installed. Every process of a test's corral home is found by its environment (CORRAL_HOME=...)
// and SIGKILLed at cleanup, pass or fail.
//
// Run them with the old behaviour (CORRAL_KEEPER_TEST_OFF=1 starts the daemon without a keeper,
// as $CORRAL_KEEPER=0 does) to see them fail.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// testAppEnv makes the test binary run testApp instead of the tests.
const testAppEnv = "CORRAL_TESTAPP"

// testApp is an app of the keeper tests. Every mode logs "tick <pid> <n>" to stdout every
// $TICK_MS ms (default 2), n counting from 1: a gap in a pid's sequence in the log file is a lost
// line. "http" also serves HTTP, answering each request with its pid (header X-Pid) and logging
// "hit <id> <pid>" for the query's id, on its LISTEN_FDS socket (listen mode) or as a cluster
// worker on $PORT (cluster mode). It stops gracefully on SIGINT or SIGTERM.
func testApp() int {
	pid := strconv.Itoa(os.Getpid())
	tick := 2 * time.Millisecond
	if v, err := strconv.Atoi(os.Getenv("TICK_MS")); err == nil && v > 0 {
		tick = time.Duration(v) * time.Millisecond
	}
	go func() {
		t := time.NewTicker(tick)
		for n := 1; ; n++ {
			<-t.C
			os.Stdout.WriteString("tick " + pid + " " + strconv.Itoa(n) + "\n") // one write: atomic in a pipe
		}
	}()
	if os.Getenv(testAppEnv) != "http" {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		<-ch
		return 0
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		os.Stdout.WriteString("hit " + r.URL.Query().Get("id") + " " + pid + "\n")
		w.Header().Set("X-Pid", pid)
		io.WriteString(w, "ok "+pid)
	})}
	if os.Getenv("LISTEN_FDS") != "" {
		lns, err := activation.Listeners()
		if err != nil || len(lns) == 0 {
			fmt.Fprintln(os.Stderr, "testapp: no LISTEN_FDS socket:", err)
			return 1
		}
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			<-ch
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		}()
		if err := srv.Serve(lns[0]); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "testapp:", err)
			return 1
		}
		return 0
	}
	if !cluster.IsWorker() {
		fmt.Fprintln(os.Stderr, "testapp: http needs LISTEN_FDS or a cluster primary")
		return 1
	}
	if err := cluster.ServeHTTP(srv, "tcp", "127.0.0.1:"+os.Getenv("PORT")); err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		return 1
	}
	return 0
}

// kHome is a corral home for a keeper test.
type kHome struct {
	p   daemonproc.Paths
	env []string
	bin string // the corral binary
}

// newKHome returns a private corral home. Cleanup SIGKILLs every process of it.
func newKHome(t *testing.T) *kHome {
	t.Helper()
	dir, err := os.MkdirTemp("", "ck-")
	if err != nil {
		t.Fatal(err)
	}
	h := &kHome{p: daemonproc.PathsFor(filepath.Join(dir, "h")), bin: filepath.Join(binDir, "corral")}
	h.env = append(os.Environ(), "CORRAL_HOME="+h.p.Home)
	if os.Getenv("CORRAL_KEEPER_TEST_OFF") != "" {
		h.env = append(h.env, "CORRAL_KEEPER=0")
	}
	t.Cleanup(func() {
		for _, pid := range h.procs() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// The keeper's and the daemons' stderr: a race report (CORRAL_TEST_RACE=1) or a panic.
		if log, err := os.ReadFile(h.p.LogFile); err == nil {
			for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
				if i := strings.Index(string(log), bad); i >= 0 {
					t.Errorf("corral.log has %q:\n%s", bad, string(log)[i:min(len(log), i+4000)])
				}
			}
		}
		testutil.Eventually(10*time.Second, func() bool { return len(h.procs()) == 0 })
		os.RemoveAll(dir)
	})
	return h
}

// procs returns the live processes of the home: those whose environment names it (the keeper,
// the daemon, the apps, and what the apps started).
func (h *kHome) procs() []int {
	want := "\x00CORRAL_HOME=" + h.p.Home + "\x00"
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains("\x00"+string(env), want) {
			continue
		}
		if daemonproc.Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// kdescribe lists processes with their command lines, for failure messages.
func kdescribe(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		fmt.Fprintf(&b, "\n  %d %s", pid, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return b.String()
}

// run runs corral with extra environment entries and fails the test on error.
func (h *kHome) run(t *testing.T, extraEnv []string, args ...string) string {
	t.Helper()
	out, err := h.try(extraEnv, args...)
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *kHome) try(extraEnv []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(append([]string(nil), h.env...), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kproc is what the tests read from `corral jlist`.
type kproc struct {
	Name  string `json:"name"`
	PMID  int    `json:"pm_id"`
	PID   int    `json:"pid"`
	PMEnv struct {
		Status    string `json:"status"`
		Uptime    int64  `json:"pm_uptime"`
		CreatedAt int64  `json:"created_at"`
		Restarts  int    `json:"restart_time"`
		ExecMode  string `json:"exec_mode"`
	} `json:"pm2_env"`
}

func (h *kHome) jlist(t *testing.T) map[int]kproc {
	t.Helper()
	var list []kproc
	out := h.run(t, nil, "jlist")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("jlist: %v\n%s", err, out)
	}
	m := map[int]kproc{}
	for _, p := range list {
		m[p.PMID] = p
	}
	return m
}

// waitOnline waits until every instance is online with a pid.
func (h *kHome) waitOnline(t *testing.T, n int) map[int]kproc {
	t.Helper()
	var last map[int]kproc
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d instances online", n), func() bool {
		last = h.jlist(t)
		if len(last) != n {
			return false
		}
		for _, p := range last {
			if p.PMEnv.Status != "online" || p.PID == 0 {
				return false
			}
		}
		return true
	})
	return last
}

// keeperStatus pings the keeper of the home.
func (h *kHome) keeperStatus() (keeper.Status, error) {
	c, err := keeper.Dial(filepath.Join(h.p.Home, keeper.SocketName))
	if err != nil {
		return keeper.Status{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ping(ctx)
}

// waitNewDaemon waits until a daemon other than old has reported READY to the keeper, and returns
// its pid.
func (h *kHome) waitNewDaemon(t *testing.T, old int) int {
	t.Helper()
	var pid int
	if os.Getenv("CORRAL_KEEPER_TEST_OFF") != "" { // no keeper: the next command starts a daemon
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		daemonproc.WaitExit(ctx, old)
		cancel()
		h.run(t, nil, "ping")
		pid, _ = daemonproc.ReadPid(h.p.PidFile)
		return pid
	}
	testutil.WaitFor(t, 30*time.Second, "a new daemon ready", func() bool {
		st, err := h.keeperStatus()
		if err == nil && st.DaemonReady && st.DaemonPID != 0 && st.DaemonPID != old {
			pid = st.DaemonPID
			return true
		}
		return false
	})
	return pid
}

// ---- HTTP load ----

type kresult struct {
	id         int64
	start, end time.Time
	err        error
	pid        string
}

// kload sends requests to one URL from several goroutines until stopped: keep-alive ones and
// Connection: close ones. Every request has an id (?id=N), logged by the app.
type kload struct {
	name    string
	cluster bool // the daemon's primary accepts the connections
	ids     *atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []kresult
	ok      atomic.Int64
}

func startKLoad(name, url string, keepAlive, closing int, ids *atomic.Int64) *kload {
	l := &kload{name: name, ids: ids, stop: make(chan struct{}), cluster: name != "listen"}
	worker := func(disableKA bool) {
		defer l.wg.Done()
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: disableKA, MaxIdleConnsPerHost: 1}}
		defer c.CloseIdleConnections()
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			id := l.ids.Add(1)
			r := kresult{id: id, start: time.Now()}
			resp, err := c.Get(url + "/?id=" + strconv.FormatInt(id, 10))
			if err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case rerr != nil:
					err = rerr
				case resp.StatusCode != 200:
					err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
				default:
					r.pid = resp.Header.Get("X-Pid")
					if r.pid == "" {
						r.pid = resp.Header.Get("X-Worker-Pid")
					}
				}
			}
			r.err, r.end = err, time.Now()
			if err == nil {
				l.ok.Add(1)
			}
			l.mu.Lock()
			l.results = append(l.results, r)
			l.mu.Unlock()
		}
	}
	for i := 0; i < keepAlive+closing; i++ {
		l.wg.Add(1)
		go worker(i >= keepAlive)
	}
	return l
}

func (l *kload) finish() []kresult {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}

// waitOK waits until the load has n more successful requests than now.
func (l *kload) waitOK(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%d more successful requests to %s", n, l.name), func() bool { return l.ok.Load() >= want })
}

type kwindow struct{ from, to time.Time }

// kloadReport checks the requests of a load and counts those made while no daemon ran (started
// in one of the windows). A listen-mode app serves its socket itself: no request may fail. A
// cluster app's connections go through the daemon's primary: one it had accepted but not yet
// handed to a worker when it died or handed over is reset (docs/keeper.md, "What a SIGKILL can
// still lose"; cluster.Primary has no way yet to stop accepting before a hand-over). Those resets
// are reported and tolerated up to clusterResetBound; any other failure fails the test.
func kloadReport(t *testing.T, l *kload, res []kresult, gaps []kwindow) (pids map[string]int) {
	t.Helper()
	failed, resets, started := 0, 0, 0
	var slowest time.Duration
	pids = map[string]int{}
	for _, r := range res {
		if r.err != nil {
			failed++
			reset := strings.Contains(r.err.Error(), "connection reset by peer") || errors.Is(r.err, io.EOF) ||
				strings.Contains(r.err.Error(), "EOF")
			if reset && l.cluster {
				resets++
				t.Logf("%s: request %d (%s) reset: %v", l.name, r.id, r.end.Sub(r.start).Round(time.Millisecond), r.err)
				continue
			}
			if failed <= 5 {
				t.Errorf("%s: request %d (%s after start) failed: %v", l.name, r.id, r.end.Sub(r.start).Round(time.Millisecond), r.err)
			}
			continue
		}
		pids[r.pid]++
		for _, g := range gaps {
			if !r.start.Before(g.from) && r.start.Before(g.to) {
				started++
				slowest = max(slowest, r.end.Sub(r.start))
				break
			}
		}
	}
	if resets > max(clusterResetBound, len(res)/1000) {
		t.Errorf("%s: %d connections reset, more than the bound", l.name, resets)
	}
	t.Logf("%s: %d requests, %d failed (%d of them resets of a connection the old primary held); %d made while no daemon ran, all served, the slowest in %s; served by pids %v",
		l.name, len(res), failed, resets, started, slowest.Round(time.Millisecond), pids)
	return pids
}

// clusterResetBound is how many connections the primary of a dying daemon may drop per test.
const clusterResetBound = 3

// ---- log files ----

// logLines returns every line of the home's app log files (out and error).
func (h *kHome) logLines(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(h.p.Home, "logs", "*.log"))
	var lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimRight(string(data), "\n"), "\n")...)
	}
	return lines
}

// checkLogs waits until every successful hit id appears in the logs, then checks the tick lines:
// for each pid, n goes up by one from line to line (a gap is a lost line), a repeated n is a
// duplicate (a SIGKILL between the write and the consume; bounded by one 64 KiB chunk per kill).
func (h *kHome) checkLogs(t *testing.T, hits map[int64]bool) {
	t.Helper()
	var missing []int64
	ok := testutil.Eventually(30*time.Second, func() bool {
		seen := map[int64]bool{}
		for _, l := range h.logLines(t) {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "hit" {
				if id, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					seen[id] = true
				}
			}
		}
		missing = missing[:0]
		for id := range hits {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	if !ok {
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		t.Errorf("%d of %d served requests have no 'hit' line in the logs, e.g. %v", len(missing), len(hits), missing[:min(10, len(missing))])
	}
	type seq struct{ last, lines, gaps, dups int }
	ticks := map[string]*seq{}
	for _, l := range h.logLines(t) {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "tick" {
			continue
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		s := ticks[f[1]]
		if s == nil {
			s = &seq{last: n - 1}
			ticks[f[1]] = s
		}
		s.lines++
		switch {
		case n == s.last+1:
			s.last = n
		case n <= s.last:
			s.dups++
		default:
			s.gaps += n - s.last - 1
			s.last = n
		}
	}
	total, dups := 0, 0
	for pid, s := range ticks {
		total += s.lines
		dups += s.dups
		if s.gaps > 0 {
			t.Errorf("pid %s: %d tick lines lost (of %d)", pid, s.gaps, s.last)
		}
	}
	t.Logf("log lines: %d hit lines of served requests all present; %d tick lines from %d processes, %d duplicated, none lost",
		len(hits), total, len(ticks), dups)
}

// khits returns the ids of the successful requests to apps that log them.
func khits(res ...[]kresult) map[int64]bool {
	m := map[int64]bool{}
	for _, rs := range res {
		for _, r := range rs {
			if r.err == nil {
				m[r.id] = true
			}
		}
	}
	return m
}

// ---- the tests ----

// keeperApps starts the apps of the keeper tests and returns their load targets.
type keeperApps struct {
	lisURL, cluURL, nodeURL string
	node                    bool
	n                       int // instances in all
}

func startKeeperApps(t *testing.T, h *kHome, withTick bool) keeperApps {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var a keeperApps
	pl, pc := testutil.FreePort(t), testutil.FreePort(t)
	a.lisURL = "http://127.0.0.1:" + strconv.Itoa(pl)
	a.cluURL = "http://127.0.0.1:" + strconv.Itoa(pc)
	h.run(t, []string{testAppEnv + "=http"}, "start", self, "--name", "lis", "--interpreter", "none",
		"--listen", "127.0.0.1:"+strconv.Itoa(pl))
	h.run(t, []string{testAppEnv + "=http", "PORT=" + strconv.Itoa(pc)}, "start", self, "--name", "clu",
		"--interpreter", "none", "-x", "cluster", "-i", "3")
	a.n = 4
	if withTick {
		h.run(t, []string{testAppEnv + "=tick"}, "start", self, "--name", "tick", "--interpreter", "none")
		a.n++
	}
	if _, err := exec.LookPath("node"); err == nil || nodetest.InCI() {
		pn := testutil.FreePort(t)
		a.nodeURL = "http://127.0.0.1:" + strconv.Itoa(pn)
		h.run(t, []string{"PORT=" + strconv.Itoa(pn)}, "start", nodetest.Example(t, "app.js"), "--name", "node", "-i", "2")
		h.run(t, nil, "start", nodetest.Example(t, "echo-ipc.js"), "--name", "ipc")
		a.node = true
		a.n += 3
	}
	return a
}

// ksameProcs checks that every instance of before (but those of the apps in skip) is online in
// after with the same pid, restart counter, uptime and creation time.
func ksameProcs(t *testing.T, what string, before, after map[int]kproc, skip map[string]bool) {
	t.Helper()
	for id, b := range before {
		a, ok := after[id]
		if skip[b.Name] {
			continue
		}
		if !ok {
			t.Errorf("%s: pm_id %d (%s) is gone", what, id, b.Name)
			continue
		}
		if a.PID != b.PID || a.PMEnv.Restarts != b.PMEnv.Restarts || a.PMEnv.Uptime != b.PMEnv.Uptime ||
			a.PMEnv.CreatedAt != b.PMEnv.CreatedAt || a.PMEnv.Status != "online" {
			t.Errorf("%s: pm_id %d (%s): pid %d → %d, restarts %d → %d, pm_uptime %d → %d, created_at %d → %d, status %s",
				what, id, b.Name, b.PID, a.PID, b.PMEnv.Restarts, a.PMEnv.Restarts, b.PMEnv.Uptime, a.PMEnv.Uptime,
				b.PMEnv.CreatedAt, a.PMEnv.CreatedAt, a.PMEnv.Status)
		}
	}
}

// TestKeeperDaemonKill9UnderLoad SIGKILLs the daemon three times under HTTP load (keep-alive and
// Connection: close) to a listen-mode app, a Go cluster app of 3 workers and a Node cluster app of
// 2, with a fork-mode Node app holding an IPC channel and a ticker logging 500 lines a second per
// process. The keeper restarts the daemon, which re-adopts everything: the same pids, the same
// restart counters, uptimes and creation times, no failed request (those made while no daemon
// ran wait in the kept sockets' backlogs), no lost log line. The third time an app dies while the
// daemon is dead: the new daemon applies the restart policy with its counter. Then `corral kill`
// leaves no process.
func TestKeeperDaemonKill9UnderLoad(t *testing.T) {
	h := newKHome(t)
	apps := startKeeperApps(t, h, true)
	h.run(t, nil, "restart", "tick") // restart_time 1: a counter to preserve
	before := h.waitOnline(t, apps.n)
	var ids atomic.Int64
	lis := startKLoad("listen", apps.lisURL, 2, 2, &ids)
	clu := startKLoad("cluster", apps.cluURL, 2, 2, &ids)
	loads := []*kload{lis, clu}
	var node *kload
	if apps.node {
		node = startKLoad("node", apps.nodeURL, 1, 1, &ids)
		loads = append(loads, node)
	}
	stopped := false
	defer func() {
		if !stopped {
			for _, l := range loads {
				l.finish()
			}
		}
	}()
	for _, l := range loads {
		l.waitOK(t, 200)
	}

	var gaps []kwindow
	for i := 0; i < 2; i++ {
		old, err := daemonproc.ReadPid(h.p.PidFile)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		syscall.Kill(old, syscall.SIGKILL)
		pid := h.waitNewDaemon(t, old)
		gaps = append(gaps, kwindow{t0, time.Now()})
		t.Logf("kill -9 of daemon %d: daemon %d ready after %s", old, pid, time.Since(t0).Round(time.Millisecond))
		for _, l := range loads {
			l.waitOK(t, 200)
		}
	}
	mid := h.jlist(t)
	ksameProcs(t, "after two daemon kills", before, mid, nil)

	// An app that dies while no daemon runs: the daemon is stopped (its child's exit stays
	// unreaped), the app killed, then the daemon: the keeper reaps the app and keeps its status.
	old, _ := daemonproc.ReadPid(h.p.PidFile)
	var tick kproc
	for _, p := range mid {
		if p.Name == "tick" {
			tick = p
		}
	}
	t0 := time.Now()
	syscall.Kill(old, syscall.SIGSTOP)
	syscall.Kill(tick.PID, syscall.SIGKILL)
	syscall.Kill(old, syscall.SIGKILL)
	h.waitNewDaemon(t, old)
	gaps = append(gaps, kwindow{t0, time.Now()})
	for _, l := range loads {
		l.waitOK(t, 200)
	}
	var after map[int]kproc
	testutil.WaitFor(t, 30*time.Second, "the ticker restarted by the new daemon", func() bool {
		after = h.jlist(t)
		a := after[tick.PMID]
		return a.PID != 0 && a.PID != tick.PID && a.PMEnv.Status == "online"
	})
	res := make([][]kresult, len(loads))
	for i, l := range loads {
		res[i] = l.finish()
	}
	stopped = true
	ksameProcs(t, "after three daemon kills", before, after, map[string]bool{"tick": true})
	if a := after[tick.PMID]; a.PMEnv.Restarts != tick.PMEnv.Restarts+1 || a.PMEnv.CreatedAt != tick.PMEnv.CreatedAt {
		t.Errorf("ticker killed while no daemon ran: restarts %d → %d (want +1), created_at %d → %d",
			tick.PMEnv.Restarts, a.PMEnv.Restarts, tick.PMEnv.CreatedAt, a.PMEnv.CreatedAt)
	}
	t.Logf("restart counters before → after: %s", krestarts(before, after))
	for i, l := range loads {
		pids := kloadReport(t, l, res[i], gaps)
		if l == clu && len(pids) < 2 {
			t.Errorf("cluster load served by %d worker(s), want the 3 workers", len(pids))
		}
	}
	h.checkLogs(t, khits(res[0], res[1]))

	h.run(t, nil, "kill")
	if left := h.procs(); len(left) > 0 {
		t.Errorf("processes left after corral kill:%s", kdescribe(left))
	}
}

func krestarts(before, after map[int]kproc) string {
	var parts []string
	ids := make([]int, 0, len(before))
	for id := range before {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s#%d %d→%d", before[id].Name, id, before[id].PMEnv.Restarts, after[id].PMEnv.Restarts))
	}
	return strings.Join(parts, ", ")
}

// TestKeeperUpdateUnderLoad replaces the daemon by corral-v2 under HTTP load: no app restarts,
// no request fails, the pids stay, and the daemon runs v2. Then an update to a binary that cannot
// run as a daemon is rolled back: the command fails, the previous daemon runs again, the apps are
// untouched.
func TestKeeperUpdateUnderLoad(t *testing.T) {
	h := newKHome(t)
	apps := startKeeperApps(t, h, false)
	before := h.waitOnline(t, apps.n)
	var ids atomic.Int64
	loads := []*kload{startKLoad("listen", apps.lisURL, 2, 2, &ids), startKLoad("cluster", apps.cluURL, 2, 2, &ids)}
	if apps.node {
		loads = append(loads, startKLoad("node", apps.nodeURL, 1, 1, &ids))
	}
	stopped := false
	defer func() {
		if !stopped {
			for _, l := range loads {
				l.finish()
			}
		}
	}()
	for _, l := range loads {
		l.waitOK(t, 200)
	}

	old, err := daemonproc.ReadPid(h.p.PidFile)
	if err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(binDir, "corral-v2")
	t0 := time.Now()
	out := h.run(t, nil, "update", "--binary", v2)
	gaps := []kwindow{{t0, time.Now()}}
	t.Logf("corral update took %s:\n%s", time.Since(t0).Round(time.Millisecond), out)
	pid, err := daemonproc.ReadPid(h.p.PidFile)
	if err != nil || pid == old {
		t.Fatalf("daemon pid after the update: %d (%v), was %d", pid, err, old)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != v2 {
		t.Errorf("the new daemon runs %s, want %s", exe, v2)
	}
	if !strings.Contains(out, "version "+v2Version) {
		t.Errorf("update output does not name version %s:\n%s", v2Version, out)
	}
	if v := strings.TrimSpace(h.run(t, nil, "--version")); v == v2Version {
		t.Errorf("the CLI's own version changed: %s", v)
	}
	// ls shows the daemon's new version (this CLI is the old binary, so PM2's out-of-date note).
	if ls := h.run(t, nil, "ls"); !strings.Contains(ls, "In memory corral version: "+v2Version) {
		t.Errorf("ls does not show the daemon's version %s:\n%s", v2Version, ls)
	}
	if log, _ := os.ReadFile(h.p.LogFile); !strings.Contains(string(log), fmt.Sprintf("msg=\"corral daemon ready\" pid=%d", pid)) ||
		!strings.Contains(string(log), "version="+v2Version) {
		t.Errorf("corral.log has no ready line of daemon %d with version %s", pid, v2Version)
	}
	for _, l := range loads {
		l.waitOK(t, 200)
	}
	ksameProcs(t, "after the update", before, h.jlist(t), nil)

	// A broken binary: it answers --version, but fails as a daemon.
	broken := filepath.Join(t.TempDir(), "corral-broken")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\n[ \"$1\" = --version ] && { echo 9.9.9-broken; exit 0; }\necho 'broken daemon' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	out, err = h.try(nil, "update", "--binary", broken)
	gaps = append(gaps, kwindow{t0, time.Now()})
	if err == nil || !strings.Contains(out, "rolled back") && !strings.Contains(out, "previous daemon was started again") {
		t.Errorf("update to a broken binary: err %v, output:\n%s", err, out)
	}
	t.Logf("update to a broken binary (%s): %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
	rolled := h.waitNewDaemon(t, pid)
	if !strings.Contains(out, fmt.Sprintf("previous daemon runs again (pid %d)", rolled)) {
		t.Errorf("update output does not name the rolled-back daemon %d:\n%s", rolled, out)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", rolled)); exe != v2 {
		t.Errorf("the rolled-back daemon runs %s, want %s", exe, v2)
	}
	for _, l := range loads {
		l.waitOK(t, 200)
	}
	res := make([][]kresult, len(loads))
	for i, l := range loads {
		res[i] = l.finish()
	}
	stopped = true
	ksameProcs(t, "after the rollback", before, h.jlist(t), nil)
	for i, l := range loads {
		kloadReport(t, l, res[i], gaps)
	}
	h.checkLogs(t, khits(res[0], res[1]))
	h.run(t, nil, "kill")
	if left := h.procs(); len(left) > 0 {
		t.Errorf("processes left after corral kill:%s", kdescribe(left))
	}
}

// TestKeeperKill9StopsApps SIGKILLs the keeper: the daemon (told by the keeper's pidfd and by
// PR_SET_PDEATHSIG) stops every app and exits; no process of the home is left, none orphaned.
func TestKeeperKill9StopsApps(t *testing.T) {
	h := newKHome(t)
	apps := startKeeperApps(t, h, true)
	h.waitOnline(t, apps.n)
	kpid, err := daemonproc.ReadPid(h.p.KeeperPidFile)
	if err != nil {
		t.Fatalf("keeper pid file: %v", err)
	}
	all := h.procs()
	t.Logf("processes of the home before: %d (keeper, daemon, %d instances and their children)", len(all), apps.n)
	syscall.Kill(kpid, syscall.SIGKILL)
	if !testutil.Eventually(30*time.Second, func() bool { return len(h.procs()) == 0 }) {
		t.Fatalf("processes left 30s after the keeper's SIGKILL:%s", kdescribe(h.procs()))
	}
	if _, err := os.Stat(h.p.Socket); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	log, _ := os.ReadFile(h.p.LogFile)
	if !strings.Contains(string(log), "the keeper died") {
		t.Errorf("corral.log does not say the keeper died:\n%s", ktail(string(log), 15))
	}
}

// TestKeeperKillLeavesNothing: `corral kill` stops the apps, the daemon and the keeper, and returns
// only once all of them are gone.
func TestKeeperKillLeavesNothing(t *testing.T) {
	h := newKHome(t)
	apps := startKeeperApps(t, h, true)
	h.waitOnline(t, apps.n)
	if _, err := daemonproc.ReadPid(h.p.KeeperPidFile); err != nil {
		t.Fatalf("no keeper: %v", err)
	}
	h.run(t, nil, "kill")
	if left := h.procs(); len(left) > 0 {
		t.Fatalf("processes left after corral kill:%s", kdescribe(left))
	}
	for _, f := range []string{h.p.Socket, h.p.PidFile, h.p.KeeperPidFile, filepath.Join(h.p.Home, keeper.SocketName)} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind", f)
		}
	}
}

func ktail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
