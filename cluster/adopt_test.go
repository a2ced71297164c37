//go:build linux

package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
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
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// The tests here kill a supervisor (a helper process running primary A) under traffic and rebuild its
// cluster in the test process (primary B) from the descriptors it kept, as the corral daemon does
// with the keeper's: the listening sockets (ListenerFiles) and the primary's end of each worker's
// channel (ChannelFile). The test process is a child subreaper, so the workers become its children
// when the helper dies, as they become the keeper's.

func init() {
	helpers["adoptee"] = helperAdoptee
	helpers["adopt-primary"] = helperAdoptPrimary
}

// helperAdoptee is helperHTTP that also answers every message with {"echo":m,"id":id}, as
// testdata/node_worker.js does.
func helperAdoptee() {
	go func() {
		for m := range cluster.Messages() {
			cluster.Send(map[string]any{"echo": m, "id": cluster.ID()})
		}
	}()
	helperHTTP()
}

// adoptConfig tells the helper primary what to run.
type adoptConfig struct {
	Exec    string
	Args    []string
	Env     []string
	Workers int
	Listens int // 'listening' events to wait for per worker before the snapshot
}

// adoptSnapshot is what the helper primary sends, with the descriptors: the listeners in the order
// of Listeners, then the channels in the order of Workers.
type adoptSnapshot struct {
	Listeners    []string
	Workers      []adoptedWorker
	NextSeq      int64
	NextWorkerID int
}

type adoptedWorker struct {
	ID, Pid   int
	Keys      []string
	Listening bool
}

// helperAdoptPrimary runs primary A: it forks the workers, sends the snapshot and the descriptors on
// ADOPT_PRIMARY_FD, then serves until it is killed.
func helperAdoptPrimary() {
	die := func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "adopt-primary: "+f+"\n", a...)
		os.Exit(1)
	}
	var cfg adoptConfig
	if err := json.Unmarshal([]byte(os.Getenv("ADOPT_PRIMARY_CONFIG")), &cfg); err != nil {
		die("config: %v", err)
	}
	fd, _ := strconv.Atoi(os.Getenv("ADOPT_PRIMARY_FD"))
	c, err := net.FileConn(os.NewFile(uintptr(fd), "adopt"))
	if err != nil {
		die("%v", err)
	}
	uc := c.(*net.UnixConn)
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ADOPT_PRIMARY_") && !strings.HasPrefix(kv, "CLUSTER_TEST_HELPER=") {
			base = append(base, kv)
		}
	}
	p := cluster.NewPrimary(cluster.Settings{Exec: cfg.Exec, Args: cfg.Args, BaseEnv: base, ExtraEnv: cfg.Env, HoldListeners: true})
	listens := make(chan int, 64)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { listens <- w.ID })
	var ws []*cluster.Worker
	for i := 0; i < cfg.Workers; i++ {
		w, err := p.Fork(nil)
		if err != nil {
			die("fork: %v", err)
		}
		ws = append(ws, w)
	}
	for n := 0; n < cfg.Workers*cfg.Listens; n++ {
		select {
		case <-listens:
		case <-time.After(20 * time.Second):
			die("workers not listening")
		}
	}
	lns, err := p.ListenerFiles()
	if err != nil {
		die("%v", err)
	}
	snap := adoptSnapshot{NextSeq: p.NextSeq(), NextWorkerID: p.NextWorkerID()}
	var files []*os.File
	for key := range lns {
		snap.Listeners = append(snap.Listeners, key)
	}
	sort.Strings(snap.Listeners)
	for _, key := range snap.Listeners {
		files = append(files, lns[key])
	}
	for _, w := range ws {
		ch, err := w.ChannelFile()
		if err != nil {
			die("%v", err)
		}
		files = append(files, ch)
		listening := false
		select {
		case <-w.Listening():
			listening = true
		default:
		}
		snap.Workers = append(snap.Workers, adoptedWorker{ID: w.ID, Pid: w.Process.Pid, Keys: w.HandleKeys(), Listening: listening})
	}
	b, _ := json.Marshal(snap)
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if _, _, err := uc.WriteMsgUnix(b, unix.UnixRights(fds...), nil); err != nil {
		die("send: %v", err)
	}
	for _, f := range files {
		f.Close()
	}
	// Serve until killed (or until the test process is gone).
	io.Copy(io.Discard, uc)
}

// reapStatus is an AdoptSpec.Status for a worker that is this process's child (it is the subreaper):
// it reaps the process, as the keeper would, and reports how it ended.
func reapStatus(calls chan<- int) func(pid int) (int, os.Signal, bool) {
	return func(pid int) (int, os.Signal, bool) {
		calls <- pid
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			return 0, nil, false
		}
		if ws.Signaled() {
			return -1, ws.Signal(), true
		}
		return ws.ExitStatus(), nil, true
	}
}

// becomeSubreaper makes the test process the child subreaper until the test ends.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// primaryA is the helper process running primary A, and what it sent.
type primaryA struct {
	proc     *testutil.Proc
	snap     adoptSnapshot
	lns      map[string]*os.File
	channels []*os.File
	release  func() // kills A's workers and closes the kept descriptors not given to primary B
}

