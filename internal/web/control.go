// Package web is the dashboard the daemon serves over HTTP (`corral web`): the process table,
// CPU/memory charts from the daemon's history, a live log tail, the event timeline and the
// actions (restart, reload, stop, start, delete, scale, signal, flush), in one page embedded in
// the binary (go:embed; plain HTML, CSS and JavaScript, no build step).
//
// # Security model
//
//   - Off by default; `corral web` turns it on. It binds to 127.0.0.1 unless told otherwise, and
//     a non-loopback address needs AllowRemote (the CLI's --allow-remote) and is warned about.
//   - Every page and API call needs the access token: a random 256-bit value, printed by the CLI
//     in the URL (…/?token=T). The first load exchanges it for an HttpOnly, SameSite=Strict
//     cookie holding a value derived from it (HMAC-SHA256(T, "session")), and the page replaces
//     its address with "/" (assets/signin.js), so the token leaves the address bar and the history.
//   - State-changing requests (POST /api/action) also need the X-Corral-CSRF header (another
//     value derived from the token, which the page fetches with its cookie) and an Origin header
//     naming this very server; a request from another origin is refused even with the cookie.
//   - On a loopback address the Host header must be a loopback name and the served port (DNS
//     rebinding).
//   - Responses carry a Content-Security-Policy allowing only the server's own scripts and
//     styles, no framing, no referrer, no caching.
//   - Env values whose names look secret are masked (internal/secretenv, as `corral show`).
//
// # Persistence
//
// The setting (address, port, token) is saved in <home>/web.json (mode 0600, in the owner-only
// corral home) while the dashboard is on: a daemon restart (kill, update, reboot with resurrect)
// serves it again on the same address with the same token, so an open page reconnects.
// `corral web --stop` removes the file.
//
// # Concurrency
//
// Controller.mu guards the server, listener and settings; it is held while a listener is opened
// or closed (Shutdown waits up to 3 s for the handlers). Request handlers never take it: they read
// the token and the loopback flag from atomics (Controller.secret) and call the Backend without
// any lock of the package.
package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// DefaultPort is where the dashboard listens when no port is given: PM2's `pm2 web` port.
const DefaultPort = 9615

// DefaultHost is where the dashboard listens when no host is given.
const DefaultHost = "127.0.0.1"

// SettingsFile is the name of the saved setting in the corral home.
const SettingsFile = "web.json"

// Config configures a Controller.
type Config struct {
	// Backend is the daemon; the dashboard uses api.EventSource and api.HistorySource when it
	// implements them.
	Backend api.Backend
	// Home is the corral home, where SettingsFile is kept; empty: nothing is saved.
	Home string
	// Logger receives what happens to the dashboard; nil discards it.
	Logger *slog.Logger
}

// settings is the saved state of the dashboard.
type settings struct {
	Host        string `json:"host"`
	Port        int    `json:"port"`
	Token       string `json:"token"`
	AllowRemote bool   `json:"allow_remote,omitempty"`
}

// Controller starts, moves and stops the dashboard's HTTP server. It implements the daemon's
// side of api.WebSource (Do).
type Controller struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	closed bool     // Close was called: nothing starts any more
	set    settings // valid while srv != nil
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // cancels the server's base context (open streams end)
	done   chan struct{}      // closed when srv.Serve has returned

	// token and loopback mirror set.Token (nil when not serving) and IsLoopback(set.Host) for the
	// request handlers, which read them without mu.
	token    atomic.Pointer[string]
	loopback atomic.Bool
}

// NewController returns a Controller with no server running.
func NewController(cfg Config) *Controller {
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, log: lg}
}

