package nodetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The example apps in examples/node are run for real, on the machine's node and on every Node line.

const waitFor = 15 * time.Second

// app is a running example app.
type app struct {
	cmd   *exec.Cmd
	lines chan string   // stdout, line by line; closed at EOF
	ipc   *os.File      // the parent's end of the IPC channel, if any
	done  chan struct{} // closed once stdout hit EOF and the process has been waited for
}

// start runs the example script under node with env added to the environment and, with ipc, a Node IPC
// channel on fd 3. The process is killed and reaped at cleanup.
func start(t *testing.T, node, script string, ipc bool, env ...string) *app {
	t.Helper()
	a := &app{cmd: exec.Command(node, Example(t, script)), lines: make(chan string, 256), done: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stderr = &testWriter{t: t, prefix: script + ": "}
	if ipc {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socketpair: %v", err)
		}
		// Non-blocking, so that os.NewFile puts it on the poller and read deadlines work.
		if err := syscall.SetNonblock(fds[0], true); err != nil {
			t.Fatalf("set non-blocking: %v", err)
		}
		a.ipc = os.NewFile(uintptr(fds[0]), "ipc-parent")
		child := os.NewFile(uintptr(fds[1]), "ipc-child")
		defer child.Close()
		t.Cleanup(func() { a.ipc.Close() })
		a.cmd.ExtraFiles = []*os.File{child}
		a.cmd.Env = append(a.cmd.Env, "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json")
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s %s: %v", node, script, err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case a.lines <- sc.Text():
			default: // nobody is reading this much output; drop it
			}
		}
		close(a.lines)
		_ = a.cmd.Wait() // the exit status is read from cmd.ProcessState
	}()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		select {
		case <-a.done:
		case <-time.After(waitFor):
			t.Errorf("%s (pid %d) not reaped %v after SIGKILL", script, a.cmd.Process.Pid, waitFor)
		}
	})
	return a
}

// testWriter logs what a process writes to stderr.
type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// expect waits for a stdout line matching re and returns its submatches.
func (a *app) expect(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-a.lines:
			if !ok {
				t.Fatalf("stdout closed before a line matching %q", re)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timer.C:
			t.Fatalf("no stdout line matching %q within %v", re, waitFor)
		}
	}
}

// port waits for the "<script> <pid> listening on <port>" line and returns the port.
func (a *app) port(t *testing.T) int {
	t.Helper()
	m := a.expect(t, `^\S+\.js (\d+) listening on (\d+)$`)
	if m[1] != strconv.Itoa(a.cmd.Process.Pid) {
		t.Errorf("listening line names pid %s, want %d", m[1], a.cmd.Process.Pid)
	}
	p, err := strconv.Atoi(m[2])
	if err != nil || p <= 0 {
		t.Fatalf("bad port in %q", m[0])
	}
	return p
}

// exit waits for the process to exit and returns its exit code (-1 if killed by a signal).
func (a *app) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-a.done:
		return a.cmd.ProcessState.ExitCode()
	case <-time.After(waitFor):
		t.Fatalf("process did not exit within %v", waitFor)
		return 0
	}
}

// send writes one IPC message.
func (a *app) send(t *testing.T, msg any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ipc.Write(append(b, '\n')); err != nil {
		t.Fatalf("ipc write: %v", err)
	}
}

// receive reads one IPC message line.
func (a *app) receive(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	if err := a.ipc.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatalf("ipc deadline: %v", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("ipc read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func get(t *testing.T, port int) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Timeout: waitFor}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestExamples(t *testing.T) {
	testExamples(t, Node(t))
}

func TestExamplesOnLines(t *testing.T) {
	for _, major := range Majors() {
		bin := Lines(t)[major]
		t.Run("node"+major, func(t *testing.T) {
			t.Parallel()
			testExamples(t, bin)
		})
	}
}

var local = []string{"PORT=0", "HOST=127.0.0.1"}

func testExamples(t *testing.T, node string) {
	t.Run("app", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "app.js", false, local...)
		resp, body := get(t, a.port(t))
		if resp.StatusCode != 200 || body != "hello world" {
			t.Errorf("GET = %d %q, want 200 \"hello world\"", resp.StatusCode, body)
		}
		if pid := resp.Header.Get("X-Worker-Pid"); pid != strconv.Itoa(a.cmd.Process.Pid) {
			t.Errorf("X-Worker-Pid = %q, want %d", pid, a.cmd.Process.Pid)
		}
		if id := resp.Header.Get("X-Worker-Id"); id != "0" {
			t.Errorf("X-Worker-Id = %q outside a cluster, want 0", id)
		}
	})
	t.Run("graceful-SIGINT", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "graceful.js", false, local...)
		port := a.port(t)
		// A keep-alive connection stays open and idle; the shutdown must not wait for it.
		if resp, body := get(t, port); body != "hello world" || resp.Header.Get("Connection") == "close" {
			t.Fatalf("GET = %q, Connection %q", body, resp.Header.Get("Connection"))
		}
		if err := a.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		a.expect(t, `shutting down \(SIGINT\)$`)
		a.expect(t, ` closed$`)
		if code := a.exit(t); code != 0 {
			t.Errorf("exit code %d after SIGINT, want 0", code)
		}
	})
	t.Run("graceful-message", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "graceful.js", true, local...)
		a.port(t)
		a.send(t, "shutdown")
		a.expect(t, `shutting down \(message\)$`)
		if code := a.exit(t); code != 0 {
			t.Errorf("exit code %d after 'shutdown', want 0", code)
		}
	})
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "ready.js", true, append(local, "READY_DELAY_MS=50")...)
		port := a.port(t)
		r := bufio.NewReader(a.ipc)
		if msg := a.receive(t, r); msg != `"ready"` {
			t.Errorf("IPC message %s, want \"ready\"", msg)
		}
		if _, body := get(t, port); body != "hello world" {
			t.Errorf("GET = %q", body)
		}
	})
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "crash.js", false, "CRASH_AFTER_MS=20")
		a.expect(t, `^crash\.js \d+ started$`)
		if code := a.exit(t); code != 3 {
			t.Errorf("exit code %d, want 3", code)
		}
	})
	t.Run("echo-ipc", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "echo-ipc.js", true)
		a.expect(t, `^echo-ipc\.js \d+ started$`)
		r := bufio.NewReader(a.ipc)
		for _, msg := range []any{"hello", map[string]any{"n": 1.5, "s": []any{"x", nil}}} {
			a.send(t, msg)
			want, _ := json.Marshal(msg)
			var got, w any
			line := a.receive(t, r)
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("echo %q: %v", line, err)
			}
			_ = json.Unmarshal(want, &w)
			if fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("echo = %s, want %s", line, want)
			}
		}
		a.ipc.Close()
		if code := a.exit(t); code != 0 {
			t.Errorf("exit code %d after the channel closed, want 0", code)
		}
	})
	t.Run("udp", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "udp.js", false, local...)
		conn, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", a.port(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping 1")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(waitFor))
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != "ping 1" {
			t.Errorf("echo = %q, %v; want \"ping 1\"", buf[:n], err)
		}
	})
	t.Run("net", func(t *testing.T) {
		t.Parallel()
		a := start(t, node, "net.js", false, local...)
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		msg := bytes.Repeat([]byte("echo "), 2000)
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(waitFor))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("echoed %d bytes, %v; want the %d sent", len(got), err, len(msg))
		}
	})
}