// startPrimaryA starts the helper primary and receives its snapshot. Every worker it started is
// killed and reaped at cleanup, whoever its parent is by then.
func startPrimaryA(t *testing.T, cfg adoptConfig) *primaryA {
	t.Helper()
	var pidfds []int
	var files []*os.File
	var once sync.Once
	release := func() {
		once.Do(func() {
			for _, f := range files { // closing a file twice (Adopt closed it) is harmless
				f.Close()
			}
			for _, fd := range pidfds {
				unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
				var info unix.Siginfo
				unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED, nil) // ECHILD unless it is ours
				unix.Close(fd)
			}
		})
	}
	t.Cleanup(release) // runs after the helper has been killed and reaped (registered before it)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, child := os.NewFile(uintptr(sp[0]), "adopt"), os.NewFile(uintptr(sp[1]), "adopt-child")
	mc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		child.Close()
		t.Fatal(err)
	}
	conn := mc.(*net.UnixConn)
	t.Cleanup(func() { conn.Close() })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "CLUSTER_TEST_HELPER=adopt-primary", "ADOPT_PRIMARY_FD=3", "ADOPT_PRIMARY_CONFIG="+string(b), workerGORACE)
	cmd.ExtraFiles = []*os.File{child}
	a := &primaryA{proc: testutil.Start(t, cmd), lns: map[string]*os.File{}, release: release}
	child.Close()

	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(64*4))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("snapshot from primary A: %v", err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			got, _ := unix.ParseUnixRights(&m)
			fds = append(fds, got...)
		}
	}
	for _, fd := range fds {
		files = append(files, os.NewFile(uintptr(fd), "kept"))
	}
	if err := json.Unmarshal(buf[:n], &a.snap); err != nil {
		t.Fatalf("snapshot %q: %v", buf[:n], err)
	}
	if len(files) != len(a.snap.Listeners)+len(a.snap.Workers) {
		t.Fatalf("%d descriptors for %d listeners and %d workers", len(files), len(a.snap.Listeners), len(a.snap.Workers))
	}
	for i, key := range a.snap.Listeners {
		a.lns[key] = files[i]
	}
	a.channels = files[len(a.snap.Listeners):]
	for _, w := range a.snap.Workers {
		fd, err := unix.PidfdOpen(w.Pid, 0)
		if err != nil {
			t.Fatalf("pidfd of worker %d: %v", w.ID, err)
		}
		pidfds = append(pidfds, fd)
	}
	return a
}

// kill SIGKILLs the helper and waits until it has been reaped: from then on no primary exists.
func (a *primaryA) kill(t *testing.T) {
	t.Helper()
	a.proc.Cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-a.proc.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("primary A not reaped 20s after SIGKILL")
	}
}

// ppid reads the parent pid of pid from /proc.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	// pid (comm) state ppid ...; comm may contain spaces, so cut after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

// Phases of the traffic.
const (
	phaseA   = iota // primary A serves
	phaseGap        // primary A is dead; no primary exists
	phaseB          // primary B has adopted the listeners and the workers
)

// traffic runs HTTP POSTs (never retried by net/http) on keep-alive and on Connection: close clients,
// and records, by the phase in which each request was written, who served it and what failed.
type traffic struct {
	url   string
	phase atomic.Int32
	stop  chan struct{}
	wg    sync.WaitGroup

	ok, failed atomic.Int64
	progress   chan struct{} // a tick per 25 successful requests

	// newConns is read-locked by each Connection: close request of the client loops; killPrimary
	// write-locks it for the instant of the SIGKILL (see there), unless straight is set.
	newConns sync.RWMutex
	// straight: the Connection: close clients go on straight through the SIGKILL.
	straight bool

	mu      sync.Mutex
	cond    *sync.Cond // on mu: broadcast whenever a request is written or answered
	errs    map[string]int
	served  map[int]map[int]int // phase → pid → requests
	gap     [2]int              // requests written in the gap: [keep-alive, close]
	gapDone [2]int              // ... of which answered
}

func newTraffic(url string) *traffic {
	tr := &traffic{url: url, stop: make(chan struct{}), progress: make(chan struct{}, 1),
		errs: map[string]int{}, served: map[int]map[int]int{phaseA: {}, phaseGap: {}, phaseB: {}}}
	tr.cond = sync.NewCond(&tr.mu)
	return tr
}

// waitUntil waits until cond, called with tr.mu held, reports true; it is checked whenever a
// request is written or answered.
func (tr *traffic) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	timer := time.AfterFunc(20*time.Second, func() {
		tr.mu.Lock()
		tr.cond.Broadcast()
		tr.mu.Unlock()
	})
	defer timer.Stop()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; served by phase and pid: %v", what, tr.served)
		}
		tr.cond.Wait()
	}
}

// start runs n client loops of each kind.
func (tr *traffic) start(n int) {
	for i := 0; i < 2*n; i++ {
		keepAlive := i%2 == 0
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			defer c.CloseIdleConnections()
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				if !keepAlive {
					tr.newConns.RLock()
				}
				tr.one(c, keepAlive)
				if !keepAlive {
					tr.newConns.RUnlock()
				}
			}
		}()
	}
}

