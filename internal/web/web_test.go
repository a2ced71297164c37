package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// serve starts a dashboard on a free loopback port over a Fake with one app, and returns the
// controller, the fake and the sign-in URL.
func serve(t *testing.T, home string) (*Controller, *apitest.Fake, *url.URL) {
	t.Helper()
	f := &apitest.Fake{}
	if _, err := f.Start(context.Background(), []appspec.App{{Name: "api", Script: "app.js", Instances: 1,
		Env: map[string]string{"API_KEY": "s3cret-value", "DB_PASSWORD": "pw-value", "MODE": "demo"}}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	c := NewController(Config{Backend: f, Home: home})
	t.Cleanup(c.Close)
	resp, err := c.Do(context.Background(), api.WebRequest{Action: "start", Port: 0, PortSet: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.URL)
	if err != nil || !resp.Running || u.Query().Get("token") == "" {
		t.Fatalf("start: %+v (%v)", resp, err)
	}
	return c, f, u
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

func get(t *testing.T, u string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn exchanges the URL's token for the session cookie, checking the cookie's attributes.
func signIn(t *testing.T, link *url.URL) *http.Cookie {
	t.Helper()
	resp, body := get(t, link.String(), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/assets/signin.js") {
		t.Fatalf("sign-in: %s %q; want 200 and the page that leaves the link", resp.Status, body)
	}
	if strings.Contains(body, link.Query().Get("token")) {
		t.Error("the sign-in page holds the token")
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("sign-in set %d cookies", len(cs))
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %s: HttpOnly %v SameSite %v Path %q; want HttpOnly, Strict, /", c.Name, c.HttpOnly, c.SameSite, c.Path)
	}
	if tok := link.Query().Get("token"); strings.Contains(c.Value, tok) {
		t.Error("the cookie carries the token itself")
	}
	return c
}

func base(link *url.URL) string { return "http://" + link.Host }

// The page and the API need the token: refused without it or with a wrong one, served with the
// cookie the token is exchanged for.
func TestWebTokenSignIn(t *testing.T) {
	_, _, link := serve(t, "")
	for _, u := range []string{"/", "/?token=wrong", "/?token="} {
		resp, body := get(t, base(link)+u, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "access token") && !strings.Contains(body, "not (or no longer) valid") {
			t.Errorf("GET %s without the token: %s %q", u, resp.Status, body)
		}
		if strings.Contains(body, "app.js") {
			t.Errorf("GET %s without the token serves the app", u)
		}
	}
	for _, u := range []string{"/api/stream", "/api/logs", "/api/session"} {
		if resp, _ := get(t, base(link)+u, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without the cookie: %s, want 401", u, resp.Status)
		}
	}
	bad := &http.Cookie{Name: cookiePrefix + link.Port(), Value: strings.Repeat("0", 64)}
	if resp, _ := get(t, base(link)+"/api/session", bad); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/session with a forged cookie: %s, want 401", resp.Status)
	}
	ck := signIn(t, link)
	resp, body := get(t, base(link)+"/", ck)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/assets/app.js") {
		t.Fatalf("GET / signed in: %s", resp.Status)
	}
	if resp, _ := get(t, base(link)+"/assets/app.js", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /assets/app.js: %s", resp.Status)
	}
	if resp, body := get(t, base(link)+"/assets/", ck); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /assets/: %s %q, want 404 (no listing)", resp.Status, body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if strings.Contains(body, link.Query().Get("token")) {
		t.Error("the page holds the token")
	}
}

// POST /api/action is refused without the cookie, without or with a wrong CSRF header, without an
// Origin or from another origin, cross-site per Sec-Fetch-Site; a refused request changes nothing.
// The same request with everything right is carried out.
func TestWebCSRF(t *testing.T) {
	_, f, link := serve(t, "")
	ck := signIn(t, link)
	resp, body := get(t, base(link)+"/api/session", ck)
	var sess struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &sess); err != nil || sess.CSRF == "" || resp.StatusCode != 200 {
		t.Fatalf("session: %s %s", resp.Status, body)
	}
	self := base(link)
	cases := []struct {
		name                    string
		cookie                  bool
		csrf, origin, fetchSite string
		want                    int
	}{
		{"no cookie", false, sess.CSRF, self, "", 401},
		{"no CSRF header", true, "", self, "", 403},
		{"wrong CSRF header", true, "x" + sess.CSRF[1:], self, "", 403},
		{"no Origin", true, sess.CSRF, "", "", 403},
		{"other Origin", true, sess.CSRF, "http://evil.example", "", 403},
		{"other port", true, sess.CSRF, "http://127.0.0.1:1", "", 403},
		{"cross-site fetch", true, sess.CSRF, self, "cross-site", 403},
		{"same-origin", true, sess.CSRF, self, "same-origin", 200},
	}
	for _, tc := range cases {
		before := len(f.Calls())
		req, _ := http.NewRequest("POST", self+"/api/action", strings.NewReader(`{"action":"restart","target":"api"}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.cookie {
			req.AddCookie(ck)
		}
		if tc.csrf != "" {
			req.Header.Set(CSRFHeader, tc.csrf)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s %s, want %d", tc.name, resp.Status, b, tc.want)
		}
		calls := f.Calls()[before:]
		if tc.want != 200 && len(calls) > 0 {
			t.Errorf("%s: refused, yet the backend was called: %v", tc.name, calls)
		}
		if tc.want == 200 && (len(calls) != 1 || !strings.HasPrefix(calls[0], "restart")) {
			t.Errorf("%s: backend calls %v, want one restart", tc.name, calls)
		}
	}
	// GET cannot act.
	before := len(f.Calls())
	if resp, _ := get(t, self+"/api/action", ck); resp.StatusCode < 400 || len(f.Calls()) != before {
		t.Errorf("GET /api/action: %s, calls %v; want an error and no call", resp.Status, f.Calls()[before:])
	}
}

// On a loopback address only loopback Host headers with the served port are answered (DNS
// rebinding).
func TestWebHostHeader(t *testing.T) {
	_, _, link := serve(t, "")
	for host, want := range map[string]int{
		"evil.example:" + link.Port(): http.StatusMisdirectedRequest,
		"127.0.0.1:1":                 http.StatusMisdirectedRequest,
		"localhost:" + link.Port():    http.StatusUnauthorized, // answered: asks for the token
		"127.0.0.1:" + link.Port():    http.StatusUnauthorized,
	} {
		req, _ := http.NewRequest("GET", base(link)+"/", nil)
		req.Host = host
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %s, want %d", host, resp.Status, want)
		}
	}
}

// The stream sends the table with secret-looking env values masked, never the raw values.
func TestWebStreamMasksSecrets(t *testing.T) {
	_, _, link := serve(t, "")
	ck := signIn(t, link)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base(link)+"/api/stream", nil)
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || event != "procs" {
			continue
		}
		if strings.Contains(data, "s3cret-value") || strings.Contains(data, "pw-value") {
			t.Fatalf("the stream holds a secret value: %s", data)
		}
		var procs []procView
		if err := json.Unmarshal([]byte(data), &procs); err != nil || len(procs) != 1 {
			t.Fatalf("procs: %v %s", err, data)
		}
		env := map[string]string{}
		for _, kv := range procs[0].Env {
			env[kv[0]] = kv[1]
		}
		if env["API_KEY"] != "********" || env["DB_PASSWORD"] != "********" || env["MODE"] != "demo" {
			t.Fatalf("env as sent: %v", env)
		}
		return
	}
	t.Fatalf("no procs event: %v", sc.Err())
}

// The setting is saved owner-only in the home; a new controller (the next daemon) serves the same
// address with the same token; --new-token revokes the old link and cookie; stop forgets it.
func TestWebPersistence(t *testing.T) {
	home := t.TempDir()
	c, _, link := serve(t, home)
	st, err := os.Stat(filepath.Join(home, SettingsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("web.json: %v %v, want mode 0600", err, st)
	}
	ck := signIn(t, link)
	c.Close()
	if _, err := net.DialTimeout("tcp", link.Host, time.Second); err == nil {
		t.Fatal("the port still answers after Close")
	}

	c2 := NewController(Config{Backend: &apitest.Fake{}, Home: home})
	t.Cleanup(c2.Close)
	if ok, err := c2.Restore(5 * time.Second); !ok || err != nil {
		t.Fatalf("Restore: %v %v", ok, err)
	}
	resp, err := c2.Do(context.Background(), api.WebRequest{Action: "start"})
	if err != nil || resp.URL != link.String() {
		t.Fatalf("after restore: %+v %v, want %s", resp, err, link)
	}
	if r, _ := get(t, base(link)+"/api/session", ck); r.StatusCode != 200 {
		t.Fatalf("the old cookie after a restore: %s, want 200", r.Status)
	}

	resp, err = c2.Do(context.Background(), api.WebRequest{Action: "start", NewToken: true})
	if err != nil || resp.URL == link.String() {
		t.Fatalf("new token: %+v %v", resp, err)
	}
	if r, _ := get(t, base(link)+"/api/session", ck); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old cookie after --new-token: %s, want 401", r.Status)
	}
	if r, _ := get(t, link.String(), nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old link after --new-token: %s, want 401", r.Status)
	}

	if resp, err := c2.Do(context.Background(), api.WebRequest{Action: "stop"}); err != nil || resp.Running {
		t.Fatalf("stop: %+v %v", resp, err)
	}
	if _, err := os.Stat(filepath.Join(home, SettingsFile)); !os.IsNotExist(err) {
		t.Errorf("web.json after stop: %v", err)
	}
	c3 := NewController(Config{Backend: &apitest.Fake{}, Home: home})
	if ok, err := c3.Restore(time.Second); ok || err != nil {
		t.Errorf("Restore after stop: %v %v, want nothing served", ok, err)
	}
}

// A non-loopback address is refused unless explicitly allowed, and then warned about.
func TestWebNonLoopback(t *testing.T) {
	c := NewController(Config{Backend: &apitest.Fake{}})
	t.Cleanup(c.Close)
	_, err := c.Do(context.Background(), api.WebRequest{Action: "start", Host: "0.0.0.0", PortSet: true})
	if err == nil || !strings.Contains(err.Error(), "--allow-remote") {
		t.Fatalf("0.0.0.0 without --allow-remote: %v", err)
	}
	resp, err := c.Do(context.Background(), api.WebRequest{Action: "start", Host: "0.0.0.0", PortSet: true, AllowRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "not a loopback") {
		t.Errorf("warnings: %q", resp.Warnings)
	}
	if u, _ := url.Parse(resp.URL); u == nil || u.Hostname() != "127.0.0.1" {
		t.Errorf("URL %s: want a loopback address to open on this host", resp.URL)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "127.1.2.3"} {
		if !IsLoopback(h) {
			t.Errorf("IsLoopback(%s) = false", h)
		}
	}
	for _, h := range []string{"0.0.0.0", "192.168.1.2", "example.com", "::"} {
		if IsLoopback(h) {
			t.Errorf("IsLoopback(%s) = true", h)
		}
	}
}

// A saved dashboard whose port is still held (the previous daemon exiting) is restored once the
// port is free, within the wait; without a wait the failure says why.
func TestWebRestoreWaitsForThePort(t *testing.T) {
	home := t.TempDir()
	c, _, link := serve(t, home)
	c.Close()
	held, err := net.Listen("tcp4", link.Host)
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewController(Config{Backend: &apitest.Fake{}, Home: home})
	t.Cleanup(c2.Close)
	if ok, err := c2.Restore(0); ok || err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("Restore with the port held: %v %v, want an address-in-use error", ok, err)
	}
	done := make(chan error, 1)
	go func() {
		ok, err := c2.Restore(30 * time.Second)
		if err == nil && !ok {
			err = io.ErrUnexpectedEOF
		}
		done <- err
	}()
	held.Close()
	if err := <-done; err != nil {
		t.Fatalf("Restore once the port is free: %v", err)
	}
	if resp, _ := c2.Do(context.Background(), api.WebRequest{Action: "status"}); resp.URL != link.String() {
		t.Errorf("restored on %s, want %s", resp.URL, link)
	}
}
