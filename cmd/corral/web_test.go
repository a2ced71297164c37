package main

// The web dashboard (internal/web) in a real browser: headless Chromium (Debian's `chromium`),
// driven by chromedp, against the real corral binary, its daemon and real apps.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// webApps writes two apps into dir: printer (1 instance) and worker (2), each a shell script that
// prints what is appended to msgs (tail -F), so that a test decides when an app prints a line.
// printer's ecosystem env has a secret-looking variable.
func webApps(t *testing.T, dir string) (eco, msgs string) {
	t.Helper()
	msgs = filepath.Join(dir, "msgs")
	writeFile(t, msgs, "", 0o644)
	writeFile(t, filepath.Join(dir, "printer.sh"), "#!/bin/sh\necho \"$name up\"\nexec tail -n0 -F \"$MSGS\"\n", 0o755)
	eco = filepath.Join(dir, "eco.json")
	apps := map[string]any{"apps": []map[string]any{
		{"name": "printer", "script": "./printer.sh", "env": map[string]string{"MSGS": msgs, "name": "printer",
			"API_SECRET": "hunter2-do-not-show", "GREETING": "hello"}},
		{"name": "worker", "script": "./printer.sh", "instances": 2, "env": map[string]string{"MSGS": msgs, "name": "worker"}},
	}}
	b, err := json.Marshal(apps)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, eco, string(b), 0o644)
	return eco, msgs
}

var webURLRE = regexp.MustCompile(`open: (http://\S+)`)

// startWeb runs `corral web --port <free>` and returns the URL it prints.
func startWeb(t *testing.T, dir string, env []string) (string, int) {
	t.Helper()
	port := testutil.FreePort(t)
	out := corralIn(t, dir, env, "web", "--port", strconv.Itoa(port))
	m := webURLRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("corral web printed no URL:\n%s", out)
	}
	return m[1], port
}

func corralIn(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
	cmd.Env, cmd.Dir = env, dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// chromiumPath finds Debian's chromium; without it the test is skipped (failed under CI, where
// .ci/run installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if nodetest.InCI() {
		t.Fatal("chromium not found on PATH (.ci/run installs the Debian package chromium)")
	}
	t.Skip("chromium not found on PATH (apt-get install chromium)")
	return ""
}

