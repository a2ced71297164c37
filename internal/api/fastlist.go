package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The fast paths of `ls` and `jlist` (issue 13). A full ProcsResponse carries every instance's
// environment twice (Proc.Env, App.Env/ShellEnv): with 100 processes it is ~400 KB of JSON, whose
// encoding in the daemon and decoding in the CLI cost `ls` and `jlist` most of their time. `ls`
// asks for the rows it prints instead (ListRequest.View "rows"); `jlist` asks the daemon for
// PM2's JSON rendered there (MethodJList) and copies it out. A daemon without them answers as
// before (ProcsResponse; "no such method"), and the client falls back.

// MethodJList returns `pm2 jlist`'s JSON of every instance, as is (not wrapped in an object).
const MethodJList = "jlist"

// ViewRows is the ListRequest.View that asks for RowsResponse.
const ViewRows = "rows"

// ListRequest is the optional body of POST /v1/list.
type ListRequest struct {
	// View "rows" asks for a RowsResponse; "" (or no body) for a ProcsResponse. A daemon that
	// predates views ignores the body and answers a ProcsResponse.
	View string `json:"view,omitempty"`
}

// Row is one instance as `ls` prints it: the fields of Proc the table and --sort read.
type Row struct {
	PMID      int      `json:"id"`
	Name      string   `json:"name"`
	Namespace string   `json:"ns,omitempty"`
	PID       int      `json:"pid,omitempty"`
	Status    string   `json:"status"`
	ExecMode  string   `json:"mode,omitempty"`    // App.ExecMode
	Listen    []string `json:"listen,omitempty"`  // App.Listen
	StartedAt int64    `json:"started,omitempty"` // Unix nanoseconds; 0: zero time
	Restarts  int      `json:"restarts,omitempty"`
	CPU       float64  `json:"cpu,omitempty"`
	Memory    uint64   `json:"mem,omitempty"`
}

// RowsResponse is the answer of POST /v1/list with View "rows". Procs is set instead of Rows by
// a daemon that predates views (the client reads both).
type RowsResponse struct {
	Rows  []Row  `json:"rows"`
	Procs []Proc `json:"procs,omitempty"`
}

// RowOf returns the row of p.
func RowOf(p Proc) Row {
	r := Row{PMID: p.PMID, Name: p.Name, Namespace: p.Namespace, PID: p.PID, Status: p.Status,
		ExecMode: p.App.ExecMode, Listen: p.App.Listen, Restarts: p.Restarts, CPU: p.CPU, Memory: p.Memory}
	if !p.StartedAt.IsZero() {
		r.StartedAt = p.StartedAt.UnixNano()
	}
	return r
}

// Proc returns a Proc with the row's fields set (and nothing else).
func (r Row) Proc() Proc {
	p := Proc{PMID: r.PMID, Name: r.Name, Namespace: r.Namespace, PID: r.PID, Status: r.Status,
		Restarts: r.Restarts, CPU: r.CPU, Memory: r.Memory}
	p.App.Name = r.Name
	p.App.ExecMode = r.ExecMode
	p.App.Listen = r.Listen
	if r.StartedAt != 0 {
		p.StartedAt = time.Unix(0, r.StartedAt)
	}
	return p
}

// leanProcs drops the environments of procs (StartOptions.Lean).
func leanProcs(procs []Proc) {
	for i := range procs {
		procs[i].Env, procs[i].App.Env, procs[i].App.ShellEnv, procs[i].App.EnvSets = nil, nil, nil, nil
	}
}

// RowLister is a Backend that lists the rows of `ls` itself, without building whole Procs (the
// daemon: internal/daemon/jlist.go). Its rows must be RowOf of what List returns.
type RowLister interface {
	ListRows(ctx context.Context) ([]Row, error)
}

// JLister is a Backend that renders `jlist` itself (the daemon: internal/daemon/jlist.go).
type JLister interface {
	JList(ctx context.Context) ([]byte, error)
}

// JListLender is a JLister that lends its rendering to fn, which must not keep it, instead of
// returning it (the daemon reuses the buffer from call to call: internal/daemon/jlist.go).
type JListLender interface {
	LendJList(ctx context.Context, fn func([]byte) error) error
}

