package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultDrainIdle is the ServeOptions.DrainIdle used when it is zero.
const DefaultDrainIdle = time.Second

// DrainIdle is the idle grace of Serve.
//
// Deprecated: set ServeOptions.DrainIdle and call ServeWith; the default is DefaultDrainIdle.
const DrainIdle = DefaultDrainIdle

// ServeOptions tune the drain of ServeWith.
type ServeOptions struct {
	// DrainIdle is how long an idle keep-alive connection stays open once a drain has begun, so that
	// a request already on its way is answered (with Connection: close) instead of meeting a closed
	// socket. Zero means DefaultDrainIdle; a negative value closes idle connections at once.
	// Connections with a request in progress are waited for regardless (see ShutdownTimeout).
	DrainIdle time.Duration
	// ShutdownTimeout bounds the whole drain, from the stop request until the last in-flight request
	// has finished. When it passes, the connections still open are closed (http.Server.Close) and
	// ServeWith returns an error wrapping context.DeadlineExceeded. Zero means no bound: requests in
	// progress are always waited for.
	ShutdownTimeout time.Duration
}

// ServeHTTP listens on a cluster listener (see Listen) and serves srv on it until the parent asks this
// process to stop, then drains gracefully and returns nil; see Serve. If the parent asked this worker
// to disconnect before it could listen (Listen's ErrDisconnecting), it returns nil at once.
func ServeHTTP(srv *http.Server, network, address string) error {
	ln, err := Listen(network, address)
	if errors.Is(err, ErrDisconnecting) {
		return nil // told to leave before it listened: nothing to drain
	}
	if err != nil {
		return err
	}
	return Serve(srv, ln)
}

// Serve is ServeWith with the default options: it drains without a time bound.
func Serve(srv *http.Server, ln net.Listener) error { return ServeWith(srv, ln, ServeOptions{}) }

// ServeWith serves srv on ln until one of: the message "shutdown" from the parent (PM2's convention),
// the primary's disconnect request, SIGINT or SIGTERM. It then drains without failing a request: it
// closes ln (the primary hands this worker no more connections), answers every further request with
// "Connection: close", waits for in-flight requests, gives idle keep-alive connections
// opts.DrainIdle to send a last request, shuts srv down and returns nil. The caller then exits 0.
//
// The primary's disconnect closes ln itself; ServeWith tells that from a failure by the state of the
// process (a stop was requested), not by which event it noticed first. If srv stops for another
// reason its error is returned. If opts.ShutdownTimeout passes during the drain, the remaining
// connections are closed and the error wraps context.DeadlineExceeded.
//
// ServeWith takes over srv.Handler and srv.ConnState (wrapping, not replacing, what they held).
func ServeWith(srv *http.Server, ln net.Listener, opts ServeOptions) error {
	idle := opts.DrainIdle
	if idle == 0 {
		idle = DefaultDrainIdle
	}
	var draining atomic.Bool
	var mu sync.Mutex
	conns := make(map[net.Conn]http.ConnState)
	drained := make(chan struct{}, 1)

	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&drainWriter{ResponseWriter: w, draining: &draining}, r)
	})
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		switch st {
		case http.StateClosed, http.StateHijacked:
			delete(conns, c)
		default:
			conns[c] = st
		}
		n := len(conns)
		mu.Unlock()
		if n == 0 && draining.Load() {
			select {
			case drained <- struct{}{}:
			default:
			}
		}
		if prev != nil {
			prev(c, st)
		}
	}

	stop := make(chan struct{})
	var stopOnce sync.Once
	trigger := func() { stopOnce.Do(func() { close(stop) }) }
	self.onStop(trigger)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		select {
		case <-sigc:
			trigger()
		case <-stop:
		}
	}()
	stopAsked := func() bool {
		select {
		case <-stop:
			return true
		default:
			return self.stopRequested()
		}
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	served := false
	select {
	case err := <-errc:
		served = true
		// A listener closed by the primary's disconnect is a stop, not a failure: decide by state.
		if !errors.Is(err, http.ErrServerClosed) && !stopAsked() {
			trigger()
			return err
		}
	case <-stop:
	}

	draining.Store(true)
	ln.Close()
	// Wait for srv.Serve to see the closed listener: a connection it took from Accept just before
	// (the primary has already closed its copy) is then registered (StateNew) and counted below. An
	// http.Server closes without an answer a connection whose first request it reads after Shutdown
	// began, so Shutdown must not come before that request has been served.
	if !served {
		<-errc
	}
	select { // a "drained" sent before the last connections were registered is stale
	case <-drained:
	default:
	}
	ctx := context.Background()
	if opts.ShutdownTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.ShutdownTimeout)
		defer cancel()
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n > 0 && idle > 0 {
		t := time.NewTimer(idle)
		select {
		case <-drained:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	switch err := srv.Shutdown(ctx); {
	case errors.Is(err, context.DeadlineExceeded):
		srv.Close()
		return fmt.Errorf("cluster: serve: drain cut after %v: %w", opts.ShutdownTimeout, err)
	case err != nil && !errors.Is(err, net.ErrClosed): // ln closed twice (by us, then Shutdown) is fine
		return fmt.Errorf("cluster: serve: %w", err)
	}
	return nil
}

// drainWriter adds "Connection: close" to responses written once a drain has begun.
type drainWriter struct {
	http.ResponseWriter
	draining    *atomic.Bool
	wroteHeader bool
}

func (w *drainWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		if w.draining.Load() {
			w.ResponseWriter.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *drainWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker.
func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
