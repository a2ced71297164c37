package cluster_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// The balancer's counters follow real Node workers: hand-offs, a refusal by a worker at its
// server.maxConnections (the connection goes to the other worker), a hand-off re-routed when its
// worker dies before taking it, and the connections waiting while no worker is free.
func TestBalancerCounters(t *testing.T) {
	node := nodetest.Node(t)
	script, _ := filepath.Abs("testdata/balancer_worker.js")
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{Exec: node, Args: []string{script}, SchedulingPolicy: cluster.PolicyRoundRobin}, "none",
		fmt.Sprintf("PORT=%d", port), "MAXCONN_WORKER=1")
	// One after the other, so that A (worker 1, with maxConnections) is first on the free list.
	a := forkListening(t, p, 1)[0]
	b := forkListening(t, p, 1)[0]
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// A's only connection is held open: the next one A is offered, it refuses, and B serves it.
	hold, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	fmt.Fprintf(hold, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	waitStats(t, a, "A took the held connection", func(s cluster.BalancerStats) bool { return s.HandedOff == 1 && s.InFlight == 0 })
	for i := 0; i < 4; i++ {
		if id := get(t, url); id != fmt.Sprint(b.ID) {
			t.Fatalf("request %d served by worker %s, want %d (A is at its maxConnections)", i, id, b.ID)
		}
	}
	if s := a.Balancer(); s.Refused == 0 || s.InFlight != 0 {
		t.Fatalf("A's counters after refusing: %+v", s)
	}
	// B's worker answers the request before the primary has read its accepted reply: wait for it.
	waitStats(t, b, "B's four hand-offs", func(s cluster.BalancerStats) bool { return s.HandedOff >= 4 && s.InFlight == 0 })
	if s := b.Balancer(); s.Refused != 0 || s.Rerouted != 0 {
		t.Fatalf("B's counters: %+v", s)
	}

	// B stopped: it is offered a connection it cannot take; killed, that connection goes to A.
	// First free A: close the held connection.
	hold.Close()
	b.Process.Signal(syscall.SIGSTOP)
	before := b.Balancer().HandedOff
	done := make(chan string, 4)
	for i := 0; i < 2; i++ {
		go func() { done <- tryGet(url) }()
	}
	waitStats(t, b, "a hand-off to the stopped worker", func(s cluster.BalancerStats) bool { return s.HandedOff > before && s.InFlight == 1 })
	b.Kill(syscall.SIGKILL)
	for i := 0; i < 2; i++ {
		if got := wait(t, done, "request"); got != fmt.Sprint(a.ID) {
			t.Fatalf("request after B died: %q, want served by %d", got, a.ID)
		}
	}
	if s := b.Balancer(); s.Rerouted == 0 || s.InFlight != 0 {
		t.Fatalf("dead B's counters: %+v", s)
	}

	// No worker free: connections wait in the backlog and are counted.
	a.Process.Signal(syscall.SIGSTOP)
	defer a.Process.Signal(syscall.SIGCONT)
	for i := 0; i < 3; i++ {
		go tryGet(url)
	}
	if !testutil.Eventually(10*time.Second, func() bool { return p.Waiting() >= 2 }) {
		t.Fatalf("waiting connections: %d, want at least 2 (one is in flight to the stopped worker)", p.Waiting())
	}
}

func waitStats(t *testing.T, w *cluster.Worker, what string, ok func(cluster.BalancerStats) bool) {
	t.Helper()
	if !testutil.Eventually(10*time.Second, func() bool { return ok(w.Balancer()) }) {
		t.Fatalf("%s: worker %d's counters %+v", what, w.ID, w.Balancer())
	}
}

// tryGet does one Connection: close request and returns the body, or the error.
func tryGet(url string) string {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.TrimSpace(string(b))
}
