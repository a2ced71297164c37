package activation

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// envTestRole makes the re-executed test binary act as the shim ("__activate ...") or as an
// activated child ("__child").
const envTestRole = "CORRAL_ACTIVATION_TEST"

func TestMain(m *testing.M) {
	if os.Getenv(envTestRole) == "1" && len(os.Args) > 1 {
		switch os.Args[1] {
		case ShimCommand:
			err := Exec(os.Args[2:])
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		case "__child":
			os.Exit(childMain())
		}
	}
	os.Exit(m.Run())
}

// childReport is what the activated child serves on every request.
type childReport struct {
	PID        int               `json:"pid"`
	ListenPID  string            `json:"listen_pid"`
	ListenFDs  string            `json:"listen_fds"`
	FDNames    string            `json:"fdnames"`
	NonBlock   []bool            `json:"nonblock"`   // O_NONBLOCK of fds 3.. as received
	EnvAfter   []string          `json:"env_after"`  // LISTEN_* left after Listeners
	Addrs      map[string]string `json:"addrs"`      // name -> listener address
	Listeners  int               `json:"listeners"`  // from Listeners()
	ListenErr  string            `json:"listen_err"` // error of Listeners()
	RemoteAddr string            `json:"remote"`
}

// childMain is a socket-activated Go program: it takes its listeners with ListenersWithNames,
// prints a childReport line on stdout and serves it on each listener, until stdin closes.
func childMain() int {
	rep := childReport{
		PID: os.Getpid(), ListenPID: os.Getenv(EnvPID), ListenFDs: os.Getenv(EnvFDs), FDNames: os.Getenv(EnvFDNames),
		Addrs: map[string]string{},
	}
	n, _ := strconv.Atoi(rep.ListenFDs)
	for fd := FirstFD; fd < FirstFD+n; fd++ {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		rep.NonBlock = append(rep.NonBlock, err == nil && fl&unix.O_NONBLOCK != 0)
	}
	var ls []net.Listener
	named, err := ListenersWithNames()
	if err != nil {
		rep.ListenErr = err.Error()
	}
	for name, group := range named {
		for _, l := range group {
			rep.Addrs[name] = l.Addr().String()
			ls = append(ls, l)
		}
	}
	rep.Listeners = len(ls)
	for _, k := range []string{EnvPID, EnvFDs, EnvFDNames} {
		if v, ok := os.LookupEnv(k); ok {
			rep.EnvAfter = append(rep.EnvAfter, k+"="+v)
		}
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := rep
		out.RemoteAddr = r.RemoteAddr
		json.NewEncoder(w).Encode(out)
	})
	for _, l := range ls {
		go http.Serve(l, handler)
	}
	json.NewEncoder(os.Stdout).Encode(rep) // one line: the test waits for it
	io.Copy(io.Discard, os.Stdin)          // the test closes stdin to stop us
	return 0
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// startActivated runs cmd through the shim with files, and stops it at cleanup.
func startActivated(t *testing.T, cmd *exec.Cmd, files []*os.File) (pid int, stdout *bufio.Reader) {
	t.Helper()
	Wrap(cmd, testBinary(t), files)
	cmd.Env = append(cmd.Env, envTestRole+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	return cmd.Process.Pid, bufio.NewReader(out)
}

// readyReport reads the report line a Go child prints once it has taken its listeners.
func readyReport(t *testing.T, out *bufio.Reader) childReport {
	t.Helper()
	line, err := out.ReadString('\n')
	var rep childReport
	if err != nil || json.Unmarshal([]byte(line), &rep) != nil {
		t.Fatalf("child said %q, %v", line, err)
	}
	return rep
}

func isNonBlocking(t *testing.T, f *os.File) bool {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return fl&unix.O_NONBLOCK != 0
}

// tcpPort returns the port a listening socket file is bound to.
func tcpPort(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sa unix.Sockaddr
	var serr error
	rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) })
	if serr != nil {
		t.Fatal(serr)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		t.Fatalf("sockname %T", sa)
	}
	return in4.Port
}

func closeAll(t *testing.T, files []*os.File) {
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
}

