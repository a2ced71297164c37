package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// runtimeSettings returns the Settings that run script under Bun or Deno.
func runtimeSettings(t *testing.T, rt, script string) cluster.Settings {
	t.Helper()
	abs, _ := filepath.Abs(script)
	if rt == "bun" {
		return cluster.Settings{Exec: nodetest.Bun(t), Args: []string{abs}}
	}
	// Deno runs a script with `deno run`; -A grants what a Node program may do.
	return cluster.Settings{Exec: nodetest.Deno(t), Args: []string{"run", "-A", abs}}
}

// A Go primary runs unmodified Bun and Deno cluster workers: node:http and node:net servers, messages
// both ways, a crash and a replacement, a worker-initiated disconnect and Worker.Disconnect.
//
// What differs (docs/protocol.md §9): Bun frames internal messages with a leading 0x02 byte and takes a
// connection as the newconn message itself plus the fd (no NODE_HANDLE wrapper); its node:http servers
// do not ask the primary for a socket but bind the port themselves with SO_REUSEPORT (the kernel
// spreads the connections), and a disconnect does not close them. Deno speaks Node's protocol as is.
func TestGoPrimaryBunDenoWorkers(t *testing.T) {
	for _, rt := range []string{"bun", "deno"} {
		t.Run(rt, func(t *testing.T) {
			httpPort, netPort := testutil.FreePort(t), testutil.FreePort(t)
			p := newPrimary(t, runtimeSettings(t, rt, "testdata/runtime_worker.mjs"), "none",
				fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("NET_PORT=%d", netPort))
			msgs := make(chan string, 20)
			p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- fmt.Sprintf("%d %s", w.ID, m) })
			listening := make(chan string, 10)
			p.OnListening(func(w *cluster.Worker, a cluster.Address) { listening <- fmt.Sprint(w.ID, " ", a.Port) })
			disc := make(chan int, 4)
			p.OnDisconnect(func(w *cluster.Worker) { disc <- w.ID })
			exits := make(chan string, 4)
			p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
				exits <- fmt.Sprintf("%d %d %v %v", w.ID, code, sig, w.ExitedAfterDisconnect())
			})
			w1 := fork(t, p, cluster.ForkOptions{})
			w2 := fork(t, p, cluster.ForkOptions{})
			ports := map[string]int{}
			for i := 0; i < 4; i++ { // http and net of two workers
				ports[strings.Fields(wait(t, listening, "listening"))[1]]++
			}
			if ports[fmt.Sprint(httpPort)] != 2 || ports[fmt.Sprint(netPort)] != 2 {
				t.Fatalf("listening events by port: %v (http %d, net %d)", ports, httpPort, netPort)
			}
			for i := 0; i < 2; i++ {
				if m := wait(t, msgs, "hello"); !strings.Contains(m, `"runtime":"`+rt+`"`) {
					t.Fatalf("hello from a worker: %s", m)
				}
			}
			// http: every request is served by one of the two (Bun: the kernel picks, by SO_REUSEPORT).
			served := map[string]int{}
			for i := 0; i < 20; i++ {
				served[strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)))[0]]++
			}
			if served["1"]+served["2"] != 20 {
				t.Fatalf("http served by %v", served)
			}
			// net: round-robin through the primary, in turn.
			var ids []string
			for i := 0; i < 4; i++ {
				ids = append(ids, netGet(t, netPort))
			}
			if ids[0] == ids[1] || ids[0] != ids[2] || ids[1] != ids[3] {
				t.Fatalf("net connections went to %v, want round-robin", ids)
			}
			// Messages both ways.
			w1.Send(map[string]any{"n": 1})
			if m := wait(t, msgs, "echo"); m != fmt.Sprintf(`%d {"echo":{"n":1},"id":%d}`, w1.ID, w1.ID) {
				t.Fatalf("echo: %s", m)
			}
			w1.Send("shutdown") // what the daemon sends with --shutdown-with-message
			if m := wait(t, msgs, "echo"); m != fmt.Sprintf(`%d {"echo":"shutdown","id":%d}`, w1.ID, w1.ID) {
				t.Fatalf("echo of shutdown: %s", m)
			}
			// A crash: the survivor serves everything, and a replacement joins the same sockets.
			crash(t, httpPort, netPort, w2)
			if e := wait(t, exits, "exit"); e != fmt.Sprintf("%d 3 <nil> false", w2.ID) {
				t.Fatalf("crashed worker: exit %q", e)
			}
			wait(t, disc, "disconnect of the crashed worker")
			for i := 0; i < 4; i++ {
				if id := netGet(t, netPort); id != fmt.Sprint(w1.ID) {
					t.Fatalf("net served by %s after worker %d crashed", id, w2.ID)
				}
				if id := strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)))[0]; id != fmt.Sprint(w1.ID) {
					t.Fatalf("http served by %s after worker %d crashed", id, w2.ID)
				}
			}
			w3 := fork(t, p, cluster.ForkOptions{})
			wait(t, listening, "listening of the replacement")
			wait(t, listening, "listening of the replacement")
			wait(t, msgs, "hello of the replacement")
			ids = ids[:0]
			for i := 0; i < 2; i++ {
				ids = append(ids, netGet(t, netPort))
			}
			if ids[0] == ids[1] {
				t.Fatalf("net after the replacement joined: %v", ids)
			}
			// A worker-initiated disconnect (cluster.worker.disconnect()).
			w3.Send("please-disconnect")
			wait(t, msgs, "echo")
			if id := wait(t, disc, "disconnect"); id != w3.ID {
				t.Fatalf("disconnect of worker %d, want %d", id, w3.ID)
			}
			if rt == "bun" {
				// Bun closes the servers it registered with the cluster, not its node:http ones: the
				// process lives on until it is told to stop, as corral's daemon does after a disconnect.
				w3.Kill(syscall.SIGTERM)
			}
			if e := wait(t, exits, "exit"); !strings.HasPrefix(e, fmt.Sprint(w3.ID)) || !strings.HasSuffix(e, " true") {
				t.Fatalf("after cluster.worker.disconnect(): exit %q", e)
			}
			// The primary disconnects the last one.
			w1.Disconnect()
			wait(t, disc, "disconnect")
			if rt == "bun" {
				w1.Kill(syscall.SIGTERM)
			}
			if e := wait(t, exits, "exit"); !strings.HasPrefix(e, fmt.Sprint(w1.ID)) || !strings.HasSuffix(e, " true") {
				t.Fatalf("after Disconnect: exit %q", e)
			}
		})
	}
}

