package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
)

//go:embed assets
var assetsFS embed.FS

// Request header and cookie names.
const (
	// CSRFHeader carries the CSRF value on state-changing requests.
	CSRFHeader = "X-Corral-CSRF"
	// cookiePrefix + port is the session cookie's name (one per dashboard port: cookies are not
	// scoped by port, so two corral homes' dashboards on one host must not overwrite each other).
	cookiePrefix = "corral_web_"
)

// maxActionBytes bounds the body of POST /api/action.
const maxActionBytes = 64 << 10

// tickInterval is how often the stream sends the process table and the new samples.
var tickInterval = time.Second

type handler struct {
	b      api.Backend
	c      *Controller
	port   int
	cookie string
	mux    *http.ServeMux
}

func newHandler(b api.Backend, c *Controller, port int) http.Handler {
	h := &handler{b: b, c: c, port: port, cookie: cookiePrefix + strconv.Itoa(port), mux: http.NewServeMux()}
	assets, _ := fs.Sub(assetsFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))
	h.mux.HandleFunc("GET /assets/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.HandleFunc("GET /api/session", h.authed(h.session))
	h.mux.HandleFunc("GET /api/stream", h.authed(h.stream))
	h.mux.HandleFunc("GET /api/logs", h.authed(h.logs))
	h.mux.HandleFunc("POST /api/action", h.authed(h.csrf(h.action)))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return h
}

// ServeHTTP sets the security headers and checks the Host header, then routes.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !h.hostAllowed(r.Host) {
		http.Error(w, "corral web: unexpected Host header (open the URL `corral web` prints)", http.StatusMisdirectedRequest)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// hostAllowed accepts, on a loopback address, only loopback names with the served port: a DNS
// rebinding page (evil.example resolving to 127.0.0.1) sends its own name.
func (h *handler) hostAllowed(hostport string) bool {
	if !h.c.loopbackOnly() {
		return true
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port != strconv.Itoa(h.port) {
		return false
	}
	return IsLoopback(host)
}

// derived returns a value derived from the token for purpose ("session", "csrf"): the cookie and
// the CSRF header never carry the token itself.
func derived(token, purpose string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("corral web " + purpose))
	return hex.EncodeToString(m.Sum(nil))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// loggedIn reports whether r carries a valid session cookie.
func (h *handler) loggedIn(r *http.Request) bool {
	tok := h.c.secret()
	if tok == "" {
		return false
	}
	ck, err := r.Cookie(h.cookie)
	return err == nil && equal(ck.Value, derived(tok, "session"))
}

func (h *handler) authed(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.loggedIn(r) {
			jsonError(w, http.StatusUnauthorized, "not signed in: open the URL `corral web` prints")
			return
		}
		f(w, r)
	}
}

// csrf refuses state-changing requests that do not come from the dashboard's own page: the
// Origin must be this server, the CSRF header the value derived from the token, and the browser's
// Sec-Fetch-Site (when sent) "same-origin".
func (h *handler) csrf(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || origin != "http://"+r.Host {
			jsonError(w, http.StatusForbidden, "cross-origin request refused (Origin "+strconv.Quote(origin)+")")
			return
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
			jsonError(w, http.StatusForbidden, "cross-site request refused (Sec-Fetch-Site "+s+")")
			return
		}
		if !equal(r.Header.Get(CSRFHeader), derived(h.c.secret(), "csrf")) {
			jsonError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header")
			return
		}
		f(w, r)
	}
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Has("token") {
		tok := h.c.secret()
		if tok == "" || !equal(q.Get("token"), tok) {
			h.refused(w, "This link's token is not (or no longer) valid.")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: h.cookie, Value: derived(tok, "session"), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		// The page then replaces its own address with "/" (signin.js): the token leaves the address
		// bar and the history. Not an HTTP redirect: when the link was followed from another site,
		// the browser would count the redirected request as cross-site and withhold the Strict
		// cookie just set; a navigation the page itself starts is same-site.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>corral — signing in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/assets/app.css">
<script src="/assets/signin.js"></script></head>
<body class="refused"><main><h1>corral</h1><p id="signing-in">Signed in. <a href="/">Open the dashboard</a>.</p></main></body></html>`)
		return
	}
	if !h.loggedIn(r) {
		h.refused(w, "This dashboard needs its access token.")
		return
	}
	page, err := assetsFS.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page)
}

func (h *handler) refused(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>corral — sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/assets/app.css"></head>
<body class="refused"><main><h1>corral</h1><p id="refused">%s</p>
<p>Run <code>corral web</code> on the host and open the URL it prints.</p></main></body></html>`, why)
}

func (h *handler) session(w http.ResponseWriter, r *http.Request) {
	_, hasEvents := h.b.(api.EventSource)
	_, hasHistory := h.b.(api.HistorySource)
	writeJSON(w, http.StatusOK, map[string]any{"csrf": derived(h.c.secret(), "csrf"), "events": hasEvents, "history": hasHistory})
}

// ---- the stream: the process table, samples and events ----

// sse writes Server-Sent Events.
type sse struct {
	w  io.Writer
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	fmt.Fprint(w, "retry: 2000\n\n")
	return s
}

func (s *sse) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return nil
}

func (s *sse) flush() error { return s.rc.Flush() }

