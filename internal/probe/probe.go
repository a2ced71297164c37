// Package probe runs the readiness and liveness checks of an app's instances (appspec.Probe): an
// HTTP GET, a TCP connect, a program's exit status, or a line of the process's output matching a
// pattern, repeated on a period with Kubernetes' thresholds.
//
// Check runs one check and says what it saw (the Output is what the daemon reports when a probe
// fails: the status line and the start of the body, the connect error, the program's output).
// Run repeats Check and calls its callback, on Run's goroutine, each time the probe's verdict
// changes. Nothing here takes a lock of the caller's.
package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// Target is what a probe checks: one instance of an app.
type Target struct {
	Probe *appspec.Probe
	// Port is used when the probe names none: the app's single port (its listen socket, its
	// PORT, or its cluster socket). 0 when unknown.
	Port int
	// Dial, when set, connects to the instance itself (a cluster worker held out of rotation is
	// reached this way); otherwise HTTP and TCP probes connect to host:port.
	Dial func(ctx context.Context) (net.Conn, error)
	// Dir and Env are the exec probe's working directory and environment.
	Dir string
	Env []string
	// Cred, when set, runs the exec probe as that user (the app's uid/gid).
	Cred *syscall.Credential
	// Lines is the log_line probe's matcher, fed with the process's output by the caller.
	Lines *LineMatcher
	// Start, when set, starts the exec probe's command instead of cmd.Start, and returns a
	// function to call once the command has been waited for (a supervisor that reaps orphaned
	// children registers the probe's pid this way, so that it is not reaped as one).
	Start func(cmd *exec.Cmd) (waited func(), err error)
}

// Result is the outcome of one check.
type Result struct {
	OK     bool
	Output string // what the check saw, one line, bounded
	At     time.Time
}

// maxOutput bounds a Result's Output.
const maxOutput = 300

// Describe says what the probe checks, for messages: "HTTP GET http://127.0.0.1:3000/health".
func Describe(t Target) string {
	p := t.Probe
	switch {
	case p.HTTPGet != nil:
		return "HTTP GET " + httpURL(t)
	case p.TCPSocket != nil:
		return "TCP connect " + tcpAddr(t)
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " ")
	case p.LogLine != "":
		return "log line /" + p.LogLine + "/"
	}
	return "no probe"
}

func host(h string) string {
	if h == "" {
		return "127.0.0.1"
	}
	return h
}

func port(p, def int) int {
	if p != 0 {
		return p
	}
	return def
}

func httpURL(t Target) string {
	h := t.Probe.HTTPGet
	scheme := strings.ToLower(h.Scheme)
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	return scheme + "://" + net.JoinHostPort(host(h.Host), strconv.Itoa(port(h.Port, t.Port))) + path
}

func tcpAddr(t Target) string {
	return net.JoinHostPort(host(t.Probe.TCPSocket.Host), strconv.Itoa(port(t.Probe.TCPSocket.Port, t.Port)))
}

// Check runs one check of t, bounded by the probe's timeout and ctx.
func Check(ctx context.Context, t Target) Result {
	ctx, cancel := context.WithTimeout(ctx, t.Probe.Timeout())
	defer cancel()
	var ok bool
	var out string
	switch p := t.Probe; {
	case p.HTTPGet != nil:
		ok, out = checkHTTP(ctx, t)
	case p.TCPSocket != nil:
		ok, out = checkTCP(ctx, t)
	case p.Exec != nil:
		ok, out = checkExec(ctx, t)
	case p.LogLine != "":
		ok, out = t.Lines.Check()
	default:
		out = "no check defined"
	}
	if len(out) > maxOutput {
		out = out[:maxOutput] + "…"
	}
	return Result{OK: ok, Output: out, At: time.Now()}
}

func checkHTTP(ctx context.Context, t Target) (bool, string) {
	h := t.Probe.HTTPGet
	url := httpURL(t)
	if (h.Port == 0 && t.Port == 0) && t.Dial == nil {
		return false, "HTTP GET " + url + ": no port (set http_get.port: the app has no single port)"
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as Kubernetes: the probe checks health, not identity
	}
	if t.Dial != nil && h.Host == "" && h.Port == 0 {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return t.Dial(ctx) }
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, "HTTP GET " + url + ": " + err.Error()
	}
	req.Header.Set("User-Agent", "corral-probe")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return false, "HTTP GET " + url + ": " + unwrapURLError(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	out := fmt.Sprintf("HTTP GET %s: %s", url, resp.Status)
	if b := strings.Join(strings.Fields(string(body)), " "); b != "" {
		out += ": " + b
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 400, out
}

func unwrapURLError(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap().Error()
	}
	return err.Error()
}

