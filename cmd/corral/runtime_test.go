package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineStream collects the lines a process writes and lets a test wait for one.
type lineStream struct {
	ch   chan string   // the lines not yet looked at
	eof  chan struct{} // closed once the writer closed its end
	mu   sync.Mutex
	seen []string
}

func newLineStream(r io.Reader) *lineStream {
	s := &lineStream{ch: make(chan string, 4096), eof: make(chan struct{})}
	go func() {
		defer close(s.eof)
		defer close(s.ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			s.ch <- sc.Text()
		}
	}()
	return s
}

func (s *lineStream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, "\n")
}

// wait returns the submatches of the next line matching re.
func (s *lineStream) wait(t *testing.T, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.ch:
			if !ok {
				t.Fatalf("stream ended before a line matching %q; got:\n%s", re, s)
			}
			s.mu.Lock()
			s.seen = append(s.seen, l)
			s.mu.Unlock()
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %q after %v; got:\n%s", re, timeout, s)
		}
	}
}

// drain reads the stream to its end (the process has exited).
func (s *lineStream) drain() string {
	for l := range s.ch {
		s.mu.Lock()
		s.seen = append(s.seen, l)
		s.mu.Unlock()
	}
	return s.String()
}

// runtimeProc is a corral runtime started in its own process group.
type runtimeProc struct {
	cmd            *exec.Cmd
	stdout, stderr *lineStream
	exited         chan struct{}
	err            error
}

// startRuntime runs prog (the corral binary or a corral-runtime link) with
// args in its own process group; everything is killed when the test ends.
func startRuntime(t *testing.T, prog string, env []string, args ...string) *runtimeProc {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &runtimeProc{cmd: cmd, stdout: newLineStream(stdout), stderr: newLineStream(stderr), exited: make(chan struct{})}
	go func() {
		// Wait closes the pipes, so it may only run once both are read to the end.
		<-r.stdout.eof
		<-r.stderr.eof
		r.err = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
		}
	})
	return r
}

// exitCode waits for the runtime to exit and returns its exit status.
func (r *runtimeProc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(timeout):
		t.Fatalf("runtime still runs after %v\nstdout:\n%s\nstderr:\n%s", timeout, r.stdout, r.stderr)
	}
	var ee *exec.ExitError
	switch {
	case r.err == nil:
		return 0
	case errors.As(r.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("runtime: %v", r.err)
	return -1
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// gone waits (polling: there is no event for it) until kill(pid, 0) fails
// with ESRCH; a negative pid names a process group.
func gone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
}

func examplesDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../examples/node")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// corral runtime runs a cluster app in the foreground with probes on a free
// port; SIGTERM stops every app gracefully and the runtime exits 0 with no
// process left behind.
func TestRuntimeClusterSIGTERM(t *testing.T) {
	needNode(t)
	port := freePort(t)
	env := append(os.Environ(), "PORT="+strconv.Itoa(port), "CORRAL_HOME=") // private temporary home
	r := startRuntime(t, filepath.Join(binDir, "corral"), env,
		"runtime", "start", filepath.Join(examplesDir(t), "graceful.js"), "-i", "2", "--port", "0")

	probe := r.stderr.wait(t, `^corral-runtime: probes on (\S+)$`, 20*time.Second)[1]
	_, probePort, err := net.SplitHostPort(probe)
	if err != nil {
		t.Fatalf("probe address %q: %v", probe, err)
	}
	pids := map[string]bool{}
	for len(pids) < 2 {
		m := r.stdout.wait(t, `^([01])\|graceful \| graceful\.js (\d+) listening on (\d+)$`, 20*time.Second)
		if m[3] != strconv.Itoa(port) {
			t.Fatalf("worker listens on %s, want %d", m[3], port)
		}
		pids[m[2]] = true
	}
	base := "http://127.0.0.1:" + probePort
	if body := httpGet(t, base+"/healthz", 200); !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %q", body)
	}
	// The instances are online once they listen; /readyz follows the daemon's view.
	deadline := time.Now().Add(10 * time.Second)
	for code, body := httpStatus(t, base+"/readyz"); code != 200; code, body = httpStatus(t, base+"/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 200); body != "hello world" {
		t.Errorf("app answered %q", body)
	}

	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\nstderr:\n%s", code, r.stderr.drain())
	}
	for pid := range pids {
		n, _ := strconv.Atoi(pid)
		if !gone(n, 5*time.Second) {
			t.Errorf("worker %d still exists", n)
			syscall.Kill(n, syscall.SIGKILL)
		}
	}
	if !gone(-r.cmd.Process.Pid, 5*time.Second) {
		t.Errorf("process group %d still has processes", r.cmd.Process.Pid)
	}
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	code, body := httpStatus(t, url)
	if code != want {
		t.Fatalf("GET %s: %d %s, want %d", url, code, body, want)
	}
	return body
}

