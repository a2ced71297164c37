// Package serve is the static file server behind `corral serve` (PM2's `pm2 serve`): it runs as
// an app of its own (`corral __serve`), configured by PM2's PM2_SERVE_* variables.
package serve

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is what the server serves.
type Config struct {
	Dir      string // the directory served
	Addr     string // host:port to listen on
	SPA      bool   // serve Homepage for paths that name no file (single-page apps)
	Homepage string // "/index.html" by default
	User     string // basic auth user; both empty: no auth
	Password string
}

// FromEnv reads PM2's variables: PM2_SERVE_PATH (default "."), PM2_SERVE_PORT (8080),
// PM2_SERVE_HOST (all interfaces, as PM2), PM2_SERVE_SPA, PM2_SERVE_HOMEPAGE,
// PM2_SERVE_BASIC_AUTH with PM2_SERVE_BASIC_AUTH_USERNAME and _PASSWORD.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{Dir: getenv("PM2_SERVE_PATH"), Homepage: getenv("PM2_SERVE_HOMEPAGE")}
	if c.Dir == "" {
		c.Dir = "."
	}
	if c.Homepage == "" {
		c.Homepage = "/index.html"
	}
	port := getenv("PM2_SERVE_PORT")
	if port == "" {
		port = "8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return c, fmt.Errorf("PM2_SERVE_PORT %q is not a port", port)
	}
	c.Addr = net.JoinHostPort(getenv("PM2_SERVE_HOST"), port)
	c.SPA = isTrue(getenv("PM2_SERVE_SPA"))
	if isTrue(getenv("PM2_SERVE_BASIC_AUTH")) {
		c.User, c.Password = getenv("PM2_SERVE_BASIC_AUTH_USERNAME"), getenv("PM2_SERVE_BASIC_AUTH_PASSWORD")
		if c.User == "" || c.Password == "" {
			return c, errors.New("PM2_SERVE_BASIC_AUTH needs PM2_SERVE_BASIC_AUTH_USERNAME and PM2_SERVE_BASIC_AUTH_PASSWORD")
		}
	}
	st, err := os.Stat(c.Dir)
	if err != nil || !st.IsDir() {
		return c, fmt.Errorf("serve %s: not a directory", c.Dir)
	}
	return c, nil
}

func isTrue(s string) bool { return s == "true" || s == "1" }

// Handler serves c.Dir: files as they are, a directory by its index.html (never a listing), a
// missing path by the homepage with SPA, else by 404.html when there is one, else a plain 404.
func Handler(c Config) http.Handler {
	root := http.Dir(c.Dir)
	files := http.FileServer(root)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if exists(root, p) {
			files.ServeHTTP(w, r)
			return
		}
		if c.SPA && exists(root, c.Homepage) {
			http.ServeFile(w, r, filepath.Join(c.Dir, filepath.FromSlash(c.Homepage)))
			return
		}
		if exists(root, "/404.html") {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			if f, err := root.Open("/404.html"); err == nil {
				defer f.Close()
				_, _ = io.Copy(w, f)
			}
			return
		}
		http.NotFound(w, r)
	})
	if c.User == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(c.User)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(c.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="corral serve"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// exists reports whether p is a file, or a directory with an index.html.
func exists(root http.Dir, p string) bool {
	f, err := root.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	if !st.IsDir() {
		return true
	}
	idx, err := root.Open(strings.TrimSuffix(p, "/") + "/index.html")
	if err != nil {
		return false
	}
	idx.Close()
	return true
}

// Run serves until ctx ends, then shuts down gracefully (5 s at most).
func Run(ctx context.Context, c Config, ready func(addr net.Addr)) error {
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{Handler: Handler(c), ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
