package cluster_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

// forkListening forks n workers and waits until each is listening.
func forkListening(t testing.TB, p *cluster.Primary, n int) []*cluster.Worker {
	t.Helper()
	ws := make([]*cluster.Worker, n)
	for i := range ws {
		w, err := p.Fork(nil)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	for _, w := range ws {
		select {
		case <-w.Listening():
		case <-w.Done():
			t.Fatalf("worker %d exited (code %d) before listening", w.ID, w.ExitCode())
		case <-time.After(20 * time.Second):
			t.Fatalf("worker %d never listened", w.ID)
		}
	}
	return ws
}

func TestRoundRobinSplitsEvenly(t *testing.T) {
	// Port 0: the primary binds an ephemeral port for the first worker, the second joins the same
	// socket (same handle key), and both report the port bound, as Node's workers do.
	p := newPrimary(t, cluster.Settings{SchedulingPolicy: cluster.PolicyRoundRobin}, "http", "ADDR=127.0.0.1:0")
	var events sync.Map
	p.OnOnline(func(w *cluster.Worker) { events.Store(fmt.Sprint("online", w.ID), true) })
	addrs := make(chan cluster.Address, 2)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { addrs <- a })
	ws := forkListening(t, p, 2)
	var port int
	for i := 0; i < 2; i++ {
		a := wait(t, addrs, "listening address")
		if a.Port <= 0 || a.Address != "127.0.0.1" || a.AddressType != cluster.TCP4 || port != 0 && a.Port != port {
			t.Errorf("listening address = %+v, want 127.0.0.1, type 4 and one bound port for both", a)
		}
		port = a.Port
	}
	for _, w := range ws {
		if _, ok := events.Load(fmt.Sprint("online", w.ID)); !ok {
			t.Errorf("no online event for worker %d before listening", w.ID)
		}
	}
	counts := map[string]int{}
	var order []string // the worker of each connection, for the failure message
	for i := 0; i < 20; i++ {
		body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		id := strings.Fields(body)[0]
		counts[id]++
		order = append(order, id)
	}
	// Each worker is back on the free list once its "accepted" reply is read (a Go worker sends it when
	// its server accepts the connection), and the replies of two workers travel on two channels, so
	// one can overtake the other: the split is even, not a strict alternation.
	if counts["1"] < 6 || counts["2"] < 6 {
		t.Fatalf("20 sequential connections split %v (order %v), want about 10/10", counts, order)
	}
}

func TestNonePolicySharesSocket(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{SchedulingPolicy: cluster.PolicyNone}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	forkListening(t, p, 2)
	for i := 0; i < 10; i++ {
		if body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.Contains(body, " ") {
			t.Fatalf("unexpected body %q", body)
		}
	}
}

func TestSchedPolicyEnv(t *testing.T) {
	t.Setenv("NODE_CLUSTER_SCHED_POLICY", "none")
	if got := cluster.NewPrimary(cluster.Settings{}).Policy(); got != cluster.PolicyNone {
		t.Fatalf("policy with NODE_CLUSTER_SCHED_POLICY=none = %v", got)
	}
	if got := cluster.NewPrimary(cluster.Settings{SchedulingPolicy: cluster.PolicyRoundRobin}).Policy(); got != cluster.PolicyRoundRobin {
		t.Fatalf("explicit policy overridden: %v", got)
	}
}

func TestUDPIsShared(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{}, "udp", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	addrs := make(chan cluster.Address, 2)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { addrs <- a })
	forkListening(t, p, 2)
	if a := wait(t, addrs, "listening"); a.AddressType != cluster.UDP4 {
		t.Fatalf("address type %v, want udp4", a.AddressType)
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), ":ping") {
		t.Fatalf("udp reply %q, %v", buf[:n], err)
	}
}

func TestMessagesBothWays(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "echo")
	msgs := make(chan string, 10)
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- fmt.Sprintf("%d %s", w.ID, m) })
	exits := make(chan string, 1)
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
		exits <- fmt.Sprintf("%d %v %v", code, sig, w.ExitedAfterDisconnect())
	})
	w, err := p.Fork(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := wait(t, msgs, "hello"); got != fmt.Sprintf(`%d {"hello":%d}`, w.ID, w.ID) {
		t.Fatalf("first message %q", got)
	}
	w.Send(map[string]int{"n": 1})
	w.Send("bye")
	if got := wait(t, msgs, "echo 1"); got != fmt.Sprintf(`%d {"echo":{"n":1}}`, w.ID) {
		t.Fatalf("echo %q", got)
	}
	if got := wait(t, msgs, "echo bye"); got != fmt.Sprintf(`%d {"echo":"bye"}`, w.ID) {
		t.Fatalf("echo %q", got)
	}
	if got := wait(t, exits, "exit"); got != "0 <nil> false" {
		t.Fatalf("exit = %q, want code 0, no signal, not after disconnect", got)
	}
}