// crash asks w's http server for /crash (the worker exits 3 before answering).
func crash(t *testing.T, httpPort, netPort int, w *cluster.Worker) {
	t.Helper()
	// Bun's http servers are chosen by the kernel: ask until the request lands on w.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /crash?id=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", w.ID)
		io.Copy(io.Discard, c) // EOF or a reset once the worker is gone; another worker's answer otherwise
		c.Close()
		select {
		case <-w.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("worker %d did not crash", w.ID)
}

// netGet reads what the net server at port says and returns the worker id in it.
func netGet(t *testing.T, port int) string {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(b), "net ") {
		t.Fatalf("net server said %q, %v", b, err)
	}
	return strings.TrimPrefix(string(b), "net ")
}

// Deno workers replaced one by one under Connection: close load (Worker.Disconnect, then the exit):
// no request fails.
func TestDenoRollingReplaceLosesNothing(t *testing.T) {
	port := testutil.FreePort(t)
	p := newPrimary(t, runtimeSettings(t, "deno", "testdata/runtime_worker.mjs"), "none",
		fmt.Sprintf("HTTP_PORT=%d", port), fmt.Sprintf("NET_PORT=%d", testutil.FreePort(t)))
	ws := forkListening(t, p, 2)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	load := startCloseLoad(url, 4)
	for round := 0; round < 3; round++ {
		for i, old := range ws {
			nw := forkListening(t, p, 1)[0]
			if err := old.Disconnect(); err != nil {
				t.Fatal(err)
			}
			wait(t, old.Done(), "old worker exit")
			ws[i] = nw
		}
	}
	served := load.finish(t, "during rolling replacement")
	t.Logf("%d requests, 0 failed, over 6 worker replacements", served)
}
