package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// maxRequestBytes bounds the size of a request body.
const maxRequestBytes = 32 << 20

// shutdownGrace bounds how long Serve waits for in-flight requests once its
// context is done.
const shutdownGrace = 5 * time.Second

type peerKey struct{}

// connKey is the context key of the connection's *limitConn.
type connKey struct{}

// peer is what ConnContext learns about a connection's peer.
type peer struct {
	uid int
	err error
}

// Serve serves b on ln (normally the Unix socket $CORRAL_HOME/corral.sock)
// until ctx is done, then shuts the HTTP server down and returns nil. Each
// Backend method is POST /v1/<method> with a JSON body; errors are JSON
// ErrorBody values. Only peers running as the daemon's uid or as root are
// served (SO_PEERCRED); everyone else gets 403. version is the daemon's
// version, which ping reports (the CLI warns when it differs from its own).
func Serve(ctx context.Context, ln net.Listener, b Backend, version string) error {
	srv := &http.Server{
		Handler:           NewHandler(b, version),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout, // lifted by the guard once the body is read
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if lc, ok := c.(*limitConn); ok {
				ctx = context.WithValue(ctx, connKey{}, lc)
				c = lc.Conn
			}
			uid, err := peerUID(c)
			return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if lc, ok := c.(*limitConn); ok && st == http.StateIdle {
				lc.setBusy(false) // between requests: may make room for a new connection
			}
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(newLimitListener(ln, connLimit())) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve control socket: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve control socket: %w", err)
	}
	return nil
}

// NewHandler returns the HTTP handler that serves b, including the peer
// credential check. Connections must come through a server whose ConnContext
// records the peer (as Serve does); requests without a recorded, allowed peer
// are refused.
func NewHandler(b Backend, version string) http.Handler {
	h := &handler{b: b, uid: os.Getuid(), version: version}
	mux := http.NewServeMux()
	route := func(method string, f func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc("POST /v1/"+method, func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				writeError(w, err)
			}
		})
	}
	route(MethodStart, h.start)
	route(MethodStop, h.targets(b.Stop))
	route(MethodDelete, h.targets(b.Delete))
	route(MethodReset, h.targets(b.Reset))
	route(MethodRestart, h.restart(b.Restart))
	route(MethodReload, h.restart(b.Reload))
	route(MethodScale, h.scale)
	route(MethodList, h.list)
	route(MethodSignal, h.signal)
	route(MethodFlush, h.flush)
	route(MethodReloadLogs, h.reloadLogs)
	route(MethodLogs, h.logs)
	route(MethodApps, h.apps)
	route(MethodShutdown, h.shutdown)
	route(MethodPing, h.ping)
	route(MethodEvents, h.events)
	route(MethodHistory, h.history)
	route(MethodWatch, h.watch)
	route(MethodWeb, h.web)
	route(MethodSend, h.send)
	route(MethodUnwatch, h.unwatch)
	route(MethodJList, h.jlist)
	route(MethodListText, h.listText)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no such method: %s %s", r.Method, r.URL.Path), Code: CodeNotFound})
	})
	return h.guard(mux)
}

type handler struct {
	b       Backend
	uid     int          // the daemon's uid: the socket owner
	version string       // the daemon's version, for ping
	fast    atomic.Int64 // requests of the CLI's early fast path (FastHeader), for ping
}

// guard refuses peers that are neither the daemon's user nor root.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		switch {
		case !ok:
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: "permission denied: unknown peer", Code: CodeForbidden})
		case p.err != nil:
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: "permission denied: " + p.err.Error(), Code: CodeForbidden})
		case p.uid != h.uid && p.uid != 0:
			writeJSON(w, http.StatusForbidden, ErrorBody{Error: ErrForbidden.Error(), Code: CodeForbidden})
		default:
			// The whole body is read here, under the server's ReadTimeout (a client that sends part
			// of it and stalls is cut off). Once a body is read to its end, net/http lifts the read
			// deadline (its background read then watches for the client leaving), so the handler
			// may run for minutes (reload, shutdown) or stream (logs) whatever it reads itself.
			if r.Body != nil {
				body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
				if err != nil {
					writeError(w, badRequest{fmt.Errorf("read %s request: %w", r.URL.Path, err)})
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			if lc, ok := r.Context().Value(connKey{}).(*limitConn); ok {
				lc.setBusy(true) // a whole request: not pushed out for a new connection
			}
			next.ServeHTTP(w, r)
		}
	})
}