// killPrimary SIGKILLs primary A and starts the gap. A connection A holds between its accept4 and
// its sendmsg dies with A: that is what a SIGKILL costs, and it would make the count of failed
// requests depend on timing. So, unless tr.straight, the Connection: close clients make no new
// connection for the instant of the kill (the requests in flight finish first); keep-alive requests
// go on, served by the workers on connections they already hold. New connections resume, and the
// burst starts, as soon as A is gone. TestAdoptAfterASIGKILLUnderUnheldTraffic kills straight through.
func (tr *traffic) killPrimary(t *testing.T, a *primaryA) {
	t.Helper()
	if !tr.straight {
		tr.newConns.Lock()
		defer tr.newConns.Unlock()
	}
	a.kill(t)
	tr.phase.Store(phaseGap)
}

// one makes one request.
func (tr *traffic) one(c *http.Client, keepAlive bool) {
	kind := 1
	if keepAlive {
		kind = 0
	}
	// A request belongs to the phase in which it started, before it got a connection: one that started
	// in the gap cannot have been accepted by primary A.
	phase := int32(-1)
	trace := &httptrace.ClientTrace{GetConn: func(string) { phase = tr.phase.Load() }, WroteRequest: func(httptrace.WroteRequestInfo) {
		if phase == phaseGap {
			tr.mu.Lock()
			tr.gap[kind]++
			tr.cond.Broadcast()
			tr.mu.Unlock()
		}
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", tr.url, strings.NewReader("x"))
	res, err := c.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil && res.StatusCode != 200 {
			err = fmt.Errorf("status %d", res.StatusCode)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	defer tr.cond.Broadcast()
	if err != nil {
		tr.failed.Add(1)
		tr.errs[err.Error()]++
		return
	}
	f := strings.Fields(string(body))
	pid := 0
	if len(f) == 2 {
		pid, _ = strconv.Atoi(f[1])
	}
	if phase >= 0 {
		tr.served[int(phase)][pid]++
		if phase == phaseGap {
			tr.gapDone[kind]++
		}
	}
	if tr.ok.Add(1)%25 == 0 {
		select {
		case tr.progress <- struct{}{}:
		default:
		}
	}
}

func (tr *traffic) await(t *testing.T, ticks int) {
	t.Helper()
	for i := 0; i < ticks; i++ {
		wait(t, tr.progress, "traffic")
	}
}

// halt stops the client loops and fails the test if a request failed.
func (tr *traffic) halt(t *testing.T) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	if n := tr.failed.Load(); n > 0 {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		t.Fatalf("%d of %d requests failed: %v", n, n+tr.ok.Load(), tr.errs)
	}
}

func (tr *traffic) pids(phase int) map[int]int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := map[int]int{}
	for k, v := range tr.served[phase] {
		m[k] = v
	}
	return m
}

// adoption is primary B after it adopted what primary A left.
type adoption struct {
	p       *cluster.Primary
	workers []*cluster.Worker // in the order of the snapshot's workers
	status  chan int          // pids Status was asked about
	msgs    chan string
	exits   chan string
	discs   chan int
}

// adopt builds primary B from a's descriptors, timing the hand-over.
func adopt(t *testing.T, a *primaryA, s cluster.Settings, helper string, env ...string) *adoption {
	t.Helper()
	s.HoldListeners = true
	b := &adoption{p: newPrimary(t, s, helper, env...), status: make(chan int, 8), msgs: make(chan string, 64),
		exits: make(chan string, 8), discs: make(chan int, 8)}
	b.p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { b.msgs <- fmt.Sprintf("%d %s", w.ID, m) })
	b.p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { b.exits <- fmt.Sprintf("%d %d %v", w.ID, code, sig) })
	b.p.OnDisconnect(func(w *cluster.Worker) { b.discs <- w.ID })
	b.p.SetNextSeq(a.snap.NextSeq + 1<<32) // the snapshot is older than A's last messages
	b.p.SetNextWorkerID(a.snap.NextWorkerID)
	for key, f := range a.lns {
		if err := b.p.AdoptListener(key, f); err != nil {
			t.Fatal(err)
		}
	}
	for i, aw := range a.snap.Workers {
		w, err := b.p.Adopt(cluster.AdoptSpec{ID: aw.ID, Pid: aw.Pid, Channel: a.channels[i], Keys: aw.Keys,
			Listening: aw.Listening, Status: reapStatus(b.status)})
		if err != nil {
			t.Fatal(err)
		}
		if w.Process.Pid != aw.Pid || w.ID != aw.ID {
			t.Fatalf("adopted worker %d pid %d, want %d pid %d", w.ID, w.Process.Pid, aw.ID, aw.Pid)
		}
		b.workers = append(b.workers, w)
	}
	return b
}

