package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// drainPackages are the npm packages the drain tests run (real apps, not imitations).
var drainPackages = []string{"express@4", "fastify@5", "koa@2"}

// drainModules returns the node_modules directory holding drainPackages, installing them with npm
// into <module root>/.cache/drain-apps on first use (`bash .ci/run setup` installs them too). Without
// npm or the network it skips t, or fails it under CI.
func drainModules(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	dir := filepath.Join(root, ".cache", "drain-apps")
	mods := filepath.Join(dir, "node_modules")
	have := func() bool {
		for _, p := range drainPackages {
			name := p[:strings.LastIndex(p, "@")]
			if _, err := os.Stat(filepath.Join(mods, name, "package.json")); err != nil {
				return false
			}
		}
		return true
	}
	if have() {
		return mods
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		if nodetest.InCI() {
			t.Fatalf("npm not found: %v", err)
		}
		t.Skipf("npm not found (%v); run `bash .ci/run setup`", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"install", "--prefix", dir, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"}, drainPackages...)
	if out, err := exec.CommandContext(ctx, npm, args...).CombinedOutput(); err != nil || !have() {
		msg := fmt.Sprintf("npm install %s: %v\n%s", strings.Join(drainPackages, " "), err, out)
		if nodetest.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg + "\n(npm unreachable? run `bash .ci/run setup` with network once)")
	}
	return mods
}

// drainLoad is keep-alive traffic: conns clients, each on its own connection, each sending a POST
// (never retried by Go's client) every interval.
type drainLoad struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	failed []string // each failure: reused connection or not, and the error
	reused int      // failures on a connection that had served a request before
	pids   map[string]bool
}

func newDrainTransport(h2 bool) *http.Transport {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	if h2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr
}