// runtimeLink returns a corral-runtime symbolic link to the corral binary.
func runtimeLink(t *testing.T) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "corral-runtime")
	if err := os.Symlink(filepath.Join(binDir, "corral"), link); err != nil {
		t.Fatal(err)
	}
	return link
}

// Invoked as corral-runtime, the runtime exits with the exit code of an app
// that crashed without autorestart; --json prints JSON log lines.
func TestRuntimeLinkCrashExitCode(t *testing.T) {
	needNode(t)
	env := append(os.Environ(), "CRASH_CODE=7", "CORRAL_HOME=")
	r := startRuntime(t, runtimeLink(t), env, filepath.Join(examplesDir(t), "crash.js"), "--no-autorestart", "--json")
	if code := r.exitCode(t, 20*time.Second); code != 7 {
		t.Fatalf("exit code %d, want 7\nstderr:\n%s", code, r.stderr.drain())
	}
	out := r.stdout.drain()
	if !regexp.MustCompile(`(?m)^\{.*"message":"crash\.js \d+ started".*"app_name":"crash".*\}$`).MatchString(out) {
		t.Errorf("no JSON start line:\n%s", out)
	}
	if !gone(-r.cmd.Process.Pid, 5*time.Second) {
		t.Errorf("process group %d still has processes", r.cmd.Process.Pid)
	}
}

// `corral-runtime start <ecosystem file> --only` runs only the selected app
// (the other one never exits, so the runtime could not auto-exit) with the
// file's environment, and exits with its code.
func TestRuntimeLinkEcosystemOnly(t *testing.T) {
	needNode(t)
	dir := t.TempDir()
	eco := fmt.Sprintf(`{"apps": [
  {"name": "crasher", "script": %q, "autorestart": false, "env": {"CRASH_CODE": "5"}},
  {"name": "forever", "script": %q}
]}`, filepath.Join(examplesDir(t), "crash.js"), filepath.Join(examplesDir(t), "app.js"))
	path := filepath.Join(dir, "eco.json")
	if err := os.WriteFile(path, []byte(eco), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "CORRAL_HOME="+filepath.Join(dir, "home"), "PORT=0")
	r := startRuntime(t, runtimeLink(t), env, "start", path, "--only", "crasher", "--raw")
	if code := r.exitCode(t, 20*time.Second); code != 5 {
		t.Fatalf("exit code %d, want 5\nstdout:\n%s\nstderr:\n%s", code, r.stdout.drain(), r.stderr.drain())
	}
	out := r.stdout.drain()
	if !regexp.MustCompile(`(?m)^crash\.js \d+ started$`).MatchString(out) || strings.Contains(out, "app.js") {
		t.Errorf("--raw output:\n%s", out)
	}
	// CORRAL_HOME was set: the runtime kept its logs there.
	if _, err := os.Stat(filepath.Join(dir, "home", "logs")); err != nil {
		t.Errorf("CORRAL_HOME not used: %v", err)
	}
}

// Bad input fails before anything is started.
func TestRuntimeBadInput(t *testing.T) {
	env := append(os.Environ(), "CORRAL_HOME=")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"runtime", "start"}, "no script or ecosystem file given"},
		{[]string{"runtime", "start", "nope.js"}, "script not found"},
		{[]string{"runtime", "start", "x.js", "--port", "http"}, `--port "http"`},
		{[]string{"runtime", "start", "x.js", "--raw", "--json"}, "exclude each other"},
	} {
		cmd := exec.Command(filepath.Join(binDir, "corral"), tc.args...)
		cmd.Env = env
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("corral %s: %v %q, want an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}