// list answers POST /v1/list: a ProcsResponse, or a RowsResponse for View "rows".
func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	var req ListRequest
	if body, _ := io.ReadAll(r.Body); len(bytes.TrimSpace(body)) > 0 { // the guard has read it already
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	if rl, ok := h.b.(RowLister); ok && req.View == ViewRows {
		rows, err := rl.ListRows(r.Context())
		if err != nil {
			return err
		}
		if rows == nil {
			rows = []Row{}
		}
		writeJSON(w, http.StatusOK, RowsResponse{Rows: rows})
		return nil
	}
	procs, err := h.b.List(r.Context())
	if err != nil {
		return err
	}
	if req.View != ViewRows {
		writeProcs(w, procs, nil)
		return nil
	}
	rows := make([]Row, len(procs))
	for i, p := range procs {
		rows[i] = RowOf(p)
	}
	writeJSON(w, http.StatusOK, RowsResponse{Rows: rows})
	return nil
}

// jlist answers POST /v1/jlist with the backend's rendering, or "no such method" when it has none.
func (h *handler) jlist(w http.ResponseWriter, r *http.Request) error {
	jl, ok := h.b.(JLister)
	if !ok {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: "no such method: " + MethodJList, Code: CodeNotFound})
		return nil
	}
	h.countFast(r)
	write := func(out []byte) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		return nil
	}
	if ll, ok := jl.(JListLender); ok {
		return ll.LendJList(r.Context(), write)
	}
	out, err := jl.JList(r.Context())
	if err != nil {
		return err
	}
	return write(out)
}

// ListRows returns every instance with the fields `ls` prints set (Row.Proc); from a daemon
// that predates rows, the whole Procs.
func (c *Client) ListRows(ctx context.Context) ([]Proc, error) {
	var resp struct {
		Rows  []Row           `json:"rows"`
		Procs json.RawMessage `json:"procs"` // decoded only when there are no rows (Proc's decoder is costly to build)
	}
	if err := c.call(ctx, MethodList, ListRequest{View: ViewRows}, &resp); err != nil {
		return nil, err
	}
	if resp.Rows == nil {
		var procs []Proc
		if err := json.Unmarshal(resp.Procs, &procs); err != nil {
			return nil, fmt.Errorf("decode %s response: %w", MethodList, err)
		}
		return procs, nil
	}
	procs := make([]Proc, len(resp.Rows))
	for i, r := range resp.Rows {
		procs[i] = r.Proc()
	}
	return procs, nil
}

// JList returns the daemon's `jlist` JSON. A daemon that cannot render it gives an error that
// matches errors.ErrUnsupported (the caller renders List's answer itself).
func (c *Client) JList(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, MethodJList, nil)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) && re.Code == CodeNotFound {
			return nil, fmt.Errorf("%s: %w", MethodJList, errors.ErrUnsupported)
		}
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n < 1<<30 {
		buf.Grow(int(n) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, fmt.Errorf("read %s response: %w", MethodJList, err)
	}
	return buf.Bytes(), nil
}

// pongCache holds the answer of a client's last successful Ping.
type pongCache struct{ p atomic.Pointer[PingResponse] }

// LastPong returns the answer of this client's last successful Ping, if any: `ls` checks the
// daemon's version with the ping that found the daemon instead of asking again.
func (c *Client) LastPong() (PingResponse, bool) {
	p := c.pong.p.Load()
	if p == nil {
		return PingResponse{}, false
	}
	return *p, true
}

// MethodListText returns `ls`'s whole output as text (text/plain, with a Content-Length): the
// table, then the out-of-date warning when the caller's version (ListTextRequest.Version) is not
// the daemon's. The CLI's early fast path (internal/fastls) asks for it and copies it out.
const MethodListText = "lstext"

// FastHeader marks a request made by the CLI's early fast path (internal/fastls); the daemon
// counts them (PingResponse.FastRequests), so that tests can tell the fast path was taken.
const FastHeader = "Corral-Fast"

// ListTextRequest is the body of POST /v1/lstext.
type ListTextRequest struct {
	Version string `json:"version"` // the CLI's version
}

// ListTexter is a Backend that renders `ls` itself (the daemon: internal/daemon/jlist.go), with
// the warning lstable.OutOfDate(daemonVersion, clientVersion) after the table.
type ListTexter interface {
	ListText(ctx context.Context, clientVersion, daemonVersion string) ([]byte, error)
}

// countFast counts r when the early fast path made it.
func (h *handler) countFast(r *http.Request) {
	if r.Header.Get(FastHeader) != "" {
		h.fast.Add(1)
	}
}

// listText answers POST /v1/lstext with the backend's rendering, or "no such method".
func (h *handler) listText(w http.ResponseWriter, r *http.Request) error {
	lt, ok := h.b.(ListTexter)
	if !ok {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: "no such method: " + MethodListText, Code: CodeNotFound})
		return nil
	}
	var req ListTextRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	h.countFast(r)
	out, err := lt.ListText(r.Context(), req.Version, h.version)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	return nil
}
