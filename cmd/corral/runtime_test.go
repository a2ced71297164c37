package main

import (
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
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// startRuntime runs prog (the corral binary or a corral-runtime link) with args in its own process
// group, stdout and stderr merged; the whole group is killed and reaped when the test ends.
func startRuntime(t *testing.T, prog string, env []string, args ...string) *testutil.Proc {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = env
	return testutil.Start(t, cmd)
}

// waitMatch waits for a line matching re and returns its submatches.
func waitMatch(t *testing.T, p *testutil.Proc, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	return rx.FindStringSubmatch(p.WaitLine(t, timeout, fmt.Sprintf("a line matching %q", re), rx.MatchString))
}

// exitCode waits for the runtime to exit and returns its exit status.
func exitCode(t *testing.T, p *testutil.Proc, timeout time.Duration) int {
	t.Helper()
	err := p.Wait(t, timeout)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("runtime: %v", err)
	return -1
}

// gone waits (polling: there is no event for it) until kill(pid, 0) fails
// with ESRCH; a negative pid names a process group.
func gone(pid int, timeout time.Duration) bool {
	return testutil.Eventually(timeout, func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
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
	nodetest.Node(t)
	port := testutil.FreePort(t)
	env := append(os.Environ(), "PORT="+strconv.Itoa(port), "CORRAL_HOME=") // private temporary home
	r := startRuntime(t, filepath.Join(binDir, "corral"), env,
		"runtime", "start", filepath.Join(examplesDir(t), "graceful.js"), "-i", "2", "--port", "0")

	probe := waitMatch(t, r, `^corral-runtime: probes on (\S+)$`, 20*time.Second)[1]
	_, probePort, err := net.SplitHostPort(probe)
	if err != nil {
		t.Fatalf("probe address %q: %v", probe, err)
	}
	listening := regexp.MustCompile(`^([01])\|graceful \| graceful\.js (\d+) listening on (\d+)$`)
	pids := map[string]bool{}
	for len(pids) < 2 {
		m := listening.FindStringSubmatch(r.WaitLine(t, 20*time.Second, "another worker listening", func(l string) bool {
			m := listening.FindStringSubmatch(l)
			return m != nil && !pids[m[2]]
		}))
		if m[3] != strconv.Itoa(port) {
			t.Fatalf("worker listens on %s, want %d", m[3], port)
		}
		pids[m[2]] = true
	}
	base := "http://127.0.0.1:" + probePort
	if body := httpGet(t, base+"/healthz", 200); !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %q", body)
	}
	// The instances are online once they listen; /readyz follows the daemon's view (polled: the
	// probe is the interface under test).
	var code int
	var body string
	if !testutil.Eventually(10*time.Second, func() bool {
		code, body = httpStatus(t, base+"/readyz")
		return code == 200
	}) {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 200); body != "hello world" {
		t.Errorf("app answered %q", body)
	}

	if err := r.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, r, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	for pid := range pids {
		n, _ := strconv.Atoi(pid)
		if !gone(n, 5*time.Second) {
			t.Errorf("worker %d still exists", n)
			syscall.Kill(n, syscall.SIGKILL)
		}
	}
	if !gone(-r.Cmd.Process.Pid, 5*time.Second) {
		t.Errorf("process group %d still has processes", r.Cmd.Process.Pid)
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
	nodetest.Node(t)
	env := append(os.Environ(), "CRASH_CODE=7", "CORRAL_HOME=")
	r := startRuntime(t, runtimeLink(t), env, filepath.Join(examplesDir(t), "crash.js"), "--no-autorestart", "--json")
	if code := exitCode(t, r, 20*time.Second); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
	waitMatch(t, r, `^\{.*"message":"crash\.js \d+ started".*"app_name":"crash".*\}$`, 5*time.Second)
	if !gone(-r.Cmd.Process.Pid, 5*time.Second) {
		t.Errorf("process group %d still has processes", r.Cmd.Process.Pid)
	}
}

// `corral-runtime start <ecosystem file> --only` runs only the selected app
// (the other one never exits, so the runtime could not auto-exit) with the
// file's environment, and exits with its code.
func TestRuntimeLinkEcosystemOnly(t *testing.T) {
	nodetest.Node(t)
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
	if code := exitCode(t, r, 20*time.Second); code != 5 {
		t.Fatalf("exit code %d, want 5", code)
	}
	waitMatch(t, r, `^crash\.js \d+ started$`, 5*time.Second)
	if out := r.Output(); strings.Contains(out, "app.js") {
		t.Errorf("the app not selected by --only ran:\n%s", out)
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

// `corral runtime --json` prints an app's lines exactly as its log files with log_type json hold
// them (one encoder, logs.WriteJSON): PM2's fields in PM2's order, Date.toISOString's timestamp, and
// nothing HTML-escaped.
func TestRuntimeJSONLinesAreLogFileLines(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "say")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho '<b>\"out\" & é</b>'\necho '<i>err & é</i>' >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	outLog, errLog := filepath.Join(dir, "say-out.log"), filepath.Join(dir, "say-err.log")
	env := append(os.Environ(), "CORRAL_HOME="+filepath.Join(dir, "home"))
	r := startRuntime(t, filepath.Join(binDir, "corral"), env, "runtime", "start", script, "--interpreter", "none",
		"--no-autorestart", "--log-type", "json", "--output", outLog, "--error", errLog, "--json")
	if code := exitCode(t, r, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	stamp := regexp.MustCompile(`"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"`)
	for _, tc := range []struct{ stream, file, want string }{
		{"out", outLog, `{"message":"<b>\"out\" & é</b>","timestamp":"T","type":"out","process_id":0,"app_name":"say"}`},
		{"err", errLog, `{"message":"<i>err & é</i>","timestamp":"T","type":"err","process_id":0,"app_name":"say"}`},
	} {
		printed := r.WaitLine(t, 5*time.Second, "the JSON "+tc.stream+" line", func(l string) bool {
			return strings.HasPrefix(l, "{") && strings.Contains(l, `"type":"`+tc.stream+`"`)
		})
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		logged := strings.TrimSuffix(string(b), "\n")
		for what, line := range map[string]string{"printed": printed, "logged": logged} {
			if !stamp.MatchString(line) {
				t.Errorf("%s %s line: timestamp not toISOString's: %s", what, tc.stream, line)
			}
			if got := stamp.ReplaceAllString(line, `"timestamp":"T"`); got != tc.want {
				t.Errorf("%s %s line (timestamp replaced by T):\ngot  %s\nwant %s", what, tc.stream, got, tc.want)
			}
		}
	}
}