// browser starts a headless Chromium for the test. As root (CI containers) Chromium refuses to
// start without --no-sandbox; the flag is added only then.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitJS polls expr in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ''`))
			t.Fatalf("%s: not true after %v (%s; err %v); page text:\n%s", what, timeout, expr, err, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// The dashboard in Chromium: refused without the token, signed in with it (and the token leaves
// the address bar), the table lists the apps, a click on restart changes the pid, a line the app
// prints appears live, secrets are masked, and the page's own POSTs need the CSRF header. A
// screenshot is saved as a test artifact (go test -artifacts; CORRAL_WEB_SCREENSHOT=path also
// writes it there, as docs/web-dashboard.png was made).
func TestWebDashboardBrowser(t *testing.T) {
	skipShort(t)
	ctx := browser(t, 1440, 1000)
	p, env := testHome(t)
	dir := t.TempDir()
	eco, msgs := webApps(t, dir)
	corralIn(t, dir, env, "start", eco)
	link, port := startWeb(t, dir, env)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Without the token: refused.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "refusal page", `!!document.querySelector('#refused')`, 20*time.Second)
	if txt := evalString(t, ctx, `document.querySelector('#refused').textContent`); !strings.Contains(txt, "needs its access token") {
		t.Fatalf("refusal page says %q", txt)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/api/stream').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusUnauthorized {
		t.Fatalf("GET /api/stream without the cookie: status %d, want 401", status)
	}

	// With it: signed in, and the address bar no longer holds the token.
	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "table lists printer and both workers",
		`document.querySelectorAll('#procs tbody tr[data-name="printer"]').length === 1 &&
		 document.querySelectorAll('#procs tbody tr[data-name="worker"]').length === 2`, 30*time.Second)
	waitJS(t, ctx, "the worker app's own row sums its 2 instances",
		`(() => { const r = document.querySelector('tr.app-row[data-app="worker"]'); return !!r && r.textContent.includes('×2') && r.textContent.includes('2/2 online') })()`,
		30*time.Second)
	if n := evalString(t, ctx, `String(document.querySelectorAll('tr.app-row').length)`); n != "1" {
		t.Errorf("%s app rows, want 1 (printer has one instance: no app row)", n)
	}
	if loc := evalString(t, ctx, `location.href`); loc != base+"/" {
		t.Errorf("address bar after sign-in: %s, want %s/ (the token must leave it)", loc, base)
	}
	waitJS(t, ctx, "live", `document.querySelector('#conn').classList.contains('live')`, 20*time.Second)

	// Restart from the table: the pid changes, to the daemon's new pid.
	waitJS(t, ctx, "printer online with a pid",
		`(() => { const r = document.querySelector('tr[data-name="printer"]'); return r.dataset.status === 'online' && /^\d+$/.test(r.querySelector('.pid').textContent) })()`,
		20*time.Second)
	oldPID := evalString(t, ctx, `document.querySelector('tr[data-name="printer"] .pid').textContent`)
	if want := strconv.Itoa(pidOf(t, dir, env, "printer")); oldPID != want {
		t.Fatalf("page shows printer's pid %s, the daemon %s", oldPID, want)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-name="printer"] button[data-act="restart"]`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "printer's pid changes after the click on restart",
		`(() => { const r = document.querySelector('tr[data-name="printer"]'); const pid = r.querySelector('.pid').textContent;
		  return r.dataset.status === 'online' && /^\d+$/.test(pid) && pid !== `+strconv.Quote(oldPID)+` })()`, 30*time.Second)
	newPID := evalString(t, ctx, `document.querySelector('tr[data-name="printer"] .pid').textContent`)
	if want := strconv.Itoa(pidOf(t, dir, env, "printer")); newPID != want {
		t.Fatalf("after restart the page shows pid %s, the daemon %s", newPID, want)
	}
	t.Logf("restart from the page: printer pid %s -> %s", oldPID, newPID)

	// Select printer: its log tail, then a line it prints now appears live.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-name="printer"] td.c-name`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "log pane follows printer", `document.querySelector('#logs-of').textContent.includes('printer')`, 10*time.Second)
	waitJS(t, ctx, "log tail shows printer's start line",
		`[...document.querySelectorAll('#logs .line')].some(l => l.textContent.includes('printer up'))`, 20*time.Second)
	// The log stream may open a moment after the pane shows the tail: append until the line shows.
	marker := fmt.Sprintf("hello-from-the-test-%d", time.Now().UnixNano())
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.OpenFile(msgs, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, marker)
		f.Close()
		seen := false
		pollEnd := time.Now().Add(3 * time.Second)
		for time.Now().Before(pollEnd) && !seen {
			seen, _ = chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll('#logs .line:not(.old)')].some(l => l.textContent.includes(`+strconv.Quote(marker)+`))`))
			time.Sleep(100 * time.Millisecond)
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the line %q the app printed never appeared in the log pane", marker)
		}
	}

	// The event timeline shows the restart; the charts are drawn; the secret is masked.
	waitJS(t, ctx, "events show printer's restart",
		`[...document.querySelectorAll('#events li')].some(l => l.textContent.includes('printer') && l.textContent.includes('restart'))`, 20*time.Second)
	waitJS(t, ctx, "charts drawn", `document.querySelectorAll('#chart-cpu svg, #chart-mem svg').length === 2`, 10*time.Second)
	waitJS(t, ctx, "env shows GREETING", `document.querySelector('#env').textContent.includes('hello')`, 10*time.Second)
	if html := evalString(t, ctx, `document.documentElement.outerHTML`); strings.Contains(html, "hunter2") {
		t.Error("the page holds the secret env value")
	}
	if !strings.Contains(evalString(t, ctx, `document.querySelector('#env').textContent`), "********") {
		t.Error("API_SECRET is not shown masked")
	}

	// The toolbar acts on the selection: scale the worker app +1 and -1; stop a worker (after the
	// confirmation dialog) and start it again.
	click := func(sel string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatalf("click %s: %v", sel, err)
		}
	}
	workers := `document.querySelectorAll('#procs tbody tr[data-name="worker"]')`
	click(`tr[data-name="worker"] td.c-name`)
	waitJS(t, ctx, "worker selected", `document.querySelector('#detail-h').textContent.startsWith('worker')`, 10*time.Second)
	click(`button[data-act="scale"][data-spec="+1"]`)
	waitJS(t, ctx, "3 workers after +1", workers+`.length === 3`, 30*time.Second)
	click(`button[data-act="scale"][data-spec="-1"]`)
	waitJS(t, ctx, "2 workers after -1", workers+`.length === 2`, 30*time.Second)
	click(`tr[data-name="worker"] td.c-name`)
	sel := evalString(t, ctx, `String(S.sel)`)
	row := `document.querySelector('tr[data-id="` + sel + `"]')`
	waitJS(t, ctx, "selected worker online", row+`.dataset.status === 'online'`, 30*time.Second)
	click(`button[data-act="stop"]`)
	waitJS(t, ctx, "confirmation asked", `document.querySelector('#confirm').open`, 10*time.Second)
	click(`#confirm-ok`)
	waitJS(t, ctx, "worker stopped", row+`.dataset.status === 'stopped'`, 30*time.Second)
	click(`button[data-act="start"]`)
	waitJS(t, ctx, "worker online again", row+`.dataset.status === 'online'`, 30*time.Second)

	// The page's own POST without the CSRF header is refused; with it, accepted (flush).
	codes, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`Promise.all([
		fetch('/api/action', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({action: 'flush', target: 'printer'})}).then(r => r.status),
		fetch('/api/action', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Corral-CSRF': S.csrf}, body: JSON.stringify({action: 'flush', target: 'printer'})}).then(r => r.status),
	])`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 2 || codes[0] != http.StatusForbidden || codes[1] != http.StatusOK {
		t.Errorf("POST from the page without / with the CSRF header: %v, want [403 200]", codes)
	}

	// A POST from another origin, with the cookie, the CSRF value and everything else right, is
	// refused; the same POST from the page's origin is not (so the refusal is the Origin's).
	cookie, csrf := signIn(t, link)
	for _, tc := range []struct {
		origin string
		want   int
	}{{"http://evil.example", http.StatusForbidden}, {"", http.StatusForbidden}, {base, http.StatusOK}} {
		code, body := postAction(t, base+"/api/action", cookie, csrf, tc.origin, `{"action":"flush","target":"worker"}`)
		if code != tc.want {
			t.Errorf("POST with Origin %q: %d %s, want %d", tc.origin, code, body, tc.want)
		}
	}
	if code, body := postAction(t, base+"/api/action", nil, csrf, base, `{"action":"restart","target":"all"}`); code != http.StatusUnauthorized {
		t.Errorf("POST without the cookie: %d %s, want 401", code, body)
	}

	// For the README's picture (CORRAL_WEB_SCREENSHOT set): an app that uses some CPU, selected
	// once its charts hold half a minute of samples.
	if os.Getenv("CORRAL_WEB_SCREENSHOT") != "" {
		writeFile(t, filepath.Join(dir, "crunch.sh"), "#!/bin/bash\necho crunching\nwhile :; do n=$(( RANDOM % 60000 + 20000 )); i=0\n"+
			"while [ $i -lt $n ]; do i=$((i+1)); done; echo \"batch of $n done\"; sleep 0.4; done\n", 0o755)
		corralIn(t, dir, env, "start", "./crunch.sh", "--name", "crunch")
		waitJS(t, ctx, "crunch listed", `!!document.querySelector('tr[data-name="crunch"]')`, 20*time.Second)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-name="crunch"] td.c-name`))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "half a minute of samples", `(S.hist.get(S.sel) || []).length >= 30`, 90*time.Second)
	}
	shot(t, ctx, "web-dashboard.png")
	dark := func(on bool) {
		t.Helper()
		v := "light"
		if on {
			v = "dark"
		}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	dark(true)
	shot(t, ctx, "web-dashboard-dark.png")
	dark(false)

	// Narrow window: the page still fits (no horizontal scroll of the whole page).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "no page-wide horizontal scroll at 390px", `document.documentElement.scrollWidth <= window.innerWidth + 1`, 10*time.Second)
	shot(t, ctx, "web-dashboard-narrow.png")

	// The link followed from another site (a page on another origin links to it): signed in all
	// the same (a Strict cookie set by an HTTP redirect would be withheld here).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 1000)); err != nil {
		t.Fatal(err)
	}
	viaLocalhost := strings.Replace(link, "127.0.0.1", "localhost", 1) // another site, same server
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><a id="go" href="%s">open the dashboard</a>`, viaLocalhost)
	}))
	defer other.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(other.URL)); err != nil {
		t.Fatal(err)
	}
	click(`#go`)
	waitJS(t, ctx, "signed in from a link on another site",
		`location.href === 'http://localhost:`+strconv.Itoa(port)+`/' && document.querySelectorAll('#procs tbody tr[data-name="printer"]').length === 1`, 30*time.Second)

	// The daemon dies (SIGKILL; the keeper starts another): the page reconnects by itself, with
	// the same cookie, and shows the same processes (the apps outlive the daemon).
	opens := evalString(t, ctx, `String(S.opens)`)
	printerPID := evalString(t, ctx, `document.querySelector('tr[data-name="printer"] .pid').textContent`)
	daemonPID, err := daemonproc.ReadPid(p.PidFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(daemonPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the page reconnected to the new daemon",
		`S.opens > `+opens+` && document.querySelector('#conn').classList.contains('live') &&
		 document.querySelector('tr[data-name="printer"] .pid').textContent === `+strconv.Quote(printerPID), 60*time.Second)

	// `corral web` again prints the same URL; --stop closes the port.
	if again, _ := startWebAgain(t, dir, env, port); again != link {
		t.Errorf("corral web again: %s, want the running dashboard's %s", again, link)
	}
	corralIn(t, dir, env, "web", "--stop")
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("the dashboard still answers after corral web --stop")
	}
	if _, err := os.Stat(filepath.Join(p.Home, "web.json")); !os.IsNotExist(err) {
		t.Errorf("web.json after --stop: %v", err)
	}
}

