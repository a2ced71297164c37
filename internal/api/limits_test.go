package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// serveAt is serve that also returns the socket path.
func serveAt(t *testing.T, b api.Backend) (*api.Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, b, "test") }()
	c := api.NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, sock
}

// stall connects and sends a request's headers and part of its body, then nothing more.
func stall(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "POST /v1/list HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tar"); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedBy waits until the server closes c (a read returns an error other than the client's own
// deadline) and reports how long that took, or false after limit.
func closedBy(c net.Conn, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // an error response (408/400) may come before the close
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return time.Since(start), false
		}
		return time.Since(start), true
	}
}

// A client that sends headers and part of a body, or sends nothing, or stays idle after a
// request, is cut off by the server's timeouts: it does not hold a daemon descriptor for good.
func TestStalledClientsAreCutOff(t *testing.T) {
	restore := api.SetLimitsForTest(500*time.Millisecond, time.Second, 64)
	defer restore()
	_, sock := serveAt(t, &apitest.Fake{})

	const n = 40
	var wg sync.WaitGroup
	open := make(chan string, n+2)
	check := func(what string, c net.Conn) {
		defer wg.Done()
		defer c.Close()
		if d, ok := closedBy(c, 20*time.Second); !ok {
			open <- fmt.Sprintf("%s still open after %s", what, d.Round(time.Millisecond))
		}
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go check("half-sent body", stall(t, sock))
	}
	silent, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go check("silent client", silent)
	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(idle, "POST /v1/ping HTTP/1.1\r\nHost: corral\r\nContent-Length: 2\r\n\r\n{}")
	wg.Add(1)
	go check("idle keep-alive client", idle)
	wg.Wait()
	close(open)
	for s := range open {
		t.Error(s)
	}
}

// gated is a backend whose Shutdown lasts until released, and whose log stream is fed by the test.
type gated struct {
	*apitest.Fake
	release chan struct{}
	err     chan error // what Shutdown saw: nil, or its context's error
}

func (g *gated) Shutdown(ctx context.Context) error {
	select {
	case <-g.release:
		g.err <- nil
		return nil
	case <-ctx.Done():
		g.err <- ctx.Err()
		return ctx.Err()
	}
}

// A request that runs longer than the read timeout (a reload, a shutdown) and a log stream that
// lasts are not cut off: the read deadline is lifted once the body is read.
func TestLongRequestsOutliveReadTimeout(t *testing.T) {
	restore := api.SetLimitsForTest(200*time.Millisecond, 200*time.Millisecond, 64)
	defer restore()
	lines := make(chan api.LogLine)
	g := &gated{Fake: &apitest.Fake{LogStream: lines}, release: make(chan struct{}), err: make(chan error, 1)}
	c, _ := serveAt(t, g)
	ctx := context.Background()

	if _, err := c.Start(ctx, []appspec.App{{Name: "x", Script: "/x.js"}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	stream, err := c.Logs(ctx, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- c.Shutdown(ctx) }()

	time.Sleep(time.Second) // five read and idle timeouts
	select {
	case err := <-g.err:
		t.Fatalf("Shutdown ended before it was released: %v", err)
	default:
	}
	close(g.release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case lines <- api.LogLine{Text: "still streaming"}:
	case <-time.After(10 * time.Second):
		t.Fatal("the log stream's handler is gone")
	}
	select {
	case l, ok := <-stream:
		if !ok || l.Text != "still streaming" {
			t.Fatalf("stream gave %+v, %v", l, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no line on the log stream")
	}
}

// At most the limit's number of connections are served at once. A new connection pushes out the
// oldest idle one (a stalled client); when every slot is busy (handlers running, such as log
// streams), it waits until one frees.
func TestConnectionLimit(t *testing.T) {
	restore := api.SetLimitsForTest(30*time.Second, 30*time.Second, 2)
	defer restore()
	lines := make(chan api.LogLine)
	f := &apitest.Fake{LogStream: lines}
	c, sock := serveAt(t, f)
	ctx := context.Background()

	// Two stalled clients take both slots (first thing: no other connection may still be busy);
	// a ping pushes out the older one.
	a := stall(t, sock)
	defer a.Close()
	b := stall(t, sock)
	defer b.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := c.Ping(pctx)
	cancel()
	if err != nil {
		t.Fatalf("ping with both slots held by stalled clients: %v", err)
	}
	c.Close()
	if _, closed := closedBy(a, 10*time.Second); !closed {
		t.Error("the oldest stalled client was not pushed out")
	}
	if _, closed := closedBy(b, 300*time.Millisecond); closed {
		t.Error("the newer stalled client was pushed out too")
	}
	b.Close()

	// Two log streams keep both slots busy: a ping waits until one ends.
	if _, err := c.Start(ctx, []appspec.App{{Name: "x", Script: "/x.js"}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sctx, stop := context.WithCancel(ctx)
	s1, err := api.NewClient(sock).Logs(sctx, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(sock).Logs(ctx, []string{"all"}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = c.Ping(pctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping with both slots streaming: %v, want a timeout", err)
	}
	c.Close()
	stop()
	for range s1 { // drained and closed once the stream's connection is gone
	}
	pctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx); err != nil {
		t.Fatalf("ping once a stream ended: %v", err)
	}
}

// A client whose socket is held by another user's listener sends nothing to it.
func TestClientRefusesAnotherUsersListener(t *testing.T) {
	f := &apitest.Fake{}
	c, sock := serveAt(t, f)
	restore := api.TrustNoPeerForTest()
	defer restore()
	_, err := c.Start(context.Background(), []appspec.App{{Name: "x", Script: "/x.js", Env: map[string]string{"SECRET": "s3cret"}}}, api.StartOptions{})
	var ue *api.UntrustedPeerError
	if !errors.As(err, &ue) || ue.Socket != sock || ue.UID != os.Geteuid() {
		t.Fatalf("Start: %v, want an UntrustedPeerError", err)
	}
	if api.IsUnreachable(err) {
		t.Error("an untrusted listener taken for no daemon at all (the CLI would start one)")
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("the listener received %v", calls)
	}
}