func checkTCP(ctx context.Context, t Target) (bool, string) {
	addr := tcpAddr(t)
	tp := t.Probe.TCPSocket
	var c net.Conn
	var err error
	switch {
	case t.Dial != nil && tp.Host == "" && tp.Port == 0:
		c, err = t.Dial(ctx)
	case tp.Port == 0 && t.Port == 0:
		return false, "TCP connect " + addr + ": no port (set tcp_socket.port: the app has no single port)"
	default:
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return false, "TCP connect " + addr + ": " + err.Error()
	}
	c.Close()
	return true, "TCP connect " + addr + ": connected"
}

func checkExec(ctx context.Context, t Target) (bool, string) {
	argv := t.Probe.Exec.Command
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = t.Dir, t.Env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limited{w: &out, n: 4096}, &limited{w: &out, n: 4096}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: t.Cred}
	waited := func() {}
	start := t.Start
	if start == nil {
		start = func(cmd *exec.Cmd) (func(), error) { return waited, cmd.Start() }
	}
	waited, err := start(cmd)
	if err != nil {
		return false, "exec " + argv[0] + ": " + err.Error()
	}
	defer waited()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the program and what it started
		<-done
		return false, fmt.Sprintf("exec %s: timed out after %v: %s", argv[0], context.Cause(ctx), oneLine(out.String()))
	}
	text := oneLine(out.String())
	if err != nil {
		return false, fmt.Sprintf("exec %s: %v: %s", argv[0], err, text)
	}
	return true, fmt.Sprintf("exec %s: exit status 0: %s", argv[0], text)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// limited writes at most n bytes to w and drops the rest (a chatty probe cannot fill memory).
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// LineMatcher remembers whether a line of output has matched a pattern. Feed and Check may be
// called from different goroutines.
type LineMatcher struct {
	re      *regexp.Regexp
	mu      sync.Mutex
	matched string
	seen    int
}

// NewLineMatcher compiles pattern (validated by appspec.Probe.Validate).
func NewLineMatcher(pattern string) (*LineMatcher, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return &LineMatcher{re: re}, nil
}

// Feed offers one line of output.
func (l *LineMatcher) Feed(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen++
	if l.matched == "" && l.re.MatchString(line) {
		l.matched = line
		if l.matched == "" {
			l.matched = " "
		}
	}
}

// Check reports whether a line has matched yet.
func (l *LineMatcher) Check() (bool, string) {
	if l == nil {
		return false, "log line: no output followed"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.matched != "" {
		return true, fmt.Sprintf("log line /%s/ matched: %s", l.re, strings.TrimSpace(l.matched))
	}
	return false, fmt.Sprintf("log line /%s/: no match in %d lines", l.re, l.seen)
}

// Verdict is a probe's state after its thresholds.
type Verdict struct {
	Passing bool   // Successes consecutive successes (true) or Failures consecutive failures (false)
	Last    Result // the check that decided it
	// Failures is the number of consecutive failures so far.
	Failures int
}

// Run checks t after the probe's initial delay and then every period until ctx ends. It calls
// changed, on Run's goroutine, when the verdict changes: passing after success_threshold
// consecutive successes, failing after failure_threshold consecutive failures (the first verdict
// may be either). each, if not nil, sees every result.
func Run(ctx context.Context, t Target, changed func(Verdict), each func(Result)) {
	p := t.Probe
	if !sleep(ctx, p.InitialDelay()) {
		return
	}
	var state *bool
	okRun, failRun := 0, 0
	tick := time.NewTicker(p.Period())
	defer tick.Stop()
	for {
		r := Check(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if each != nil {
			each(r)
		}
		if r.OK {
			okRun, failRun = okRun+1, 0
			if okRun >= p.Successes() && (state == nil || !*state) {
				v := true
				state = &v
				changed(Verdict{Passing: true, Last: r})
			}
		} else {
			okRun, failRun = 0, failRun+1
			if failRun >= p.Failures() && (state == nil || *state) {
				v := false
				state = &v
				changed(Verdict{Passing: false, Last: r, Failures: failRun})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