func startWebAgain(t *testing.T, dir string, env []string, port int) (string, string) {
	t.Helper()
	out := corralIn(t, dir, env, "web")
	m := webURLRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("corral web printed no URL:\n%s", out)
	}
	if !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Errorf("corral web: %s, want port %d", out, port)
	}
	return m[1], out
}

// shot saves a full-page PNG screenshot as a test artifact (and to $CORRAL_WEB_SCREENSHOT's
// directory when set).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	if d := os.Getenv("CORRAL_WEB_SCREENSHOT"); d != "" {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func pidOf(t *testing.T, dir string, env []string, name string) int {
	t.Helper()
	for _, p := range byName(jlist(t, dir, env), name) {
		return p.PID
	}
	t.Fatalf("no %s in jlist", name)
	return 0
}

// signIn follows the link as a plain HTTP client and returns the session cookie and CSRF value.
func signIn(t *testing.T, link string) (*http.Cookie, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(link)
	cookies := jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies after sign-in: %v", cookies)
	}
	resp, err = c.Get(u.Scheme + "://" + u.Host + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct{ CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.CSRF == "" {
		t.Fatalf("GET /api/session: %v %+v", err, s)
	}
	return cookies[0], s.CSRF
}

func postAction(t *testing.T, u string, cookie *http.Cookie, csrf, origin, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Corral-CSRF", csrf)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// The dashboard outlives its daemon: after a SIGKILL of the daemon (the keeper starts another) and
// after `corral kill` and a new daemon, it is served again on the same address, and a browser's
// cookie from before still signs it in (the setting and token are kept in web.json).
func TestWebSurvivesDaemonRestart(t *testing.T) {
	skipShort(t)
	p, env := testHome(t)
	dir := t.TempDir()
	eco, _ := webApps(t, dir)
	corralIn(t, dir, env, "start", eco)
	link, port := startWeb(t, dir, env)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cookie, _ := signIn(t, link)
	signedIn := func() bool {
		req, _ := http.NewRequest("GET", base+"/api/session", nil)
		req.AddCookie(cookie)
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !signedIn() {
		t.Fatal("not signed in at first")
	}

	old, err := daemonproc.ReadPid(p.PidFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the dashboard served by a new daemon, the old cookie valid", func() bool {
		pid, err := daemonproc.ReadPid(p.PidFile)
		return err == nil && pid != old && signedIn()
	})
	if again, _ := startWebAgain(t, dir, env, port); again != link {
		t.Errorf("after the daemon's SIGKILL: %s, want %s", again, link)
	}
	newPID, _ := daemonproc.ReadPid(p.PidFile)
	logb, _ := os.ReadFile(p.LogFile)
	if n := strings.Count(string(logb), "web dashboard restored"); n != 1 {
		t.Errorf("the daemon log says %d times that the dashboard was restored, want 1", n)
	}
	t.Logf("daemon %d killed; daemon %d serves the dashboard again", old, newPID)

	corralIn(t, dir, env, "kill")
	if signedIn() {
		t.Fatal("the dashboard answers after corral kill")
	}
	corralIn(t, dir, env, "ping") // a new daemon, not resurrected: the dashboard only
	testutil.WaitFor(t, 30*time.Second, "the dashboard served after corral kill and a new daemon", signedIn)
}

// `corral web --open` hands the URL to $BROWSER (here a script that records its argument).
func TestWebOpen(t *testing.T) {
	skipShort(t)
	_, env := testHome(t)
	dir := t.TempDir()
	got := filepath.Join(dir, "opened")
	writeFile(t, filepath.Join(dir, "browser.sh"), "#!/bin/sh\nprintf '%s' \"$1\" > "+got+".tmp && mv "+got+".tmp "+got+"\n", 0o755)
	port := testutil.FreePort(t)
	out := corralIn(t, dir, append(env, "BROWSER="+filepath.Join(dir, "browser.sh")), "web", "--port", strconv.Itoa(port), "--open")
	m := webURLRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("corral web --open printed no URL:\n%s", out)
	}
	var opened []byte
	testutil.WaitFor(t, 20*time.Second, "the browser script run with the URL", func() bool {
		var err error
		opened, err = os.ReadFile(got)
		return err == nil
	})
	if string(opened) != m[1] {
		t.Errorf("$BROWSER got %q, want %q", opened, m[1])
	}
}

// corralFails runs corral and returns its output, failing the test if it exits 0.
func corralFails(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
	cmd.Env, cmd.Dir = env, dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("corral %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

// The flags of `corral web`: --status, a non-loopback --host refused without --allow-remote and
// warned about with it, --new-token revoking the old link, --stop.
func TestWebCLIFlags(t *testing.T) {
	skipShort(t)
	_, env := testHome(t)
	dir := t.TempDir()
	if out := corralIn(t, dir, env, "web", "--status"); !strings.Contains(out, "web dashboard off") {
		t.Errorf("--status before: %s", out)
	}
	port := testutil.FreePort(t)
	out := corralFails(t, dir, env, "web", "--host", "0.0.0.0", "--port", strconv.Itoa(port))
	if !strings.Contains(out, "not a loopback address") || !strings.Contains(out, "--allow-remote") {
		t.Errorf("--host 0.0.0.0 without --allow-remote: %s", out)
	}
	if out := corralIn(t, dir, env, "web", "--status"); !strings.Contains(out, "web dashboard off") {
		t.Errorf("--status after a refused start: %s", out)
	}

	link, _ := startWeb(t, dir, env)
	out = corralIn(t, dir, env, "web", "--new-token")
	m := webURLRE.FindStringSubmatch(out)
	if m == nil || m[1] == link {
		t.Fatalf("--new-token: %s (old %s)", out, link)
	}
	for u, want := range map[string]int{link: http.StatusUnauthorized, m[1]: http.StatusOK} {
		resp, err := noRedirectClient.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s after --new-token: %s, want %d", u, resp.Status, want)
		}
	}

	out = corralIn(t, dir, env, "web", "--host", "0.0.0.0", "--allow-remote", "--port", strconv.Itoa(port))
	if !strings.Contains(out, "warning:") || !strings.Contains(out, "not a loopback address") {
		t.Errorf("--allow-remote: no warning:\n%s", out)
	}
	if out := corralIn(t, dir, env, "web", "--status"); !strings.Contains(out, "0.0.0.0:"+strconv.Itoa(port)) {
		t.Errorf("--status after the move: %s", out)
	}
	corralIn(t, dir, env, "web", "--stop")
	if out := corralIn(t, dir, env, "web", "--status"); !strings.Contains(out, "web dashboard off") {
		t.Errorf("--status after --stop: %s", out)
	}
}

var noRedirectClient = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}
