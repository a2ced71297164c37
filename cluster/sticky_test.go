package cluster_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

// getFrom does one Connection: close request from the local address ip and returns the serving
// worker's id.
func getFrom(t *testing.T, ip, url string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ip, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.Fields(string(b))[0]
}

// With Settings.Sticky every client IP keeps its worker; a worker that dies loses only its own
// clients, and its replacement (same slot) gets them back.
func TestStickyByClientIP(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{SchedulingPolicy: cluster.PolicyRoundRobin, Sticky: true}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	ws := make([]*cluster.Worker, 4)
	for i := range ws {
		ws[i] = fork(t, p, cluster.ForkOptions{Slot: i + 1})
	}
	for _, w := range ws {
		wait(t, w.Listening(), "listening")
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	ips := make([]string, 16)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.0.%d", 10+i)
	}
	owner := func() map[string]string {
		m := map[string]string{}
		for _, ip := range ips {
			for i := 0; i < 3; i++ {
				id := getFrom(t, ip, url)
				if prev, ok := m[ip]; ok && prev != id {
					t.Fatalf("client %s served by worker %s, then %s", ip, prev, id)
				}
				m[ip] = id
			}
		}
		return m
	}
	before := owner()
	used := map[string]bool{}
	for _, id := range before {
		used[id] = true
	}
	if len(used) < 3 {
		t.Fatalf("16 clients spread over %d workers: %v", len(used), before)
	}
	// The worker of the first client dies.
	var dead *cluster.Worker
	for _, w := range ws {
		if fmt.Sprint(w.ID) == before[ips[0]] {
			dead = w
		}
	}
	dead.Kill(syscall.SIGKILL)
	wait(t, dead.Done(), "exit")
	after := owner()
	for _, ip := range ips {
		switch {
		case before[ip] == fmt.Sprint(dead.ID) && after[ip] == before[ip]:
			t.Fatalf("client %s still served by the dead worker", ip)
		case before[ip] != fmt.Sprint(dead.ID) && after[ip] != before[ip]:
			t.Fatalf("client %s moved from worker %s to %s when worker %d died", ip, before[ip], after[ip], dead.ID)
		}
	}
	// Its replacement, in the same slot, gets its clients back.
	var slot int
	for i, w := range ws {
		if w == dead {
			slot = i + 1
		}
	}
	nw := fork(t, p, cluster.ForkOptions{Slot: slot})
	wait(t, nw.Listening(), "listening")
	again := owner()
	for _, ip := range ips {
		want := before[ip]
		if want == fmt.Sprint(dead.ID) {
			want = fmt.Sprint(nw.ID)
		}
		if again[ip] != want {
			t.Fatalf("client %s served by %s after the replacement joined, want %s", ip, again[ip], want)
		}
	}
	if s := nw.Balancer(); s.HandedOff == 0 {
		t.Fatalf("replacement's counters: %+v", s)
	}
}
