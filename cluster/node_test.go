package cluster_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// A Go primary runs unmodified Node workers, on every Node line.
func TestGoPrimaryNodeWorkers(t *testing.T) {
	lines := nodetest.Lines(t)
	majors := make([]string, 0, len(lines))
	for m := range lines {
		majors = append(majors, m)
	}
	sort.Strings(majors)
	script, _ := filepath.Abs("testdata/node_worker.js")
	for _, major := range majors {
		t.Run("node"+major, func(t *testing.T) {
			httpPort, netPort, udpPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
			p := newPrimary(t, cluster.Settings{Exec: lines[major], Args: []string{script}}, "none",
				fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("NET_PORT=%d", netPort), fmt.Sprintf("UDP_PORT=%d", udpPort))
			msgs := make(chan string, 20)
			p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- fmt.Sprintf("%d %s", w.ID, m) })
			listening := make(chan cluster.Address, 10)
			p.OnListening(func(w *cluster.Worker, a cluster.Address) { listening <- a })
			exits := make(chan string, 2)
			p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
				exits <- fmt.Sprintf("%d %d %v %v", w.ID, code, sig, w.ExitedAfterDisconnect())
			})
			w1 := fork(t, p, cluster.ForkOptions{})
			w2 := fork(t, p, cluster.ForkOptions{})
			seen := map[string]int{}
			for i := 0; i < 6; i++ { // http, net and udp of two workers
				seen[wait(t, listening, "listening").AddressType.String()]++
			}
			if seen["4"] != 4 || seen["udp4"] != 2 {
				t.Fatalf("listening events by type: %v", seen)
			}
			for i := 0; i < 2; i++ {
				if m := wait(t, msgs, "hello"); !strings.Contains(m, `"version":"v`+major+`.`) {
					t.Fatalf("hello from a worker: %s", m)
				}
			}
			// http: round-robin between the two workers.
			var ids []string
			for i := 0; i < 4; i++ {
				ids = append(ids, strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)))[0])
			}
			if ids[0] == ids[1] && ids[1] == ids[2] && ids[2] == ids[3] {
				t.Fatalf("http connections all went to worker %v, want round-robin", ids)
			}
			// net: round-robin too.
			for i := 0; i < 2; i++ {
				c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", netPort))
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				c.Close()
				if !strings.HasPrefix(string(b), "net ") {
					t.Fatalf("net server said %q", b)
				}
			}
			// dgram: the shared socket.
			uc, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			uc.SetDeadline(time.Now().Add(10 * time.Second))
			uc.Write([]byte("ping"))
			buf := make([]byte, 100)
			if n, err := uc.Read(buf); err != nil || !strings.HasSuffix(string(buf[:n]), " ping") {
				t.Fatalf("udp reply %q, %v", buf[:n], err)
			}
			// Messages both ways, then the worker disconnects itself.
			w1.Send(map[string]any{"n": 1})
			if m := wait(t, msgs, "echo"); m != fmt.Sprintf(`%d {"echo":{"n":1},"id":%d}`, w1.ID, w1.ID) {
				t.Fatalf("echo: %s", m)
			}
			w2.Send("please-disconnect")
			wait(t, msgs, "echo")
			if e := wait(t, exits, "exit"); e != fmt.Sprintf("%d 0 <nil> true", w2.ID) {
				t.Fatalf("after cluster.worker.disconnect(): exit %q", e)
			}
			// The survivor serves everything; then the primary disconnects it.
			for i := 0; i < 2; i++ {
				if id := strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)))[0]; id != fmt.Sprint(w1.ID) {
					t.Fatalf("served by %s after worker %d left", id, w2.ID)
				}
			}
			w1.Disconnect()
			if e := wait(t, exits, "exit"); e != fmt.Sprintf("%d 0 <nil> true", w1.ID) {
				t.Fatalf("after Disconnect: exit %q", e)
			}
		})
	}
}

// Node's own primary runs Go workers that serve HTTP.
func TestNodePrimaryGoWorkers(t *testing.T) {
	node := nodetest.Node(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	cmd := exec.Command(node, "testdata/node_primary.js")
	cmd.Env = append(os.Environ(), "GO_WORKER_BIN="+exe, fmt.Sprintf("PORT=%d", port))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 20)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := wait(t, lines, "READY"); l != fmt.Sprintf("READY %d", port) {
		t.Fatalf("node primary said %q", l)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		seen[strings.Fields(get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)))[0]] = true
	}
	if !seen["1"] || !seen["2"] {
		t.Fatalf("Go workers under a Node primary: served by %v, want both 1 and 2", seen)
	}
	stdin.Write([]byte("disconnect\n"))
	var got []string
	for len(got) < 3 {
		got = append(got, wait(t, lines, "disconnect and exits"))
	}
	sort.Strings(got)
	want := []string{"DISCONNECTED", "EXIT 1 0 null true", "EXIT 2 0 null true"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("after cluster.disconnect(): %q, want %q", got, want)
	}
}