// badRequest marks an error as the client's fault.
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }
func (e badRequest) Unwrap() error { return e.err }

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxRequestBytes))
	if err := dec.Decode(v); err != nil {
		return badRequest{fmt.Errorf("decode %s request: %w", r.URL.Path, err)}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var br badRequest
	if errors.As(err, &br) {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: err.Error(), Code: CodeBadRequest})
		return
	}
	if fe := (*FieldError)(nil); errors.As(err, &fe) {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: err.Error(), Code: CodeBadRequest, Field: fe.Field})
		return
	}
	code := codeOf(err)
	status := http.StatusInternalServerError
	switch code {
	case CodeUnknownTarget:
		status = http.StatusNotFound
	case CodeForbidden:
		status = http.StatusForbidden
	}
	writeJSON(w, status, ErrorBody{Error: err.Error(), Code: code})
}

func writeProcs(w http.ResponseWriter, procs []Proc, notes []string) {
	if procs == nil {
		procs = []Proc{}
	}
	writeJSON(w, http.StatusOK, ProcsResponse{Procs: procs, Notes: notes})
}

func (h *handler) start(w http.ResponseWriter, r *http.Request) error {
	var req StartRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	procs, err := h.b.Start(r.Context(), req.Apps, StartOptions{Force: req.Force, Lean: req.Lean})
	if err != nil {
		return err
	}
	if req.Lean {
		leanProcs(procs)
	}
	writeProcs(w, procs, nil)
	return nil
}

func (h *handler) targets(f func(context.Context, []string) ([]Proc, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req TargetsRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		procs, err := f(r.Context(), req.Targets)
		if err != nil {
			return err
		}
		writeProcs(w, procs, nil)
		return nil
	}
}

func (h *handler) restart(f func(context.Context, []string, RestartOptions) ([]Proc, []string, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req RestartRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		procs, notes, err := f(r.Context(), req.Targets, RestartOptions{UpdateEnv: req.UpdateEnv, Env: req.Env, AppEnv: req.AppEnv, Overrides: req.Overrides})
		if err != nil {
			return err
		}
		writeProcs(w, procs, notes)
		return nil
	}
}

func (h *handler) scale(w http.ResponseWriter, r *http.Request) error {
	var req ScaleRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	procs, err := h.b.Scale(r.Context(), req.Name, req.Spec)
	if err != nil {
		return err
	}
	writeProcs(w, procs, nil)
	return nil
}

func (h *handler) signal(w http.ResponseWriter, r *http.Request) error {
	var req SignalRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	procs, err := h.b.Signal(r.Context(), req.Signal, req.Targets)
	if err != nil {
		return err
	}
	writeProcs(w, procs, nil)
	return nil
}

func (h *handler) flush(w http.ResponseWriter, r *http.Request) error {
	var req TargetsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := h.b.Flush(r.Context(), req.Targets); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (h *handler) reloadLogs(w http.ResponseWriter, r *http.Request) error {
	if err := h.b.ReloadLogs(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (h *handler) apps(w http.ResponseWriter, r *http.Request) error {
	apps, err := h.b.Apps(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppsResponse{Apps: apps})
	return nil
}

func (h *handler) shutdown(w http.ResponseWriter, r *http.Request) error {
	if err := h.b.Shutdown(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (h *handler) ping(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, PingResponse{Pong: true, PID: os.Getpid(), Version: h.version, Goroutines: runtime.NumGoroutine(),
		FastRequests: h.fast.Load()})
	return nil
}

// logs streams newline-delimited JSON LogLine values until the backend's
// channel closes or the client goes away.
func (h *handler) logs(w http.ResponseWriter, r *http.Request) error {
	var req TargetsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := h.b.Logs(ctx, req.Targets)
	if err != nil {
		return err
	}
	writeStream(ctx, w, ch, nil)
	return nil
}