func getJSON(t *testing.T, client *http.Client, url string, v any) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestGoChildServesActivatedSockets(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	files, err := Listen([]string{"127.0.0.1:0", "unix:" + sock})
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, files)
	if files[0].Name() != "127.0.0.1_0" || files[1].Name() != sock {
		t.Errorf("names %q, %q", files[0].Name(), files[1].Name())
	}
	port := tcpPort(t, files[0])

	cmd := exec.Command(testBinary(t), "__child")
	pid, out := startActivated(t, cmd, files)
	readyReport(t, out)
	for i, f := range files {
		if !isNonBlocking(t, f) {
			t.Errorf("daemon's socket %d became blocking after the child started", i)
		}
	}

	client := &http.Client{Timeout: 10 * time.Second}
	var rep childReport
	getJSON(t, client, fmt.Sprintf("http://127.0.0.1:%d/", port), &rep)

	if rep.PID != pid || rep.ListenPID != strconv.Itoa(pid) {
		t.Errorf("child pid %d, LISTEN_PID %q; the shim's pid was %d", rep.PID, rep.ListenPID, pid)
	}
	if rep.ListenFDs != "2" || rep.FDNames != "127.0.0.1_0:"+sock {
		t.Errorf("LISTEN_FDS=%q LISTEN_FDNAMES=%q", rep.ListenFDs, rep.FDNames)
	}
	if !reflect.DeepEqual(rep.NonBlock, []bool{true, true}) {
		t.Errorf("child received O_NONBLOCK %v, want non-blocking sockets", rep.NonBlock)
	}
	if rep.ListenErr != "" || rep.Listeners != 2 {
		t.Errorf("child's listeners: %d, error %q", rep.Listeners, rep.ListenErr)
	}
	if got := rep.Addrs["127.0.0.1_0"]; got != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Errorf("child's TCP listener is on %q", got)
	}
	if got := rep.Addrs[sock]; got != sock {
		t.Errorf("child's Unix listener is on %q", got)
	}
	if len(rep.EnvAfter) != 0 {
		t.Errorf("LISTEN_* still set after Listeners: %q", rep.EnvAfter)
	}

	unixClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var rep2 childReport
	getJSON(t, unixClient, "http://app/", &rep2)
	if rep2.PID != pid {
		t.Errorf("Unix socket answered by pid %d, want %d", rep2.PID, pid)
	}
}

// TestTwoChildrenShareSockets starts two instances on the same sockets, as the daemon does, and
// checks that each got its own LISTEN_PID and that both serve.
func TestTwoChildrenShareSockets(t *testing.T) {
	files, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, files)
	port := tcpPort(t, files[0])

	pids := map[int]bool{}
	for range 2 {
		pid, out := startActivated(t, exec.Command(testBinary(t), "__child"), files)
		readyReport(t, out)
		pids[pid] = true
	}
	// Connections are spread by the kernel; ask until both answered.
	seen := map[int]bool{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if !testutil.Eventually(10*time.Second, func() bool {
		var rep childReport
		getJSON(t, client, fmt.Sprintf("http://127.0.0.1:%d/", port), &rep)
		if !pids[rep.PID] || rep.ListenPID != strconv.Itoa(rep.PID) {
			t.Fatalf("answer from pid %d with LISTEN_PID %q; children %v", rep.PID, rep.ListenPID, pids)
		}
		seen[rep.PID] = true
		return len(seen) == 2
	}) {
		t.Errorf("only %v answered", seen)
	}
}

func TestNodeChild(t *testing.T) {
	node := nodetest.Node(t)
	files, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	closeAll(t, files)
	port := tcpPort(t, files[0])

	script := `
const http = require('http');
http.createServer((req, res) => {
  res.end(JSON.stringify({pid: process.pid, listen_pid: process.env.LISTEN_PID,
    listen_fds: process.env.LISTEN_FDS, fdnames: process.env.LISTEN_FDNAMES}));
}).listen({fd: 3}, () => console.log('ready'));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
`
	pid, out := startActivated(t, exec.Command(node, "-e", script), files)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("node said %q, %v", line, err)
	}
	var rep struct {
		PID       int    `json:"pid"`
		ListenPID string `json:"listen_pid"`
		ListenFDs string `json:"listen_fds"`
		FDNames   string `json:"fdnames"`
	}
	getJSON(t, &http.Client{Timeout: 10 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/", port), &rep)
	if rep.PID != pid || rep.ListenPID != strconv.Itoa(pid) || rep.ListenFDs != "1" || rep.FDNames != "127.0.0.1_0" {
		t.Errorf("node reported %+v; shim pid %d", rep, pid)
	}
	if !isNonBlocking(t, files[0]) {
		t.Error("daemon's socket became blocking")
	}
}

func TestShimErrors(t *testing.T) {
	run := func(env []string, args ...string) string {
		cmd := exec.Command(testBinary(t), append([]string{ShimCommand}, args...)...)
		cmd.Env = append(os.Environ(), envTestRole+"=1")
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 127 {
			t.Errorf("shim %q: %v, want exit 127", args, err)
		}
		return string(out)
	}
	if out := run(nil, "true"); !strings.Contains(out, "LISTEN_FDS is not set") {
		t.Errorf("no LISTEN_FDS: %q", out)
	}
	// The shim's own runtime holds low descriptors, so claim more than it can have open.
	if out := run([]string{"LISTEN_FDS=100"}, "true"); !strings.Contains(out, "is not open") {
		t.Errorf("missing fds: %q", out)
	}
	if out := run([]string{"LISTEN_FDS=0"}, "no-such-program-corral"); !strings.Contains(out, "no-such-program-corral") {
		t.Errorf("missing program: %q", out)
	}
	if out := run([]string{"LISTEN_FDS=x"}, "true"); !strings.Contains(out, `bad LISTEN_FDS="x"`) {
		t.Errorf("bad LISTEN_FDS: %q", out)
	}
	if out := run(nil); !strings.Contains(out, "no program") {
		t.Errorf("no program: %q", out)
	}
}

func TestListenErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, addr := range []string{"nonsense", "127.0.0.1:99999", "unix:", "127.0.0.1", taken.Addr().String()} {
		files, err := Listen([]string{"127.0.0.1:0", addr})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("listen[1] %q", addr)) || files != nil {
			t.Errorf("Listen(%q) = %v, %v; want an error naming the address", addr, files, err)
		}
	}
}

