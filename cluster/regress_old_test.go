package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand"
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
)

func TestOldWorkerThatStopsReadingDoesNotWedge(t *testing.T) {
	port := freePort(t)
	exe, _ := os.Executable()
	p := newPrimary(t, cluster.Settings{Exec: "sh", Args: []string{"-c", `if [ -n "$RAW" ]; then exec env -u NODE_UNIQUE_ID -u NODE_CHANNEL_FD RAW_CHANNEL_FD=3 RAW_MODE=closeread "$0" -test.run='^$'; else exec "$0" -test.run='^$'; fi`, exe}},
		"http", fmt.Sprintf("ADDR=127.0.0.1:%d", port), fmt.Sprintf("PORT=%d", port))
	raw, err := p.ForkWith(cluster.ForkOptions{Env: map[string]string{"RAW": "1", "CLUSTER_TEST_HELPER": "raw"}})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, raw.Listening(), "raw listening")
	good := forkListening(t, p, 1)[0]
	for i := 0; i < 3; i++ {
		body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		if id := strings.Fields(body)[0]; id != fmt.Sprint(good.ID) {
			t.Fatalf("served by %q", body)
		}
	}
}

func TestOldChaos(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	p := newPrimary(t, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	ws := forkListening(t, p, 4)
	stop := make(chan struct{})
	var okN, failN atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		keep := i%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keep}}
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := c.Post(url, "text/plain", strings.NewReader("x"))
				if err != nil {
					failN.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				okN.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for round := 0; round < 100; round++ {
		i := rand.Intn(len(ws))
		ws[i].Process.Signal(syscall.SIGKILL)
		select {
		case <-ws[i].Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the killed worker's exit was never reported: primary wedged", round)
		}
		ws[i] = forkListening(t, p, 1)[0]
		res, err := fresh.Get(url)
		if err != nil {
			t.Fatalf("round %d: fresh request: %v (ok %d, failed %d)", round, err, okN.Load(), failN.Load())
		}
		res.Body.Close()
	}
	t.Logf("ok %d failed %d", okN.Load(), failN.Load())
}

func TestOldSilentReader(t *testing.T) {
	p := newPrimary(t, cluster.Settings{Silent: true}, "lines", "LINES=20000")
	w, err := p.Fork(nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(w.Stdout)
	n := 0
	for n < 19500 && sc.Scan() {
		n++
	}
	wait(t, w.Done(), "exit")
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil || n != 20000 {
		t.Fatalf("read %d lines, err %v", n, err)
	}
	_ = errors.New
	_ = net.Dial
}
