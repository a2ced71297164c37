package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// within runs f on its own goroutine with a context that ends after d, and fails the test when f
// returns an error or has not returned 2s after that: the daemon must answer even when something
// below it is stuck. On a timeout it logs every goroutine's stack and abandons f.
func within[T any](t *testing.T, d time.Duration, what string, f func(ctx context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	timer := time.NewTimer(d + 2*time.Second)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.v
	case <-timer.C:
		t.Fatalf("%s did not return within %v; goroutines:\n%s", what, d, goroutineDump())
	}
	panic("unreachable")
}

// chaosClient sends requests in a loop until stop is closed and counts what happened.
type chaosClient struct {
	kind   string // "close" or "keep-alive"
	client *http.Client
	dials  atomic.Int64
	ok     atomic.Int64
	failed atomic.Int64

	mu       sync.Mutex
	firstErr error
}

func newChaosClient(kind string) *chaosClient {
	c := &chaosClient{kind: kind}
	tr := &http.Transport{
		DisableKeepAlives:   kind == "close",
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	c.client = &http.Client{Transport: tr, Timeout: 3 * time.Second}
	return c
}

func (c *chaosClient) run(url string, stop <-chan struct{}) {
	// At most one request per millisecond: enough to have connections in flight at every kill,
	// without taking the machine from everything else.
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	for {
		select {
		case <-stop:
			return
		case <-pace.C:
		}
		resp, err := c.client.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if err != nil {
			c.failed.Add(1)
			c.mu.Lock()
			if c.firstErr == nil {
				c.firstErr = err
			}
			c.mu.Unlock()
			continue
		}
		c.ok.Add(1)
	}
}

// TestClusterChaosKillUnderTraffic kills a random worker of a 4-instance cluster app with SIGKILL
// every round while clients send requests (with Connection: close and over keep-alive
// connections), and after every round requires the daemon and the app to answer within bounds:
// the restart of the killed instance is recorded, a fresh request is answered, List (what
// `corral ls` calls) returns, and every fifth round a Reload of the app completes. At the end Stop
// must complete too. Failed requests during the rounds are expected (the killed worker's
// connections) and only logged. It runs ~12s, ~4s with -short.
//
// A primary that wedges under crashes and traffic (a callback re-entering the primary's lock)
// shows up here as a round whose restart, request, List or Reload times out.
func TestClusterChaosKillUnderTraffic(t *testing.T) {
	budget, reloadEvery := 12*time.Second, 5
	if testing.Short() {
		budget = 4 * time.Second
	}
	// A Manager whose cluster primary is stuck cannot stop its workers: it would wait for their
	// exits until Close's own limit. Closing is bounded tighter here so that such a failure
	// ends the test soon.
	m := newTestManagerClosedWithin(t, Config{SampleInterval: -1}, 15*time.Second)
	port := testutil.FreePort(t)
	a := goApp(t, "chaos", "cluster-http", map[string]string{"PORT": strconv.Itoa(port)})
	a.Instances = 4
	a.ExecMode = "cluster"
	a.MaxRestarts = 1 << 20 // the kills are not the app's fault
	a.KillTimeout = 3000

	// Whatever happens, no process of the app outlives the test.
	var pidsMu sync.Mutex
	pids := map[int]bool{}
	record := func(procs []api.Proc) {
		pidsMu.Lock()
		defer pidsMu.Unlock()
		for _, p := range procs {
			if p.PID > 0 {
				pids[p.PID] = true
			}
		}
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		pidsMu.Lock()
		defer pidsMu.Unlock()
		for pid := range pids {
			unix.Kill(-pid, unix.SIGKILL)
		}
	})

	procs := within(t, 15*time.Second, "Start", func(ctx context.Context) ([]api.Proc, error) {
		return m.Start(ctx, []appspec.App{a}, api.StartOptions{})
	})
	record(procs)
	if len(procs) != 4 {
		t.Fatalf("started %d instances, want 4", len(procs))
	}
	waitListening(t, m)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	fresh := func(what string) {
		t.Helper()
		within(t, 5*time.Second, what, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, httpGetContext(ctx, url)
		})
	}
	fresh("the first request")

	clients := []*chaosClient{newChaosClient("close"), newChaosClient("close"), newChaosClient("close"),
		newChaosClient("keep-alive"), newChaosClient("keep-alive")}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.run(url, stop) })
	}
	stopTraffic := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
		for _, c := range clients {
			c.client.CloseIdleConnections()
		}
	})
	t.Cleanup(stopTraffic)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("victims chosen with seed %d; app on port %d", seed, port)
	kills, reloads := 0, 0
	var slowestList, slowestReload, slowestRestart time.Duration
	deadline := time.Now().Add(budget)
	round := 0
	began := time.Now()
	defer func() {
		t.Logf("%d rounds completed in %v: %d kill -9, %d reloads; slowest restart %v, List %v, Reload %v",
			round, time.Since(began).Round(time.Millisecond), kills, reloads, slowestRestart.Round(time.Millisecond),
			slowestList.Round(time.Millisecond), slowestReload.Round(time.Millisecond))
		for _, c := range clients {
			c.mu.Lock()
			first := c.firstErr
			c.mu.Unlock()
			t.Logf("client %-10s %6d ok %4d failed %6d connections; first failure: %v", c.kind, c.ok.Load(), c.failed.Load(), c.dials.Load(), first)
		}
	}()
	for ; time.Now().Before(deadline); round++ {
		list := within(t, 10*time.Second, fmt.Sprintf("round %d: List", round), m.List)
		record(list)
		var victims []api.Proc
		for _, p := range list {
			if p.Status == "online" && p.PID > 0 {
				victims = append(victims, p)
			}
		}
		if len(victims) == 0 {
			t.Fatalf("round %d: no online instance: %+v", round, list)
		}
		v := victims[rng.IntN(len(victims))]
		if err := unix.Kill(v.PID, unix.SIGKILL); err != nil {
			t.Fatalf("round %d: kill -9 %d: %v", round, v.PID, err)
		}
		kills++

		// The daemon notices the crash and starts a new worker for the instance.
		t0 := time.Now()
		restarted := within(t, 12*time.Second, fmt.Sprintf("round %d: waiting for the restart", round),
			func(ctx context.Context) (bool, error) {
				return m.waitCond(10*time.Second, func() bool {
					in := m.procs[v.PMID]
					return in != nil && in.st.Status == StatusOnline && in.st.PID > 0 && in.st.PID != v.PID &&
						in.st.Restarts > v.Restarts
				}), nil
			})
		if !restarted {
			// The crash never reached the daemon: its cluster primary is stuck. The daemon itself
			// must still answer: List at once, Stop once its context ends.
			t.Errorf("round %d: pm_id %d not restarted within 10s after kill -9 %d", round, v.PMID, v.PID)
			within(t, 5*time.Second, "List with the primary stuck", m.List)
			within(t, 8*time.Second, "Stop with the primary stuck (an error is expected)", func(ctx context.Context) (struct{}, error) {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := m.Stop(ctx, []string{"chaos"})
				t.Logf("Stop with the primary stuck returned: %v", err)
				return struct{}{}, nil
			})
			t.FailNow()
		}
		slowestRestart = max(slowestRestart, time.Since(t0))

		fresh(fmt.Sprintf("round %d: a fresh request", round))
		t0 = time.Now()
		record(within(t, 10*time.Second, fmt.Sprintf("round %d: List after the restart", round), m.List))
		slowestList = max(slowestList, time.Since(t0))

		if round%reloadEvery == reloadEvery-1 {
			t0 = time.Now()
			record(within(t, 10*time.Second, fmt.Sprintf("round %d: Reload", round), func(ctx context.Context) ([]api.Proc, error) {
				procs, _, err := m.Reload(ctx, []string{"chaos"}, api.RestartOptions{})
				return procs, err
			}))
			slowestReload = max(slowestReload, time.Since(t0))
			reloads++
			waitListening(t, m)
		}
	}
	stopTraffic()

	final := within(t, 10*time.Second, "List at the end", m.List)
	restarts := 0
	for _, p := range final {
		restarts += p.Restarts
	}
	// Every kill and every reload is one restart of one instance: none was missed or doubled.
	if want := kills + 4*reloads; restarts != want {
		t.Errorf("restart counters add up to %d, want %d (%d kills, %d reloads of 4)", restarts, want, kills, reloads)
	}
	t0 := time.Now()
	stopped := within(t, 10*time.Second, "Stop at the end", func(ctx context.Context) ([]api.Proc, error) {
		return m.Stop(ctx, []string{"chaos"})
	})
	for _, p := range stopped {
		if p.Status != "stopped" {
			t.Errorf("pm_id %d after Stop: %q", p.PMID, p.Status)
		}
	}
	t.Logf("Stop took %v", time.Since(t0).Round(time.Millisecond))
}

// waitListening waits until every current worker of the Manager has reported listening.
func waitListening(t *testing.T, m *Manager) {
	t.Helper()
	within(t, 10*time.Second, "workers listening", func(ctx context.Context) (struct{}, error) {
		var chans []<-chan struct{}
		ok := m.waitCond(10*time.Second, func() bool {
			chans = chans[:0]
			for _, in := range m.procs {
				r := in.run
				if r == nil || r.worker == nil {
					return false
				}
				chans = append(chans, r.worker.Listening())
			}
			return true
		})
		if !ok {
			return struct{}{}, errors.New("workers not forked")
		}
		for _, ch := range chans {
			select {
			case <-ch:
			case <-ctx.Done():
				return struct{}{}, ctx.Err()
			}
		}
		return struct{}{}, nil
	})
}

// httpGetContext makes one request with Connection: close and reads the whole answer.
func httpGetContext(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