// stream is GET /api/stream: "procs" (the table) at once and every tick, "history" (every sample
// kept) at once then "samples" (the new ones) every tick, "event" for each event (the last 200
// first), and "failure" when the daemon fails to answer. When the event feed drops this stream (it
// fell too far behind) the stream ends: the browser reconnects and gets the recent events again.
func (h *handler) stream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := startSSE(w)
	var evc <-chan eventItem
	if src, ok := h.b.(api.EventSource); ok {
		evc = forwardEvents(ctx, src)
	}
	hist, _ := h.b.(api.HistorySource)
	var since int64
	tick := func(first bool) error {
		procs, err := h.b.List(ctx)
		if err != nil {
			return s.send("failure", map[string]string{"error": err.Error()})
		}
		if err := s.send("procs", viewProcs(procs)); err != nil {
			return err
		}
		if hist != nil {
			ph, err := hist.History(ctx, api.HistoryRequest{Since: since})
			if err == nil {
				for _, p := range ph {
					if n := len(p.Samples); n > 0 && p.Samples[n-1].Time > since {
						since = max(since, p.Samples[n-1].Time)
					}
				}
				name := "samples"
				if first {
					name = "history"
				}
				if err := s.send(name, ph); err != nil {
					return err
				}
			}
		}
		return s.flush()
	}
	if tick(true) != nil {
		return
	}
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if tick(false) != nil {
				return
			}
		case it, ok := <-evc:
			if !ok {
				return
			}
			if s.send("event", it) != nil {
				return
			}
			if len(evc) == 0 && s.flush() != nil {
				return
			}
		}
	}
}

// eventItem is an event as the page shows it.
type eventItem struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	App     string    `json:"app,omitempty"`
	PMID    *int      `json:"pm_id,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Text    string    `json:"text"`
	Level   string    `json:"level"` // "info", "good", "warn", "bad"
	Details []string  `json:"details,omitempty"`
}

func forwardEvents(ctx context.Context, src api.EventSource) <-chan eventItem {
	ch, err := src.Events(ctx, api.EventsRequest{Backlog: 200, Follow: true})
	if err != nil {
		return nil
	}
	out := make(chan eventItem, 64)
	go func() {
		defer close(out)
		for e := range ch {
			select {
			case out <- viewEvent(e):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// ---- logs ----

// logs is GET /api/logs?target=T&lines=N: the last N lines of the target's log files ("tail"
// events), then each new line ("line").
func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	target := r.URL.Query().Get("target")
	if target == "" {
		target = "all"
	}
	n, err := strconv.Atoi(r.URL.Query().Get("lines"))
	if err != nil || n < 0 {
		n = 100
	}
	n = min(n, 1000)
	procs, err := h.b.List(ctx)
	if err != nil {
		jsonError(w, http.StatusBadGateway, err.Error())
		return
	}
	if target != "all" || len(procs) > 0 {
		if procs, err = api.Match(procs, []string{target}); err != nil {
			jsonError(w, http.StatusNotFound, err.Error())
			return
		}
	}
	ch, err := h.b.Logs(ctx, []string{target})
	if err != nil {
		jsonError(w, http.StatusNotFound, err.Error())
		return
	}
	s := startSSE(w)
	if s.send("tail", tailLines(procs, n)) != nil || s.flush() != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-ch:
			if !ok {
				return
			}
			if s.send("line", viewLine(l)) != nil {
				return
			}
			if len(ch) == 0 && s.flush() != nil {
				return
			}
		}
	}
}

// ---- actions ----

// actionRequest is the body of POST /api/action.
type actionRequest struct {
	Action string `json:"action"` // restart, reload, stop, start, delete, scale, signal, flush, reset
	Target string `json:"target"` // pm_id, app name, namespace or "all"
	Spec   string `json:"spec"`   // scale: "+1", "-1", "N"
	Signal string `json:"signal"` // signal: e.g. "SIGUSR2"
}

func (h *handler) action(w http.ResponseWriter, r *http.Request) {
	var req actionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBytes))
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "bad request: "+err.Error())
		return
	}
	if req.Target == "" {
		jsonError(w, http.StatusBadRequest, "bad request: no target")
		return
	}
	ctx := r.Context()
	targets := []string{req.Target}
	var procs []api.Proc
	var notes []string
	var err error
	switch req.Action {
	case "restart":
		procs, notes, err = h.b.Restart(ctx, targets, api.RestartOptions{})
	case "reload":
		procs, notes, err = h.b.Reload(ctx, targets, api.RestartOptions{})
	case "stop":
		procs, err = h.b.Stop(ctx, targets)
	case "start":
		// A stopped process starts again with `corral restart`, as with PM2.
		procs, notes, err = h.b.Restart(ctx, targets, api.RestartOptions{})
	case "delete":
		procs, err = h.b.Delete(ctx, targets)
	case "reset":
		procs, err = h.b.Reset(ctx, targets)
	case "flush":
		err = h.b.Flush(ctx, targets)
	case "scale":
		if req.Spec == "" {
			jsonError(w, http.StatusBadRequest, "bad request: scale needs a spec (+1, -1 or a count)")
			return
		}
		procs, err = h.b.Scale(ctx, req.Target, req.Spec)
	case "signal":
		if req.Signal == "" {
			jsonError(w, http.StatusBadRequest, "bad request: signal needs a signal name")
			return
		}
		procs, err = h.b.Signal(ctx, req.Signal, targets)
	default:
		jsonError(w, http.StatusBadRequest, "bad request: unknown action "+strconv.Quote(req.Action))
		return
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, api.ErrUnknownTarget) {
			status = http.StatusNotFound
		}
		jsonError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "procs": viewProcs(procs), "notes": notes})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(msg)})
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