func TestListenUnixStaleAndLive(t *testing.T) {
	dir := t.TempDir()

	// A stale socket file (its listener is gone) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	files, err := Listen([]string{stale})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	closeAll(t, files)
	c, err := net.Dial("unix", stale)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()

	// A live one is not stolen.
	if _, err := Listen([]string{stale}); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Errorf("live socket: err = %v", err)
	}

	// A regular file is never removed.
	regular := filepath.Join(dir, "data")
	if err := os.WriteFile(regular, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen([]string{"./" + mustRel(t, regular)}); err == nil {
		t.Error("listening over a regular file succeeded")
	}
	if data, err := os.ReadFile(regular); err != nil || string(data) != "keep" {
		t.Errorf("regular file damaged: %q, %v", data, err)
	}
}

func mustRel(t *testing.T, path string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(rel, "./")
}

func TestEnvAndNames(t *testing.T) {
	if got := Env(2, []string{"127.0.0.1:80", "unix:/run/a.sock"}); !reflect.DeepEqual(got, []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=127.0.0.1_80:/run/a.sock"}) {
		t.Errorf("Env = %q", got)
	}
	if got := Env(3, []string{"web"}); !reflect.DeepEqual(got, []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=web:unknown:unknown"}) {
		t.Errorf("Env with missing names = %q", got)
	}
	if got := Env(1, nil); !reflect.DeepEqual(got, []string{"LISTEN_FDS=1"}) {
		t.Errorf("Env without names = %q", got)
	}
	for in, want := range map[string]string{
		":3000": "_3000", "[::1]:80": "[__1]_80", "unix:/tmp/a b": "/tmp/a_b", "": "unknown",
		strings.Repeat("x", 300): strings.Repeat("x", 255),
	} {
		if got := FDName(in); got != want {
			t.Errorf("FDName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFilesIgnoresOtherProcesses(t *testing.T) {
	t.Setenv(EnvPID, strconv.Itoa(os.Getpid()+1))
	t.Setenv(EnvFDs, "1")
	if files := Files(false); files != nil {
		t.Errorf("Files for another pid = %v", files)
	}
	ls, err := Listeners()
	if err == nil || ls != nil || !strings.Contains(err.Error(), "is not this process") {
		t.Errorf("Listeners for another pid = %v, %v", ls, err)
	}
	if _, ok := os.LookupEnv(EnvFDs); ok {
		t.Error("Listeners did not unset LISTEN_FDS")
	}

	os.Unsetenv(EnvPID)
	os.Unsetenv(EnvFDs)
	if ls, err := Listeners(); ls != nil || err != nil {
		t.Errorf("not activated: Listeners = %v, %v; want nothing", ls, err)
	}
}

// TestListenersRejectsNonSocket passes a pipe as fd 3 to an activated child and checks that
// Listeners names the descriptor in its error instead of returning a nil listener.
func TestListenersRejectsNonSocket(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	_, out := startActivated(t, exec.Command(testBinary(t), "__child"), []*os.File{r})
	rep := readyReport(t, out)
	want := fmt.Sprintf("fd 3 (%s): not a listening socket", FDName(r.Name()))
	if rep.Listeners != 0 || !strings.Contains(rep.ListenErr, want) {
		t.Errorf("child with a pipe at fd 3: %d listeners, error %q", rep.Listeners, rep.ListenErr)
	}
}