// Primary A forks three Go workers that serve HTTP under keep-alive and Connection: close traffic,
// then dies by SIGKILL; the requests made while no primary exists wait in the listening socket's
// backlog, and primary B, built from the kept descriptors, serves them with the same worker
// processes, talks with them, forks a fourth on the same socket, and sees the adopted ones leave by
// Disconnect, Kill and a signal, with the exit statuses that AdoptSpec.Status reports.
func TestAdoptWorkersOfAKilledPrimaryUnderTraffic(t *testing.T) {
	testutil.CheckGoroutines(t)
	becomeSubreaper(t)
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("ADDR=127.0.0.1:%d", port)
	a := startPrimaryA(t, adoptConfig{Workers: 3, Listens: 1, Args: []string{"-test.run=^$"},
		Env: []string{"CLUSTER_TEST_HELPER=adoptee", workerGORACE, addr}})
	if len(a.snap.Listeners) != 1 || len(a.snap.Workers) != 3 {
		t.Fatalf("snapshot %+v", a.snap)
	}
	pidA := map[int]bool{}
	maxID := 0
	for _, w := range a.snap.Workers {
		if !w.Listening || len(w.Keys) != 1 || w.Keys[0] != a.snap.Listeners[0] {
			t.Fatalf("worker %+v, listener %q", w, a.snap.Listeners[0])
		}
		pidA[w.Pid] = true
		maxID = max(maxID, w.ID)
	}

	tr := newTraffic(fmt.Sprintf("http://127.0.0.1:%d/", port))
	tr.start(2)
	t.Cleanup(func() {
		select {
		case <-tr.stop:
		default: // on failure: end the requests waiting for a primary that will not come
			close(tr.stop)
			a.release()
		}
		tr.wg.Wait()
	})
	tr.await(t, 8)

	// The supervisor dies. Its workers live on, now the test process's children.
	tr.killPrimary(t, a)
	for _, w := range a.snap.Workers {
		if pp := ppid(t, w.Pid); pp != os.Getpid() {
			t.Fatalf("worker %d's parent is %d after primary A died, want the subreaper %d", w.ID, pp, os.Getpid())
		}
	}
	// Requests while no primary exists: keep-alive ones on the workers' connections are served by the
	// workers themselves; new connections wait in the backlog. A burst of 32 more new connections.
	const burst = 32
	bc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < burst; i++ {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tr.one(bc, false)
		}()
	}
	tr.waitUntil(t, "the burst written in the gap, and keep-alive requests served", func() bool {
		return tr.gap[1] >= burst && tr.gapDone[0] >= 2
	})
	tr.mu.Lock()
	closeAnswered := tr.gapDone[1]
	tr.mu.Unlock()
	if closeAnswered != 0 {
		t.Fatalf("%d new connections answered while no primary existed", closeAnswered)
	}

	// Primary B adopts the listener and the workers.
	start := time.Now()
	b := adopt(t, a, cluster.Settings{}, "adoptee", addr)
	tr.phase.Store(phaseB)
	adoptTook := time.Since(start)
	tr.waitUntil(t, "every request written in the gap to be answered, and every adopted worker to serve", func() bool {
		return tr.gapDone[0]+tr.gapDone[1]+int(tr.failed.Load()) >= tr.gap[0]+tr.gap[1] && len(tr.served[phaseB]) == len(pidA)
	})
	tr.await(t, 8)
	onlyServedBy(t, tr, pidA)

	// Messages both ways.
	echoBothWays(t, b)

	// A new worker joins the adopted socket, with an ID above the adopted ones.
	wn := forkListening(t, b.p, 1)[0]
	if wn.ID <= maxID || wn.ID < a.snap.NextWorkerID {
		t.Fatalf("forked worker ID %d; adopted IDs up to %d, A's next ID %d", wn.ID, maxID, a.snap.NextWorkerID)
	}
	tr.waitUntil(t, "the forked worker to serve", func() bool { return tr.served[phaseB][wn.Process.Pid] > 0 })

	// An adopted worker disconnects gracefully under traffic: its exit comes from the pidfd, its
	// status from AdoptSpec.Status.
	w1 := b.workers[0]
	if err := w1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if id := wait(t, b.discs, "disconnect"); id != w1.ID {
		t.Fatalf("disconnect of %d, want %d", id, w1.ID)
	}
	if pid := wait(t, b.status, "Status"); pid != w1.Process.Pid {
		t.Fatalf("Status asked about pid %d, want %d", pid, w1.Process.Pid)
	}
	if e := wait(t, b.exits, "exit"); e != fmt.Sprintf("%d 0 <nil>", w1.ID) {
		t.Fatalf("exit event %q, want worker %d code 0", e, w1.ID)
	}
	if !w1.ExitedAfterDisconnect() || w1.IsConnected() || !w1.IsDead() {
		t.Fatalf("after Disconnect: exitedAfterDisconnect=%v connected=%v dead=%v", w1.ExitedAfterDisconnect(), w1.IsConnected(), w1.IsDead())
	}
	tr.await(t, 2)
	tr.halt(t)

	// Kill closes the channel, and a Go worker exits 0 when its channel closes (before or after the
	// signal arrives, it drains and exits 0 on SIGTERM too).
	w2 := b.workers[1]
	if err := w2.Kill(nil); err != nil {
		t.Fatal(err)
	}
	if pid := wait(t, b.status, "Status"); pid != w2.Process.Pid {
		t.Fatalf("Status asked about pid %d, want %d", pid, w2.Process.Pid)
	}
	if e := wait(t, b.exits, "exit"); e != fmt.Sprintf("%d 0 <nil>", w2.ID) {
		t.Fatalf("exit event %q, want worker %d code 0", e, w2.ID)
	}
	// Worker.Process signals the adopted process; a SIGKILL shows in the status.
	w3 := b.workers[2]
	if err := w3.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if pid := wait(t, b.status, "Status"); pid != w3.Process.Pid {
		t.Fatalf("Status asked about pid %d, want %d", pid, w3.Process.Pid)
	}
	if e := wait(t, b.exits, "exit"); e != fmt.Sprintf("%d -1 killed", w3.ID) {
		t.Fatalf("exit event %q, want worker %d killed", e, w3.ID)
	}
	if err := w3.Kill(nil); err != nil {
		t.Fatalf("Kill after the exit: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, b.exits, "exit of the forked worker"); e != fmt.Sprintf("%d 0 <nil>", wn.ID) {
		t.Fatalf("exit event %q", e)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("%d requests, 0 failed; started while no primary existed: %d keep-alive (served by the workers at once), %d on new connections (all waited in the backlog, then were served); NewPrimary+AdoptListener+Adopt took %v; served by pid: A %v, gap %v, B %v",
		tr.ok.Load(), tr.gap[0], tr.gap[1], adoptTook.Round(time.Microsecond), tr.served[phaseA], tr.served[phaseGap], tr.served[phaseB])
}

// A SIGKILL of the primary straight through Connection: close and keep-alive traffic fails at most
// the one request whose connection it held between accept4 and sendmsg: the primary accepts a connection only when a worker is free and hands it over at once,
// so it holds none of its own beyond the instant between accept4 and sendmsg (a connection handed
// over is in the worker's channel, which primary B adopts), and the new connections wait in the
// socket's backlog, for B. Before, the connections queued in A while every worker was busy died with it.
func TestAdoptAfterASIGKILLUnderUnheldTraffic(t *testing.T) {
	testutil.CheckGoroutines(t)
	becomeSubreaper(t)
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("ADDR=127.0.0.1:%d", port)
	a := startPrimaryA(t, adoptConfig{Workers: 2, Listens: 1, Args: []string{"-test.run=^$"},
		Env: []string{"CLUSTER_TEST_HELPER=adoptee", workerGORACE, addr}})
	tr := newTraffic(fmt.Sprintf("http://127.0.0.1:%d/", port))
	tr.straight = true
	tr.start(4) // more clients than workers: A always has connections to hand over
	t.Cleanup(func() {
		select {
		case <-tr.stop:
		default:
			close(tr.stop)
			a.release()
		}
		tr.wg.Wait()
	})
	tr.await(t, 8)
	tr.killPrimary(t, a)
	b := adopt(t, a, cluster.Settings{}, "adoptee", addr)
	tr.phase.Store(phaseB)
	tr.waitUntil(t, "every adopted worker to serve", func() bool { return len(tr.served[phaseB]) == len(b.workers) })
	tr.await(t, 8)
	close(tr.stop)
	tr.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	// The one connection the SIGKILL may catch between accept4 and sendmsg (microseconds, unless the
	// primary's thread is descheduled right there: the tests see it under heavy load only) is reset.
	// Anything else is a loss: a second failure, or a failure that is not a reset.
	resets := 0
	for e, n := range tr.errs {
		if strings.HasSuffix(e, "connection reset by peer") {
			resets += n
		}
	}
	if n := int(tr.failed.Load()); n > 1 || n != resets {
		t.Fatalf("%d of %d requests failed across the SIGKILL of the primary (at most 1 reset allowed): %v", n, int64(n)+tr.ok.Load(), tr.errs)
	}
	t.Logf("%d requests, %d failed (reset), across the SIGKILL of the primary; served by pid: A %v, gap %v, B %v",
		tr.ok.Load(), tr.failed.Load(), tr.served[phaseA], tr.served[phaseGap], tr.served[phaseB])
}

// The same with unmodified Node workers (testdata/node_worker.js: HTTP and net round-robin, a UDP
// socket shared by the primary): they keep serving across the death of primary A, answer messages,
// and a Node worker forked by primary B joins the three adopted sockets.
func TestAdoptNodeWorkersOfAKilledPrimary(t *testing.T) {
	if testing.Short() {
		// Once, in a -race -short run of the whole module on a loaded 2-core box, one adopted Node
		// worker never served again after the adoption (cause not found yet; README "Not yet").
		// The full run (.ci/run's second test pass) still runs it.
		t.Skip("flaky under -race with the whole module running; runs in the full pass")
	}
	node := nodetest.Node(t)
	testutil.CheckGoroutines(t)
	becomeSubreaper(t)
	script, _ := filepath.Abs("testdata/node_worker.js")
	httpPort, netPort, udpPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	env := []string{fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("NET_PORT=%d", netPort), fmt.Sprintf("UDP_PORT=%d", udpPort)}
	a := startPrimaryA(t, adoptConfig{Exec: node, Args: []string{script}, Env: env, Workers: 2, Listens: 3})
	if len(a.snap.Listeners) != 3 || len(a.snap.Workers) != 2 {
		t.Fatalf("snapshot %+v", a.snap)
	}
	pidA := map[int]bool{}
	for _, w := range a.snap.Workers {
		if len(w.Keys) != 3 {
			t.Fatalf("worker %+v uses %d sockets, want 3 (http, net, udp)", w, len(w.Keys))
		}
		pidA[w.Pid] = true
	}
	udp := func(what string) string {
		t.Helper()
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte(what))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("udp %s: %v", what, err)
		}
		return string(buf[:n])
	}
	tcp := func() string {
		t.Helper()
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", netPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	tr := newTraffic(fmt.Sprintf("http://127.0.0.1:%d/", httpPort))
	tr.start(1)
	t.Cleanup(func() {
		select {
		case <-tr.stop:
		default:
			close(tr.stop)
			a.release()
		}
		tr.wg.Wait()
	})
	tr.await(t, 2)

	tr.killPrimary(t, a)
	if r := udp("gap"); !strings.HasSuffix(r, " gap") { // the workers hold the UDP socket themselves
		t.Fatalf("udp reply %q while no primary exists", r)
	}
	const burst = 16
	bc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < burst; i++ {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tr.one(bc, false)
		}()
	}
	tr.waitUntil(t, "the burst written in the gap", func() bool { return tr.gap[1] >= burst })
	tr.mu.Lock()
	closeAnswered := tr.gapDone[1]
	tr.mu.Unlock()
	if closeAnswered != 0 {
		t.Fatalf("%d new connections answered while no primary existed", closeAnswered)
	}

	b := adopt(t, a, cluster.Settings{Exec: node, Args: []string{script}}, "none", env...)
	listening := make(chan int, 8)
	b.p.OnListening(func(w *cluster.Worker, _ cluster.Address) { listening <- w.ID })
	tr.phase.Store(phaseB)
	tr.waitUntil(t, "every request written in the gap to be answered, and both adopted workers to serve", func() bool {
		return tr.gapDone[0]+tr.gapDone[1]+int(tr.failed.Load()) >= tr.gap[0]+tr.gap[1] && len(tr.served[phaseB]) == 2
	})
	onlyServedBy(t, tr, pidA)
	echoBothWays(t, b)
	if r := tcp(); !strings.HasPrefix(r, "net ") {
		t.Fatalf("net server said %q after adoption", r)
	}

	// A Node worker forked by primary B joins the adopted HTTP, net and UDP sockets.
	wn := fork(t, b.p, cluster.ForkOptions{})
	for n := 0; n < 3; n++ {
		if id := wait(t, listening, "the new worker's listening events"); id != wn.ID {
			t.Fatalf("listening event of worker %d, want the new worker %d", id, wn.ID)
		}
	}
	tr.waitUntil(t, "the forked worker to serve", func() bool { return tr.served[phaseB][wn.Process.Pid] > 0 })

	tr.await(t, 2)
	// Traffic stops before a Node worker disconnects: Node's server.close() closes idle keep-alive
	// connections, which races with a client's next request on them (Node's behaviour, adopted or
	// not; the Go worker's drain has no such race, see the test above).
	tr.halt(t)
	w1, w2 := b.workers[0], b.workers[1]
	if err := w1.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if pid := wait(t, b.status, "Status"); pid != w1.Process.Pid {
		t.Fatalf("Status asked about pid %d, want %d", pid, w1.Process.Pid)
	}
	if e := wait(t, b.exits, "exit"); e != fmt.Sprintf("%d 0 <nil>", w1.ID) {
		t.Fatalf("exit event %q, want worker %d code 0", e, w1.ID)
	}
	if err := w2.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, b.exits, "exit"); e != fmt.Sprintf("%d -1 killed", w2.ID) {
		t.Fatalf("exit event %q, want worker %d killed", e, w2.ID)
	}
	if r := udp("after"); r != fmt.Sprintf("udp %d after", wn.ID) {
		t.Fatalf("udp reply %q, want the new worker's", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("%s: %d requests, 0 failed; started while no primary existed: %d keep-alive, %d on new connections; served by pid: A %v, gap %v, B %v",
		node, tr.ok.Load(), tr.gap[0], tr.gap[1], tr.served[phaseA], tr.served[phaseGap], tr.served[phaseB])
}

// Garbage given to AdoptListener and Adopt is refused with an error that says what is wrong, and
// leaves no descriptor (the given file included), goroutine or worker behind.
func TestAdoptGarbage(t *testing.T) {
	testutil.CheckGoroutines(t)
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil { // the runtime's poller, made once
		ln.Close()
	}
	before := fdTargets(t)
	p := cluster.NewPrimary(cluster.Settings{})

	// A process that has exited and been reaped, and one that has exited but is not reaped yet.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	zfd, err := unix.PidfdOpen(zombie.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(zfd), Events: unix.POLLIN}}, 20000); err != nil {
		t.Fatal(err)
	}
	unix.Close(zfd)
	reaped := false
	defer func() {
		if !reaped {
			zombie.Wait()
		}
	}()
	// A live process, to show that the other checks do not depend on the pid.
	alive := exec.Command("sleep", "600")
	if err := alive.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { alive.Process.Kill(); alive.Wait() }()
	pidfdsOfAlive := pidfdsOf(t, alive.Process.Pid) // os/exec's own

	// channel returns the primary's end of a fresh channel, and reports whether the other end sees
	// the end of file (the primary's end was closed, not leaked) once check is called.
	channel := func(t *testing.T) (f *os.File, closed func() bool) {
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		peer := sp[1]
		return os.NewFile(uintptr(sp[0]), "primary end"), func() bool {
			defer unix.Close(peer)
			unix.SetNonblock(peer, false)
			unix.SetsockoptTimeval(peer, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20})
			n, err := unix.Read(peer, make([]byte, 1))
			return n == 0 && err == nil
		}
	}
	pipe := func(t *testing.T) *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		return r
	}
	for _, c := range []struct {
		name string
		spec func(t *testing.T) (cluster.AdoptSpec, func() bool)
		want string
		is   error
	}{
		{"reaped pid", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			f, closed := channel(t)
			return cluster.AdoptSpec{ID: 1, Pid: gone.Process.Pid, Channel: f}, closed
		}, "no such process", os.ErrProcessDone},
		{"exited pid", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			f, closed := channel(t)
			return cluster.AdoptSpec{ID: 1, Pid: zombie.Process.Pid, Channel: f}, closed
		}, "the process has exited", os.ErrProcessDone},
		{"pipe as channel", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			return cluster.AdoptSpec{ID: 1, Pid: alive.Process.Pid, Channel: pipe(t)}, nil
		}, "channel: not a socket", nil},
		{"UDP socket as channel", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f, _ := pc.(*net.UDPConn).File()
			pc.Close()
			return cluster.AdoptSpec{ID: 1, Pid: alive.Process.Pid, Channel: f}, nil
		}, "not a connected Unix stream socket", nil},
		{"no channel", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			return cluster.AdoptSpec{ID: 1, Pid: alive.Process.Pid}, nil
		}, "no channel", nil},
		{"zero ID", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			f, closed := channel(t)
			return cluster.AdoptSpec{Pid: alive.Process.Pid, Channel: f}, closed
		}, "must be positive", nil},
		{"unknown key", func(t *testing.T) (cluster.AdoptSpec, func() bool) {
			f, closed := channel(t)
			return cluster.AdoptSpec{ID: 1, Pid: alive.Process.Pid, Channel: f, Keys: []string{"127.0.0.1:1:4:undefined:0"}}, closed
		}, "AdoptListener comes first", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, closed := c.spec(t)
			w, err := p.Adopt(spec)
			if err == nil || !strings.Contains(err.Error(), c.want) || c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("Adopt: %v, %v; want an error saying %q", w, err, c.want)
			}
			if closed != nil && !closed() {
				t.Fatal("the channel given to a failed Adopt was not closed")
			}
			t.Log(err)
		})
	}

	// AdoptListener: a pipe, a connected socket, and a key that has a socket already.
	for _, c := range []struct {
		name string
		file func(t *testing.T) *os.File
		want string
	}{
		{"pipe", pipe, "not a socket"},
		{"connected socket", func(t *testing.T) *os.File {
			sp, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			unix.Close(sp[1])
			return os.NewFile(uintptr(sp[0]), "connected")
		}, "not a listening stream socket nor a UDP socket"},
	} {
		t.Run("listener "+c.name, func(t *testing.T) {
			if err := p.AdoptListener("k", c.file(t)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("AdoptListener: %v, want an error saying %q", err, c.want)
			} else {
				t.Log(err)
			}
		})
	}
	listener := func() *os.File {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, _ := ln.(*net.TCPListener).File()
		ln.Close()
		return f
	}
	if err := p.AdoptListener("k", listener()); err != nil {
		t.Fatal(err)
	}
	if err := p.AdoptListener("k", listener()); err == nil || !strings.Contains(err.Error(), "has a socket already") {
		t.Fatalf("second AdoptListener for one key: %v", err)
	}
	// A worker ID in use.
	f, peerClosed := channel(t)
	w, err := p.Adopt(cluster.AdoptSpec{ID: 3, Pid: alive.Process.Pid, Channel: f, Keys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	f2, closed := channel(t)
	if _, err := p.Adopt(cluster.AdoptSpec{ID: 3, Pid: alive.Process.Pid, Channel: f2}); err == nil || !strings.Contains(err.Error(), "in use") || !closed() {
		t.Fatalf("Adopt with an ID in use: %v", err)
	}
	if len(p.Workers()) != 1 {
		t.Fatalf("workers after the failures: %v", p.Workers())
	}
	// Of the five Adopts of the live pid, only the one that succeeded holds pidfds: its own (in the
	// poll loop) and that of w.Process.
	if n := pidfdsOf(t, alive.Process.Pid) - pidfdsOfAlive; n != 2 {
		t.Errorf("%d pidfds of the adopted process, want 2 (the poll loop's and w.Process's)", n)
	}
	if keys := w.HandleKeys(); len(keys) != 1 || keys[0] != "k" {
		t.Fatalf("HandleKeys of the adopted worker: %v", keys)
	}
	// Shutdown: the "worker" (sleep) never answers the disconnect; it is killed when ctx ends, and
	// its exit is seen through the pidfd (Status is nil: code -1).
	exits := make(chan string, 1)
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { exits <- fmt.Sprintf("%d %d %v", w.ID, code, sig) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if e := wait(t, exits, "exit"); e != "3 -1 <nil>" {
		t.Fatalf("exit %q, want code -1 and no signal without a Status", e)
	}
	alive.Wait()
	peerClosed()
	if _, err := w.ChannelFile(); !errors.Is(err, cluster.ErrNotConnected) {
		t.Fatalf("ChannelFile after the exit: %v", err)
	}
	f3, closed3 := channel(t)
	selfPidfds := pidfdsOf(t, os.Getpid())
	if _, err := p.Adopt(cluster.AdoptSpec{ID: 4, Pid: os.Getpid(), Channel: f3}); !errors.Is(err, cluster.ErrPrimaryClosed) || !closed3() {
		t.Fatalf("Adopt after Shutdown: %v", err)
	}
	if n := pidfdsOf(t, os.Getpid()) - selfPidfds; n != 0 {
		t.Errorf("a failed Adopt left %d pidfd(s)", n)
	}
	if err := p.AdoptListener("k2", listener()); !errors.Is(err, cluster.ErrPrimaryClosed) {
		t.Fatalf("AdoptListener after Shutdown: %v", err)
	}
	// A Primary closed before it ever had a poll loop starts none for them.
	q := cluster.NewPrimary(cluster.Settings{})
	q.Close()
	if err := q.AdoptListener("k", listener()); !errors.Is(err, cluster.ErrPrimaryClosed) {
		t.Fatalf("AdoptListener on a closed Primary: %v", err)
	}
	f4, closed4 := channel(t)
	if _, err := q.Adopt(cluster.AdoptSpec{ID: 1, Pid: os.Getpid(), Channel: f4}); !errors.Is(err, cluster.ErrPrimaryClosed) || !closed4() {
		t.Fatalf("Adopt on a closed Primary: %v", err)
	}
	zombie.Wait()
	reaped = true
	// What is left is what was there before. (Pidfds are counted by pid above: that of w.Process
	// is closed by the os package when the Worker is garbage, at a time of the GC's choosing, and
	// so may be that of a Worker of an earlier run of this test.)
	after := fdTargets(t)
	for target, n := range before {
		after[target] -= n
	}
	delete(after, "anon_inode:[pidfd]")
	for target, n := range after {
		if n != 0 {
			t.Errorf("%+d descriptor(s) for %s after the garbage", n, target)
		}
	}
}

// fdTargets counts this process's descriptors by what they point to (socket and pipe inodes are
// reduced to their kind).
func fdTargets(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	m := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		if i := strings.Index(target, ":["); i > 0 && !strings.HasPrefix(target, "anon_inode") {
			target = target[:i]
		}
		m[target]++
	}
	return m
}

// pidfdsOf counts this process's pidfds that refer to pid (the "Pid:" line of their fdinfo).
func pidfdsOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Skip("no /proc/self/fdinfo")
	}
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && strings.Contains(string(b), fmt.Sprintf("\nPid:\t%d\n", pid)) {
			n++
		}
	}
	return n
}