// Restore serves the dashboard again if a saved setting says it was on. A port still held (by the
// previous daemon while it exits) is tried again for up to wait. It reports whether it serves.
func (c *Controller) Restore(wait time.Duration) (bool, error) {
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		if c.srv != nil { // `corral web` started it meanwhile
			c.mu.Unlock()
			return true, nil
		}
		s, err := c.load() // again each time: `corral web --stop` may have removed it meanwhile
		if err == nil && s != nil {
			err = c.startLocked(*s)
		}
		c.mu.Unlock()
		switch {
		case err == nil && s == nil:
			return false, nil
		case err == nil:
			c.log.Info("web dashboard restored", "addr", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
			return true, nil
		case !errors.Is(err, errAddrInUse) || time.Now().After(deadline):
			return false, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Do carries out req (api.WebSource).
func (c *Controller) Do(ctx context.Context, req api.WebRequest) (api.WebResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Action {
	case "status", "":
		return c.infoLocked(), nil
	case "stop":
		c.stopLocked()
		if err := c.remove(); err != nil {
			return c.infoLocked(), err
		}
		return c.infoLocked(), nil
	case "start":
	default:
		return api.WebResponse{}, fmt.Errorf("web: unknown action %q (want start, status or stop)", req.Action)
	}
	want := c.set
	if c.srv == nil {
		want = settings{Host: DefaultHost, Port: DefaultPort}
		if saved, err := c.load(); err == nil && saved != nil {
			want = *saved
		}
	}
	if req.Host != "" {
		want.Host = req.Host
	}
	if req.PortSet || req.Port != 0 {
		want.Port = req.Port
	}
	if req.Port < 0 || req.Port > 65535 {
		return api.WebResponse{}, fmt.Errorf("web: port %d: want 0 to 65535", req.Port)
	}
	want.AllowRemote = req.AllowRemote || (want.AllowRemote && req.Host == "")
	if !IsLoopback(want.Host) && !want.AllowRemote {
		return api.WebResponse{}, fmt.Errorf("web: %s is not a loopback address: anyone who can reach it could try to use the dashboard, "+
			"over plain HTTP; pass --allow-remote to serve there anyway", want.Host)
	}
	if want.Token == "" || req.NewToken {
		tok, err := newToken()
		if err != nil {
			return api.WebResponse{}, err
		}
		want.Token = tok
	}
	if c.srv != nil && want.Host == c.set.Host && (want.Port == c.set.Port || want.Port == 0) {
		c.set.Token, c.set.AllowRemote = want.Token, want.AllowRemote
		tok := want.Token
		c.token.Store(&tok) // takes effect at once: the handlers read it
	} else {
		old := c.set
		running := c.srv != nil
		c.stopLocked()
		if err := c.startLocked(want); err != nil {
			if running { // keep what was served
				if err2 := c.startLocked(old); err2 != nil {
					c.log.Warn("web dashboard: restart on the old address", "err", err2)
				}
			}
			return api.WebResponse{}, err
		}
	}
	if err := c.save(c.set); err != nil {
		return c.infoLocked(), err
	}
	return c.infoLocked(), nil
}

// Close stops the server (the saved setting stays, for the next daemon).
func (c *Controller) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.stopLocked()
}

var errAddrInUse = errors.New("address in use")

func (c *Controller) startLocked(s settings) error {
	if c.closed {
		return errors.New("web: the daemon is shutting down")
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	network := "tcp" // a name: every address it resolves to
	if ip := net.ParseIP(s.Host); ip != nil && ip.To4() != nil {
		network = "tcp4" // 0.0.0.0 means IPv4 only, not Go's dual-stack wildcard
	} else if ip != nil {
		network = "tcp6"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		if isAddrInUse(err) {
			return fmt.Errorf("web: listen on %s: %w (is another dashboard or program using the port? pick one with --port)", addr, errAddrInUse)
		}
		return fmt.Errorf("web: listen on %s: %w", addr, err)
	}
	s.Port = ln.Addr().(*net.TCPAddr).Port // --port 0: the port picked, saved so that it stays
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           newHandler(c.cfg.Backend, c, s.Port),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Warn("web dashboard stopped", "err", err)
		}
	}()
	c.set, c.srv, c.ln, c.cancel, c.done = s, srv, ln, cancel, done
	tok := s.Token
	c.token.Store(&tok)
	c.loopback.Store(IsLoopback(s.Host))
	c.log.Info("web dashboard serving", "addr", ln.Addr().String())
	return nil
}

func (c *Controller) stopLocked() {
	if c.srv == nil {
		return
	}
	c.cancel() // ends the event streams, so that Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if err := c.srv.Shutdown(sctx); err != nil {
		c.srv.Close()
	}
	cancel()
	<-c.done
	c.log.Info("web dashboard stopped", "addr", c.ln.Addr().String())
	c.srv, c.ln, c.cancel, c.done = nil, nil, nil, nil
	c.token.Store(nil)
}

func (c *Controller) infoLocked() api.WebResponse {
	if c.srv == nil {
		return api.WebResponse{}
	}
	resp := api.WebResponse{Running: true, Addr: net.JoinHostPort(c.set.Host, strconv.Itoa(c.set.Port)), Persisted: c.cfg.Home != ""}
	host := c.set.Host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = DefaultHost // 0.0.0.0 / :: answer on loopback too; the URL must name an address
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(c.set.Port)), Path: "/",
		RawQuery: url.Values{"token": {c.set.Token}}.Encode()}
	resp.URL = u.String()
	if !IsLoopback(c.set.Host) {
		resp.Warnings = append(resp.Warnings, fmt.Sprintf("the dashboard listens on %s, not a loopback address: "+
			"it is plain HTTP, so the token and the cookie cross the network unencrypted; prefer an SSH tunnel "+
			"(ssh -L %d:127.0.0.1:%d) or a TLS proxy", resp.Addr, c.set.Port, c.set.Port))
	}
	return resp
}

// secret returns the current access token ("" when not serving). It takes no lock: a handler must
// never wait for Do, which may be waiting for the handlers to finish (Shutdown).
func (c *Controller) secret() string {
	if t := c.token.Load(); t != nil {
		return *t
	}
	return ""
}

// loopbackOnly says whether the server serves a loopback address (Host header checks apply).
func (c *Controller) loopbackOnly() bool { return c.loopback.Load() }

// IsLoopback reports whether host names a loopback address ("localhost", 127.0.0.0/8, ::1).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("web: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (c *Controller) path() string {
	if c.cfg.Home == "" {
		return ""
	}
	return filepath.Join(c.cfg.Home, SettingsFile)
}

func (c *Controller) load() (*settings, error) {
	p := c.path()
	if p == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: read %s: %w", p, err)
	}
	var s settings
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("web: %s: %w (remove it, then run corral web again)", p, err)
	}
	if s.Host == "" || s.Token == "" || s.Port < 0 || s.Port > 65535 {
		return nil, fmt.Errorf("web: %s: incomplete setting (remove it, then run corral web again)", p)
	}
	if !IsLoopback(s.Host) && !s.AllowRemote {
		return nil, fmt.Errorf("web: %s: %s is not a loopback address and allow_remote is not set", p, s.Host)
	}
	return &s, nil
}

// save writes s atomically, owner-only.
func (c *Controller) save(s settings) error {
	p := c.path()
	if p == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".web-*.json")
	if err != nil {
		return fmt.Errorf("web: save setting: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("web: save setting %s: %w", p, err)
	}
	return nil
}

func (c *Controller) remove() error {
	p := c.path()
	if p == "" {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("web: remove %s: %w", p, err)
	}
	return nil
}