func startDrainLoad(url string, conns int, interval time.Duration, h2 bool) *drainLoad {
	l := &drainLoad{stop: make(chan struct{}), pids: map[string]bool{}}
	for range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := newDrainTransport(h2)
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				reused := false
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", url, strings.NewReader("x"))
				req.Header.Set("Content-Type", "text/plain")
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.mu.Lock()
					l.failed = append(l.failed, fmt.Sprintf("reused=%v: %v", reused, err))
					if reused {
						l.reused++
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				l.pids[resp.Header.Get("X-Worker-Pid")] = true
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// waitOK waits until n more requests have succeeded.
func (l *drainLoad) waitOK(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d more answered requests", n), func() bool { return l.ok.Load() >= target })
}

func (l *drainLoad) finish() (ok int64, failed []string, reused int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed, l.reused
}

// stream sends GET /stream on its own connection and returns the body, or the error.
func stream(url string, h2 bool) <-chan string {
	out := make(chan string, 1)
	go func() {
		c := &http.Client{Transport: newDrainTransport(h2), Timeout: 20 * time.Second}
		resp, err := c.Get(url + "stream")
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			out <- fmt.Sprintf("error after %d bytes: %v", len(b), err)
			return
		}
		out <- string(b)
	}()
	return out
}

// drainCase is one app of the matrix.
type drainCase struct {
	name, script string
	h2           bool
	sigint       bool // the app logs "sigint handler ran in <pid>" from its own SIGINT handler
	env          []string
}

var drainCases = []drainCase{
	{name: "plain", script: "plain.js", sigint: true, env: []string{"SIGINT_HANDLER=1"}},
	{name: "express", script: "express.js", sigint: true},
	{name: "fastify", script: "fastify.js"},
	{name: "koa", script: "koa.js"},
	{name: "http2", script: "h2.js", h2: true},
}

// TestDrainKeepAlive runs real apps (plain http, Express 4, Fastify 5, Koa 2, HTTP/2) in cluster
// mode under keep-alive traffic and requires: a reload and a scale-down fail no request, a
// 3-second streaming response in flight during the reload completes, a stop fails no request on a
// kept-alive connection (only new connections, once nothing listens, are refused), the apps' own
// SIGINT handlers run, and `show` and the event feed report the drains. -short: one Node line;
// the full pass: every line.
func TestDrainKeepAlive(t *testing.T) {
	mods := drainModules(t)
	lines := map[string]string{}
	if testing.Short() {
		lines["22"] = nodetest.LineBinary(nodetest.LinesDir(), "22")
		if _, err := os.Stat(lines["22"]); err != nil {
			lines = map[string]string{"path": nodetest.Node(t)}
		}
	} else {
		lines = nodetest.Lines(t)
	}
	majors := make([]string, 0, len(lines))
	for m := range lines {
		majors = append(majors, m)
	}
	sort.Strings(majors)
	for _, major := range majors {
		for _, c := range drainCases {
			t.Run("node"+major+"/"+c.name, func(t *testing.T) { testDrainApp(t, lines[major], mods, c) })
		}
	}
}

func testDrainApp(t *testing.T, node, mods string, c drainCase) {
	p, env := testHome(t)
	port := testutil.FreePort(t)
	script, err := filepath.Abs(filepath.Join("testdata", "drain", c.script))
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"NODE_PATH="+mods, "PORT="+strconv.Itoa(port), "STREAM_MS=3000")
	env = append(env, c.env...)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	corral(t, env, "start", script, "-i", "2", "--name", "web", "--kill-timeout", "8000", "--drain-timeout", "6000", "--listen-timeout", "20000")
	answers := testutil.Eventually(40*time.Second, func() bool {
		c := &http.Client{Transport: newDrainTransport(c.h2), Timeout: time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if !answers {
		var logs strings.Builder
		files, _ := filepath.Glob(filepath.Join(p.Home, "logs", "*.log"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			fmt.Fprintf(&logs, "--- %s\n%s\n", filepath.Base(f), tail(string(b), 2000))
		}
		t.Fatalf("the app does not answer on %s after 40 s:\n%s\n%s", url, corral(t, env, "ls"), logs.String())
	}

	load := startDrainLoad(url, 8, 40*time.Millisecond, c.h2)
	load.waitOK(t, 40)
	st := stream(url, c.h2)
	load.waitOK(t, 10)
	corral(t, env, "reload", "web")
	load.waitOK(t, 40)
	corral(t, env, "scale", "web", "1")
	load.waitOK(t, 40)
	ok, failed, _ := load.finish()
	t.Logf("reload + scale-down under keep-alive load: %d ok, %d failed", ok, len(failed))
	if len(failed) > 0 {
		t.Errorf("reload and scale-down under keep-alive load: %d of %d requests failed: %s", len(failed), ok+int64(len(failed)), strings.Join(failed[:min(len(failed), 10)], "; "))
	}
	select {
	case body := <-st:
		if !strings.HasSuffix(body, "done\n") {
			t.Errorf("the 3 s stream in flight during the reload: %q", tail(body, 200))
		}
	case <-time.After(20 * time.Second):
		t.Error("the 3 s stream in flight during the reload never ended")
	}

	// Stop under load: no request fails on a kept-alive connection. And the deterministic case:
	// a connection idle when the stop begins still gets its next request answered, with
	// Connection: close (without the drain Node closes it at once).
	var probe *idleProbe
	if !c.h2 {
		probe = newIdleProbe(t, port)
	}
	load = startDrainLoad(url, 8, 40*time.Millisecond, c.h2)
	load.waitOK(t, 40)
	stopped := make(chan string, 1)
	go func() {
		cmd := exec.Command(filepath.Join(binDir, "corral"), "stop", "web")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			out = append(out, []byte(err.Error())...)
		}
		stopped <- string(out)
	}()
	if probe != nil {
		testutil.WaitFor(t, 10*time.Second, "instance 0 stopping", func() bool {
			cmd := exec.Command(filepath.Join(binDir, "corral"), "jlist")
			cmd.Env = env
			out, err := cmd.Output()
			return err == nil && strings.Contains(string(out), `"status":"stopping"`)
		})
		// "stopping" comes as the stop request is sent, a moment before the app reacts: keep using
		// the connection until the answer says Connection: close; none may fail.
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := probe.request()
			if !strings.HasPrefix(got, "HTTP/1.1 200") {
				t.Errorf("a request on a connection open when the stop began: %q, want a 200", tail(got, 300))
				break
			}
			if strings.Contains(strings.ToLower(got), "connection: close") {
				break
			}
			if time.Now().After(deadline) {
				t.Error("no Connection: close on a kept-alive connection 10 s after the stop began")
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	<-stopped
	ok, failed, reused := load.finish()
	t.Logf("stop under keep-alive load: %d ok, %d failed on new connections (nothing listens), %d on kept-alive ones", ok, len(failed)-reused, reused)
	if reused > 0 {
		t.Errorf("stop under keep-alive load: %d requests failed on a kept-alive connection (of %d failed, %d ok): %s", reused, len(failed), ok, strings.Join(failed[:min(len(failed), 10)], "; "))
	}

	show := corral(t, env, "show", "0")
	if !strings.Contains(show, "connections drained") {
		t.Errorf("show 0 reports no drain:\n%s", show)
	}
	evs := corral(t, env, "events", "--json", "--nostream")
	drains, drained := 0, int64(0)
	sc := bufio.NewScanner(strings.NewReader(evs))
	for sc.Scan() {
		var e struct {
			Type string           `json:"type"`
			Data map[string]int64 `json:"data"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "drain" {
			drains++
			drained += e.Data["drained"]
			if e.Data["cut"] != 0 {
				t.Errorf("a drain cut connections: %s", sc.Text())
			}
		}
	}
	t.Logf("%d drain events, %d connections drained in all", drains, drained)
	// 2 reloaded, 1 scaled down, 1 stopped.
	if drains < 4 {
		t.Errorf("%d drain events, want 4 (2 reloaded instances, 1 scaled down, 1 stopped):\n%s", drains, evs)
	}
	if c.sigint {
		logs, _ := filepath.Glob(filepath.Join(p.Home, "logs", "web-out*.log"))
		ran := 0
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			ran += strings.Count(string(b), "sigint handler ran in")
		}
		if ran < 4 {
			t.Errorf("the app's SIGINT handler ran %d times, want 4 (one per stopped process)", ran)
		}
	}
}

// TestDrainListenAndForkModes: a plain Node app behind --listen (the daemon's socket, fd 3) is
// reloaded under keep-alive load without a failed request and reports its drains; in fork mode
// with PORT the drain is on too, and a stop is reported.
func TestDrainListenAndForkModes(t *testing.T) {
	node := nodetest.LineBinary(nodetest.LinesDir(), "22")
	if _, err := os.Stat(node); err != nil {
		node = nodetest.Node(t)
	}
	_, env := testHome(t)
	port := testutil.FreePort(t)
	script, _ := filepath.Abs(filepath.Join("testdata", "drain", "plain.js"))
	env = append(env, "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	corral(t, env, "start", script, "-i", "2", "--name", "lsn", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--listen-timeout", "20000")
	load := startDrainLoad(url, 8, 40*time.Millisecond, false)
	load.waitOK(t, 40)
	corral(t, env, "reload", "lsn")
	load.waitOK(t, 40)
	corral(t, env, "reload", "lsn")
	load.waitOK(t, 40)
	ok, failed, _ := load.finish()
	if len(failed) > 0 {
		t.Errorf("listen mode, 2 reloads under keep-alive load: %d of %d failed: %s", len(failed), ok+int64(len(failed)), strings.Join(failed[:min(len(failed), 10)], "; "))
	}
	if evs := corral(t, env, "events", "lsn", "--json", "--nostream"); strings.Count(evs, `"type":"drain"`) < 4 {
		t.Errorf("listen mode: want 4 drain events (2 instances x 2 reloads):\n%s", evs)
	}

	fport := testutil.FreePort(t)
	corral(t, append(env, "PORT="+strconv.Itoa(fport)), "start", script, "--name", "fork")
	probe := func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", fport))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}
	testutil.WaitFor(t, 10*time.Second, "the fork app answers", probe)
	corral(t, env, "stop", "fork")
	if show := corral(t, env, "show", "fork"); !strings.Contains(show, "connections drained") {
		t.Errorf("fork mode with PORT: no drain reported:\n%s", show)
	}
}

// idleProbe is a raw keep-alive connection that has served one request.
type idleProbe struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newIdleProbe(t *testing.T, port int) *idleProbe {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &idleProbe{t: t, conn: conn, r: bufio.NewReader(conn)}
	if got := p.request(); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("probe's first request: %q", got)
	}
	return p
}

// request sends GET / and returns the response's head (or the error).
func (p *idleProbe) request() string {
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(p.conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "write: " + err.Error()
	}
	resp, err := http.ReadResponse(p.r, nil)
	if err != nil {
		return "read: " + err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %s\r\n", resp.Status)
	if resp.Close {
		b.WriteString("Connection: close\r\n")
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