// onlyServedBy fails the test if a process other than primary A's workers served a request in any
// phase.
func onlyServedBy(t *testing.T, tr *traffic, pidA map[int]bool) {
	t.Helper()
	for _, ph := range []int{phaseA, phaseGap, phaseB} {
		for pid, n := range tr.pids(ph) {
			if !pidA[pid] {
				t.Fatalf("pid %d served %d requests in phase %d; only primary A's workers %v should", pid, n, ph, pidA)
			}
		}
	}
}

// echoBothWays sends each adopted worker a message and waits for its echo.
func echoBothWays(t *testing.T, b *adoption) {
	t.Helper()
	for _, w := range b.workers {
		if err := w.Send(map[string]int{"ping": w.ID}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	for range b.workers {
		got[wait(t, b.msgs, "echo")] = true
	}
	for _, w := range b.workers {
		if want := fmt.Sprintf(`%d {"echo":{"ping":%d},"id":%d}`, w.ID, w.ID, w.ID); !got[want] {
			t.Fatalf("echoes %v, want %s", got, want)
		}
	}
}

// Bun and Deno workers of a killed primary are adopted and served again: the new primary's first
// message to each (the sync round trip) must already be framed for the runtime (Bun's marked
// internal lines; Deno's handles sent alone), or the worker never leaves its syncing state.
func TestAdoptBunAndDenoWorkers(t *testing.T) {
	becomeSubreaper(t)
	for _, rt := range []string{"bun", "deno"} {
		t.Run(rt, func(t *testing.T) {
			if rt == "bun" && os.Getenv("CORRAL_TEST_ADOPT_BUN") == "" {
				// Without the Bun framing an adopted Bun worker never answers (always, checked); with
				// it, 5 of 8 -race runs of this test still timed out. Cause not found: README "Not yet".
				t.Skip("adopted Bun workers: not reliable yet (CORRAL_TEST_ADOPT_BUN=1 runs it)")
			}
			s := runtimeSettings(t, rt, "testdata/runtime_worker.mjs")
			netPort := testutil.FreePort(t)
			env := []string{fmt.Sprintf("HTTP_PORT=%d", testutil.FreePort(t)), fmt.Sprintf("NET_PORT=%d", netPort)}
			listens := 2 // node:http and node:net both listen through the primary
			if rt == "bun" {
				listens = 1 // Bun's node:http binds the port itself
			}
			a := startPrimaryA(t, adoptConfig{Exec: s.Exec, Args: s.Args, Env: env, Workers: 2, Listens: listens})
			a.kill(t)
			b := adopt(t, a, s, "none", env...)
			served := map[string]bool{}
			testutil.WaitFor(t, 30*time.Second, "both adopted workers to answer on the net socket", func() bool {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", netPort), 2*time.Second)
				if err != nil {
					return false
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				reply, _ := io.ReadAll(c)
				served[string(reply)] = true
				return len(served) == 2 && !served[""]
			})
			for _, w := range b.workers {
				if !served[fmt.Sprintf("net %d", w.ID)] {
					t.Errorf("adopted %s worker %d never answered (answers: %v)", rt, w.ID, served)
				}
			}
			if rt == "bun" {
				// Bun's own node:http servers keep a disconnected worker alive (without the daemon's
				// preload, docs/protocol.md §9): end them.
				for _, w := range b.workers {
					w.Kill(syscall.SIGKILL)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := b.p.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