func TestExitCodesAndSignals(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "exit", "EXIT_CODE=3")
	type exit struct {
		code int
		sig  os.Signal
	}
	exits := make(chan exit, 1)
	disc := make(chan int, 1)
	p.OnDisconnect(func(w *cluster.Worker) { disc <- w.ID })
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { exits <- exit{code, sig} })
	w := fork(t, p, cluster.ForkOptions{})
	if id := wait(t, disc, "disconnect"); id != w.ID {
		t.Fatalf("disconnect for %d", id)
	}
	if e := wait(t, exits, "exit"); e.code != 3 || e.sig != nil {
		t.Fatalf("exit = %+v, want code 3 and no signal", e)
	}
	if len(p.Workers()) != 0 {
		t.Fatalf("dead worker still in Workers()")
	}

	p2 := newPrimary(t, cluster.Settings{}, "echo")
	exits2 := make(chan exit, 1)
	p2.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { exits2 <- exit{code, sig} })
	w2 := fork(t, p2, cluster.ForkOptions{})
	w2.Process.Signal(syscall.SIGKILL)
	if e := wait(t, exits2, "exit"); e.code != -1 || e.sig != syscall.SIGKILL {
		t.Fatalf("exit = %+v, want SIGKILL", e)
	}
	if w2.ExitedAfterDisconnect() {
		t.Fatal("a crash counted as exitedAfterDisconnect")
	}
}

func TestKillAndDisconnect(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	ws := forkListening(t, p, 2)
	if err := ws[0].Kill(nil); err != nil {
		t.Fatal(err)
	}
	wait(t, ws[0].Done(), "exit of the killed worker")
	if !ws[0].ExitedAfterDisconnect() || ws[0].IsConnected() || !ws[0].IsDead() {
		t.Fatalf("after Kill: exitedAfterDisconnect=%v connected=%v dead=%v", ws[0].ExitedAfterDisconnect(), ws[0].IsConnected(), ws[0].IsDead())
	}
	// The survivor takes everything.
	for i := 0; i < 4; i++ {
		if id := strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)))[0]; id != "2" {
			t.Fatalf("connection went to worker %s after worker 1 was killed", id)
		}
	}
	if err := ws[1].Disconnect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ws[1].Done():
	case <-time.After(20 * time.Second):
		t.Fatal("disconnected worker did not exit")
	}
	if code := ws[1].ExitCode(); code != 0 || !ws[1].ExitedAfterDisconnect() {
		t.Fatalf("disconnected worker: code %d, exitedAfterDisconnect %v", code, ws[1].ExitedAfterDisconnect())
	}
	// The last worker left: without HoldListeners the port is closed, as in Node.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Fatal("port still open after the last worker left")
	}
}

// A connection handed to a worker that dies before acknowledging it goes to another worker.
func TestUnacknowledgedHandoffIsRerouted(t *testing.T) {
	port := testutil.FreePort(t)
	p := mixedPrimary(t, "blackhole", "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port), fmt.Sprintf("PORT=%d", port))
	hole := fork(t, p, forkRaw)
	wait(t, hole.Listening(), "blackhole listening")
	good := forkListening(t, p, 1)[0]
	// The free list is [blackhole, good]: the first connection goes to the blackhole, which dies.
	body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	if id := strings.Fields(body)[0]; id != fmt.Sprint(good.ID) {
		t.Fatalf("served by %q, want worker %d", body, good.ID)
	}
	wait(t, hole.Done(), "blackhole exit")
	if hole.ExitCode() != 9 {
		t.Fatalf("blackhole exit code %d: it never received the connection", hole.ExitCode())
	}
}

// HoldListeners keeps the port open while no worker listens: connections wait for the next worker.
func TestHoldListenersQueuesAcrossRestart(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{HoldListeners: true}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	w := forkListening(t, p, 1)[0]
	w.Process.Signal(syscall.SIGKILL)
	wait(t, w.Done(), "exit of the killed worker")
	res := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Close = true
		r, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			res <- "error: " + err.Error()
			return
		}
		r.Body.Close()
		res <- r.Status
	}()
	forkListening(t, p, 1)
	if got := wait(t, res, "queued request"); got != "200 OK" {
		t.Fatalf("request made while no worker was up: %s", got)
	}
}

