package cluster

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DrainIdle is how long Serve keeps an idle keep-alive connection open after a drain has begun, so
// that a request already on its way is answered (with Connection: close) instead of meeting a closed
// socket. Connections with a request in progress are always waited for.
const DrainIdle = time.Second

// ServeHTTP listens on a cluster listener (see Listen) and serves srv on it until the parent asks this
// process to stop, then drains gracefully and returns nil; see Serve.
func ServeHTTP(srv *http.Server, network, address string) error {
	ln, err := Listen(network, address)
	if errors.Is(err, errDisconnecting) {
		return nil // told to leave before it listened: nothing to drain
	}
	if err != nil {
		return err
	}
	return Serve(srv, ln)
}

// Serve serves srv on ln until one of: the message "shutdown" from the parent (PM2's convention), the
// primary's disconnect request, SIGINT or SIGTERM. It then drains without failing a request: it closes
// ln (the primary hands this worker no more connections), answers every further request with
// "Connection: close", waits for in-flight requests, gives idle keep-alive connections DrainIdle to send
// a last request, shuts srv down and returns nil. The caller then exits 0.
//
// Serve takes over srv.Handler and srv.ConnState (wrapping, not replacing, what they held). If srv
// stops for another reason its error is returned.
func Serve(srv *http.Server, ln net.Listener) error {
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

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if !draining.Load() && !errors.Is(err, http.ErrServerClosed) {
			select {
			case <-stop: // the primary closed our listener for a disconnect: drain below
			default:
				trigger()
				return err
			}
		}
	case <-stop:
	}

	draining.Store(true)
	ln.Close()
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n > 0 {
		t := time.NewTimer(DrainIdle)
		select {
		case <-drained:
		case <-t.C:
		}
		t.Stop()
	}
	return srv.Shutdown(context.Background())
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
