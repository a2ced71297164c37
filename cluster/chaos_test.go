package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

// A worker whose channel fails on the hand-off (it shut its read side, so the primary's sendmsg gets
// EPIPE) is dropped, and the connection goes to another worker. The failure used to run the
// handle's callback on the poll loop, under Primary.mu, which the callback takes: the primary
// wedged on the first connection.
func TestWorkerThatStopsReadingIsDroppedAndItsConnectionRerouted(t *testing.T) {
	port := testutil.FreePort(t)
	p := mixedPrimary(t, "closeread", "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port), fmt.Sprintf("PORT=%d", port))
	disc := make(chan int, 2)
	p.OnDisconnect(func(w *cluster.Worker) { disc <- w.ID })
	deaf := fork(t, p, forkRaw)
	wait(t, deaf.Listening(), "listening of the worker that stops reading")
	good := forkListening(t, p, 1)[0]
	// The free list is [deaf, good]: the first connection goes to deaf.
	for i := 0; i < 3; i++ {
		body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		if id := strings.Fields(body)[0]; id != fmt.Sprint(good.ID) {
			t.Fatalf("connection %d served by %q, want worker %d", i, body, good.ID)
		}
	}
	if id := wait(t, disc, "disconnect of the worker that stopped reading"); id != deaf.ID {
		t.Fatalf("disconnect of worker %d, want %d", id, deaf.ID)
	}
	if deaf.IsConnected() {
		t.Fatal("the worker whose channel failed is still connected")
	}
}

// chaosStats counts one kind of client traffic.
type chaosStats struct {
	conns, reqs, fails, timeouts atomic.Int64
	mu                           sync.Mutex
	errs                         map[string]int
}

func (s *chaosStats) fail(err error) {
	s.fails.Add(1)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.timeouts.Add(1)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:] // the cause, without the URL and addresses
	}
	s.mu.Lock()
	s.errs[msg]++
	s.mu.Unlock()
}

func (s *chaosStats) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []string
	for m, n := range s.errs {
		l = append(l, fmt.Sprintf("%dx %s", n, m))
	}
	sort.Strings(l)
	return strings.Join(l, "; ")
}

// kill -9 of a random worker and a fresh fork, round after round, under Connection: close and
// keep-alive traffic: after every round the primary still accepts and answers a fresh connection,
// no connection is left hanging (every one is answered or re-routed), and the only failures are
// requests in flight at the killed worker: at most one per client per round. Before callbacks moved
// off the sender's goroutine, a hand-off to a just-killed worker (EPIPE) wedged the primary within a
// few rounds.
func TestKillNineUnderTrafficNeverWedgesThePrimary(t *testing.T) {
	rounds, budget := 300, 60*time.Second
	if testing.Short() {
		rounds, budget = 100, 15*time.Second
	}
	killNineUnderTraffic(t, cluster.Settings{}, rounds, budget)
}

// The same with sticky sessions: the connections waiting for a killed worker go to their clients'
// next worker, none hangs, and nothing is left waiting or in flight once the traffic stops.
func TestStickyKillNineUnderTraffic(t *testing.T) {
	rounds, budget := 100, 30*time.Second
	if testing.Short() {
		rounds, budget = 40, 10*time.Second
	}
	killNineUnderTraffic(t, cluster.Settings{Sticky: true}, rounds, budget)
}

func killNineUnderTraffic(t *testing.T, settings cluster.Settings, rounds int, budget time.Duration) {
	const closeClients, keepClients = 4, 4
	p := newPrimary(t, settings, "http", "ADDR=127.0.0.1:0")
	addrs := make(chan cluster.Address, 1)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) {
		select {
		case addrs <- a:
		default:
		}
	})
	ws := forkListening(t, p, 4)
	url := "http://" + wait(t, addrs, "listening address").String() + "/"

	closeSt := &chaosStats{errs: map[string]int{}}
	keepSt := &chaosStats{errs: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := func(keepAlive bool, st *chaosStats) {
		defer wg.Done()
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				st.conns.Add(1)
				return d.DialContext(ctx, network, addr)
			}}
		defer tr.CloseIdleConnections()
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		for {
			select {
			case <-stop:
				return
			default:
			}
			st.reqs.Add(1)
			// A POST, which net/http does not retry on a dead keep-alive connection: every failure counts.
			res, err := c.Post(url, "text/plain", strings.NewReader("x"))
			if err != nil {
				st.fail(err)
				continue
			}
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 {
				st.fail(fmt.Errorf("status %d, body: %v", res.StatusCode, err))
			}
		}
	}
	for i := 0; i < closeClients; i++ {
		wg.Add(1)
		go client(false, closeSt)
	}
	for i := 0; i < keepClients; i++ {
		wg.Add(1)
		go client(true, keepSt)
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClients()

	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	done := 0
	for ; done < rounds && time.Since(start) < budget; done++ {
		i := rand.IntN(len(ws))
		victim := ws[i]
		victim.Process.Signal(syscall.SIGKILL)
		select {
		case <-victim.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the exit of the killed worker was never reported: the primary is wedged", done)
		}
		ws[i] = forkListening(t, p, 1)[0]
		res, err := fresh.Get(url)
		if err != nil {
			t.Fatalf("round %d: a fresh connection was not answered: %v", done, err)
		}
		res.Body.Close()
	}
	elapsed := time.Since(start)
	stopClients()
	// Every connection was answered, re-routed or failed: none is left in flight or waiting.
	testutil.WaitFor(t, 10*time.Second, "the balancer to settle", func() bool {
		if p.Waiting() != 0 {
			return false
		}
		for _, w := range ws {
			if w.Balancer().InFlight != 0 {
				return false
			}
		}
		return true
	})

	t.Logf("chaos: %d rounds (kill -9 + fork) in %v; Connection: close: %d connections, %d failed; keep-alive: %d requests on %d connections, %d failed",
		done, elapsed.Round(time.Millisecond), closeSt.conns.Load(), closeSt.fails.Load(), keepSt.reqs.Load(), keepSt.conns.Load(), keepSt.fails.Load())
	if closeSt.fails.Load()+keepSt.fails.Load() > 0 {
		t.Logf("failures: Connection: close: %s; keep-alive: %s", closeSt.summary(), keepSt.summary())
	}
	if done < 10 {
		t.Fatalf("only %d rounds in %v", done, budget)
	}
	if closeSt.reqs.Load() < int64(done) || keepSt.reqs.Load() < int64(done) {
		t.Fatalf("too little traffic to prove anything: %d close and %d keep-alive requests over %d rounds", closeSt.reqs.Load(), keepSt.reqs.Load(), done)
	}
	for _, k := range []struct {
		name    string
		st      *chaosStats
		clients int
	}{{"Connection: close", closeSt, closeClients}, {"keep-alive", keepSt, keepClients}} {
		if n := k.st.timeouts.Load(); n > 0 {
			t.Errorf("%s: %d requests hung until the client's timeout: a connection was neither answered nor re-routed (%s)", k.name, n, k.st.summary())
		}
		if n, max := k.st.fails.Load(), int64(done*k.clients); n > max {
			t.Errorf("%s: %d failures over %d rounds, more than one per client per round (%d): connections other than those in flight at the killed worker were lost (%s)", k.name, n, done, max, k.st.summary())
		}
	}
}