func TestGarbageFromWorker(t *testing.T) {
	p := rawPrimary(t, "garbage")
	msgs := make(chan string, 10)
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- string(m) })
	exits := make(chan int, 1)
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) { exits <- code })
	online := make(chan int, 1)
	p.OnOnline(func(w *cluster.Worker) { online <- w.ID })
	if _, err := p.Fork(nil); err != nil {
		t.Fatal(err)
	}
	wait(t, online, "online")
	// Invalid lines are dropped; the valid user messages after them still arrive, in order. The one fd
	// sent goes with exactly one of the two NODE_HANDLE lines (which one depends on how the kernel
	// splits reads, as in Node); the other is answered NACK and dropped.
	var got []string
	for len(got) == 0 || got[len(got)-1] != `"after-garbage"` {
		got = append(got, wait(t, msgs, "after-garbage"))
	}
	if len(got) != 3 || got[0] != `{"cmd":5}` || (got[1] != `{"x":1}` && got[1] != `"user-handle"`) {
		t.Fatalf("messages %q, want {\"cmd\":5}, one handle message, \"after-garbage\"", got)
	}
	if code := wait(t, exits, "exit"); code != 7 {
		t.Fatalf("exit code %d", code)
	}
	// The primary still works.
	port := testutil.FreePort(t)
	p2 := newPrimary(t, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	forkListening(t, p2, 1)
	get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
}

func TestWorkerThatNeverComesOnline(t *testing.T) {
	p := newPrimary(t, cluster.Settings{Exec: "sleep", Args: []string{"60"}}, "none")
	w, err := p.Fork(nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Listening():
		t.Fatal("sleep listened?")
	case <-time.After(200 * time.Millisecond): // nothing to wait for: the point is that nothing happens
	}
	if err := w.Kill(nil); err != nil {
		t.Fatal(err)
	}
	wait(t, w.Done(), "exit")
	if w.ExitSignal() != syscall.SIGTERM {
		t.Fatalf("signal %v", w.ExitSignal())
	}
}

func TestForkErrors(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := cluster.NewPrimary(cluster.Settings{Exec: "/nonexistent/worker"})
	if _, err := p.Fork(nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/worker") {
		t.Fatalf("fork of a missing executable: %v", err)
	}
	p.Close()
	if _, err := p.Fork(nil); !errors.Is(err, cluster.ErrPrimaryClosed) {
		t.Fatalf("fork on a closed primary: %v, want ErrPrimaryClosed", err)
	}
}

// A rolling replacement of every worker under steady keep-alive and Connection: close traffic fails
// no request when the workers use the graceful helper.
func TestRollingReplaceLosesNothing(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{HoldListeners: true}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	ws := forkListening(t, p, 2)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var errs sync.Map
	progress := make(chan struct{}, 1) // a tick per 50 successful requests
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		keepAlive := i%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}}
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				// A POST is not retried by net/http on a closed keep-alive connection, as wrk wouldn't.
				res, err := c.Post(url, "text/plain", strings.NewReader("x"))
				if err != nil {
					failed.Add(1)
					errs.Store(err.Error(), true)
					continue
				}
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				if ok.Add(1)%50 == 0 {
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	// Let traffic flow before, between and after the replacements.
	awaitTraffic := func() {
		for i := 0; i < 3; i++ {
			wait(t, progress, "traffic")
		}
	}
	for round := 0; round < 3; round++ {
		for i, old := range ws {
			awaitTraffic()
			nw := forkListening(t, p, 1)[0]
			if err := old.Disconnect(); err != nil {
				t.Fatal(err)
			}
			wait(t, old.Done(), "old worker exit")
			if old.ExitCode() != 0 {
				t.Errorf("old worker exited %d", old.ExitCode())
			}
			ws[i] = nw
		}
	}
	awaitTraffic()
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		var list []string
		errs.Range(func(k, _ any) bool { list = append(list, k.(string)); return true })
		t.Fatalf("%d of %d requests failed during rolling replacement: %v", failed.Load(), ok.Load()+failed.Load(), list)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests made", ok.Load())
	}
	t.Logf("%d requests, 0 failed, over 6 worker replacements", ok.Load())
}

// A worker told to disconnect while it is still starting (before or during its listen request) exits
// 0 instead of serving a listener nobody will close.
func TestDisconnectWhileStarting(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	p.OnOnline(func(w *cluster.Worker) { w.Disconnect() })
	var ws []*cluster.Worker
	for i := 0; i < 10; i++ {
		w, err := p.Fork(nil)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		wait(t, w.Done(), fmt.Sprintf("exit of worker %d", w.ID))
		if w.ExitCode() != 0 {
			t.Errorf("worker %d exited %d", w.ID, w.ExitCode())
		}
	}
}

// A handed-off connection arrives non-blocking: a blocking fd would freeze a Node worker's event loop.
func TestHandedOffConnectionIsNonBlocking(t *testing.T) {
	port := testutil.FreePort(t)
	p := rawPrimary(t, "nonblock", fmt.Sprintf("PORT=%d", port))
	msgs := make(chan string, 1)
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- string(m) })
	w, err := p.Fork(nil)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w.Listening(), "listening")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := wait(t, msgs, "fd flags"); got != `{"nonblock":true}` {
		t.Fatalf("worker saw %s", got)
	}
}
