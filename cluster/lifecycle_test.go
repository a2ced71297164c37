package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

// A Silent worker's output is all there for a reader that only gets to the end after the worker has
// exited and been reaped, and then the reader sees io.EOF. With exec.Cmd's StdoutPipe the package's
// own Wait closed the read end under the reader ("file already closed", lines lost).
func TestSilentOutputIsReadToEOFAfterTheWorkerExits(t *testing.T) {
	const lines = 20000
	p := newPrimary(t, cluster.Settings{Silent: true}, "lines", fmt.Sprintf("LINES=%d", lines))
	w := fork(t, p, cluster.ForkOptions{})
	t.Cleanup(func() { w.Stdout.Close(); w.Stderr.Close() })
	sc := bufio.NewScanner(w.Stdout)
	n := 0
	next := func() bool {
		if !sc.Scan() {
			return false
		}
		if want := fmt.Sprintf("%05d", n); sc.Text() != want {
			t.Fatalf("line %d is %q, want %q", n, sc.Text(), want)
		}
		n++
		return true
	}
	for n < lines-500 && next() {
	}
	// Pause until the worker has exited and been reaped; its last 500 lines (3 KB) wait in the pipe.
	wait(t, w.Done(), "exit of the worker")
	for next() {
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("after %d lines: %v, want io.EOF", n, err)
	}
	if n != lines {
		t.Fatalf("read %d lines, want %d", n, lines)
	}
	if b, err := io.ReadAll(w.Stderr); err != nil || len(b) != 0 {
		t.Fatalf("stderr: %q, %v; want nothing, then EOF", b, err)
	}
}

// Shutdown disconnects the workers and waits for them; a worker that ignores the disconnect is
// killed when ctx ends, and Shutdown says so. Then the listening socket is closed, forks fail, and
// (checked at cleanup) every goroutine of the Primary has ended.
func TestShutdownDisconnectsWaitsThenKills(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "http", "ADDR=127.0.0.1:0")
	addrs := make(chan cluster.Address, 4)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { addrs <- a })
	online := make(chan *cluster.Worker, 4)
	p.OnOnline(func(w *cluster.Worker) { online <- w })
	ws := forkListening(t, p, 2)
	addr := wait(t, addrs, "listening").String()
	get(t, "http://"+addr+"/")
	stubborn := fork(t, p, cluster.ForkOptions{Env: map[string]string{"CLUSTER_TEST_HELPER": "idle"}})
	for i := 0; i < 3; i++ {
		wait(t, online, "online")
	}
	// ctx ends once both cooperative workers have exited (rather than after a guessed time): then
	// only the stubborn one is left to kill.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exits := make(chan *cluster.Worker, 4)
	gone := 0
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
		exits <- w
		if w != stubborn {
			if gone++; gone == 2 {
				cancel()
			}
		}
	})
	err := p.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want an error wrapping context.Canceled (one worker killed)", err)
	}
	// Shutdown waited for the exit handlers: all three have run.
	if len(exits) != 3 {
		t.Fatalf("%d exit events when Shutdown returned, want 3", len(exits))
	}
	for _, w := range ws {
		if w.ExitCode() != 0 || w.ExitSignal() != nil || !w.ExitedAfterDisconnect() {
			t.Errorf("worker %d: code %d, signal %v, exitedAfterDisconnect %v; want a graceful exit 0", w.ID, w.ExitCode(), w.ExitSignal(), w.ExitedAfterDisconnect())
		}
	}
	if stubborn.ExitSignal() != syscall.SIGKILL {
		t.Errorf("the worker that ignored the disconnect: signal %v, want SIGKILL", stubborn.ExitSignal())
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the listening socket is still open after Shutdown")
	}
	if n := len(p.Workers()); n != 0 {
		t.Errorf("%d workers left after Shutdown", n)
	}
	if _, err := p.Fork(nil); !errors.Is(err, cluster.ErrPrimaryClosed) {
		t.Errorf("Fork after Shutdown: %v, want ErrPrimaryClosed", err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// With cooperative workers Shutdown returns nil, well before its deadline.
func TestShutdownOfCooperativeWorkersReturnsNil(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "http", "ADDR=127.0.0.1:0")
	ws := forkListening(t, p, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	for _, w := range ws {
		select {
		case <-w.Done():
		default:
			t.Fatalf("Shutdown returned before worker %d's exit was reported", w.ID)
		}
		if w.ExitCode() != 0 {
			t.Errorf("worker %d exited %d", w.ID, w.ExitCode())
		}
	}
}

// Once a worker is gone, its methods say so with ErrNotConnected.
func TestErrNotConnectedAfterTheWorkerLeft(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "exit", "EXIT_CODE=0")
	w := fork(t, p, cluster.ForkOptions{})
	wait(t, w.Done(), "exit")
	if err := w.Send("hello"); !errors.Is(err, cluster.ErrNotConnected) {
		t.Errorf("Send to an exited worker: %v, want ErrNotConnected", err)
	}
	if err := w.Disconnect(); !errors.Is(err, cluster.ErrNotConnected) {
		t.Errorf("Disconnect of an exited worker: %v, want ErrNotConnected", err)
	}
}

// A drain that a request never lets finish is cut at ServeOptions.ShutdownTimeout: the worker's
// ServeWith returns an error wrapping context.DeadlineExceeded (the helper then exits 3) and the
// stuck request's connection is closed.
func TestServeWithShutdownTimeoutCutsAStuckDrain(t *testing.T) {
	p := newPrimary(t, cluster.Settings{}, "stuck", "ADDR=127.0.0.1:0")
	addrs := make(chan cluster.Address, 1)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { addrs <- a })
	msgs := make(chan string, 1)
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { msgs <- string(m) })
	w := forkListening(t, p, 1)[0]
	url := "http://" + wait(t, addrs, "listening").String() + "/"
	reqErr := make(chan error, 1)
	go func() {
		res, err := (&http.Client{Timeout: 20 * time.Second}).Get(url)
		if err == nil {
			res.Body.Close()
		}
		reqErr <- err
	}()
	if m := wait(t, msgs, "the request in the handler"); m != `"in-handler"` {
		t.Fatalf("message %s", m)
	}
	if err := w.Disconnect(); err != nil {
		t.Fatal(err)
	}
	wait(t, w.Done(), "exit after the cut drain")
	if w.ExitCode() != 3 {
		t.Fatalf("worker exited %d, want 3 (ServeWith returned context.DeadlineExceeded)", w.ExitCode())
	}
	if err := wait(t, reqErr, "the stuck request"); err == nil {
		t.Fatal("the stuck request got a response")
	}
}

// Shutdown of a Primary that never forked, and Close then Shutdown, return at once.
func TestShutdownWithoutWorkers(t *testing.T) {
	testutil.CheckGoroutines(t)
	if err := cluster.NewPrimary(cluster.Settings{}).Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := cluster.NewPrimary(cluster.Settings{Exec: "/nonexistent/worker"})
	if _, err := p.Fork(nil); err == nil {
		t.Fatal("fork of a missing executable succeeded")
	}
	p.Close()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
