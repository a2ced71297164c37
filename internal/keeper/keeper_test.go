package keeper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

const waitLong = 20 * time.Second

// tree is a keeper process and what the test learned about its descendants.
type tree struct {
	t    *testing.T
	dir  string
	p    *testutil.Proc
	pids []int // every process seen, killed at cleanup whatever happens
}

// startKeeper starts `keeper-helper daemon...` with the $KTEST_* variables in env.
func startKeeper(t *testing.T, daemon []string, env ...string) *tree {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if len(daemon) > 0 && daemon[0] == "" {
		daemon[0] = self
	}
	cmd := exec.Command(self, append([]string{"keeper-helper"}, daemon...)...)
	cmd.Env = append(os.Environ(), "KTEST_DIR="+dir, "KTEST_LOG="+filepath.Join(dir, "app.log"),
		"KTEST_EOF_MARK="+filepath.Join(dir, "eof"), "KTEST_RESTART_MIN=10",
		"GORACE=atexit_sleep_ms=0") // with -race, every helper would otherwise linger 1s at exit
	cmd.Env = append(cmd.Env, env...)
	tr := &tree{t: t, dir: dir}
	t.Cleanup(func() {
		for _, pid := range tr.pids {
			unix.Kill(pid, unix.SIGKILL)
		}
	})
	tr.p = testutil.Start(t, cmd)
	tr.pids = append(tr.pids, cmd.Process.Pid)
	return tr
}

func (tr *tree) keeperPID() int { return tr.p.Cmd.Process.Pid }

func (tr *tree) sock() string { return filepath.Join(tr.dir, SocketName) }

// line waits for a line containing every one of parts and returns its key=value fields.
func (tr *tree) line(parts ...string) map[string]string {
	tr.t.Helper()
	l := tr.p.WaitLine(tr.t, waitLong, strings.Join(parts, " … "), func(l string) bool {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				return false
			}
		}
		return true
	})
	f := fields(l)
	for _, k := range []string{"pid", "app", "appb"} {
		if pid := atoi(f[k]); pid > 0 {
			tr.pids = append(tr.pids, pid)
		}
	}
	return f
}

// has reports whether some line so far contains s (a snapshot, not a wait).
func (tr *tree) has(s string) bool {
	for _, l := range tr.p.Lines() {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func (tr *tree) client() *Client {
	tr.t.Helper()
	c, err := Dial(tr.sock())
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(func() { c.Close() })
	return c
}

// stop SIGTERMs the keeper and checks that it stops its daemon and exits 0.
func (tr *tree) stop() {
	tr.t.Helper()
	unix.Kill(tr.keeperPID(), unix.SIGTERM)
	if err := tr.p.Wait(tr.t, waitLong); err != nil {
		tr.t.Fatalf("keeper exit: %v", err)
	}
}

// waitGone waits (pidfd, no polling) until pid has exited.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(timeout/time.Millisecond)); n != 1 {
		t.Fatalf("pid %d still running after %v", pid, timeout)
	}
}

func alive(pid int) bool {
	st, _, err := procStat(pid)
	return err == nil && st != 'Z' && st != 'X'
}

// request sends one line over a new connection and returns the answer.
func request(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLong))
	fmt.Fprintf(c, "%s\n", msg)
	l, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("request %q: %v", msg, err)
	}
	return strings.TrimSpace(l)
}

// acceptBacklog returns the length of the accept queue of the TCP listener on addr, from
// /proc/net/tcp (for a LISTEN socket, rx_queue is the number of connections waiting in accept).
func acceptBacklog(t *testing.T, addr string) int {
	t.Helper()
	_, portS, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portS)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, l := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 4 && f[1] == want && f[3] == "0A" {
			_, rx, _ := strings.Cut(f[4], ":")
			n, _ := strconv.ParseInt(rx, 16, 64)
			return int(n)
		}
	}
	t.Fatalf("no listener %s in /proc/net/tcp", want)
	return 0
}

// checkLog reads the log the daemons spliced and checks that it is "log 1" ... "log N" in order,
// then "log-end N": no line lost, none duplicated. It returns N.
func checkLog(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	n := len(lines) - 1
	for i, l := range lines[:n] {
		if l != "log "+strconv.Itoa(i+1) {
			t.Fatalf("log line %d is %q, want %q (lines lost or duplicated)", i+1, l, "log "+strconv.Itoa(i+1))
		}
	}
	if lines[n] != "log-end "+strconv.Itoa(n) {
		t.Fatalf("last log line %q, want log-end %d", lines[n], n)
	}
	return n
}

// TestDaemonKilledUnderTraffic SIGKILLs the daemon while its app logs, then, while no daemon
// runs: the app keeps its pid (re-parented to the keeper, not reaped), connections queue in the
// listener's backlog, a burst of log lines larger than the pipe blocks without EPIPE, and a second
// app exits. The next daemon fetches every fd back and serves the queued connections through the
// same channel, gets the second app's exit status, and no log line is lost.
func TestDaemonKilledUnderTraffic(t *testing.T) {
	testutil.CheckGoroutines(t)
	gates := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(gates, "gate2"), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := startKeeper(t, []string{"", "fake-daemon", "v1"}, "KTEST_GATE_DIR="+gates)
	d1 := tr.line("daemon v1 gen=1", "ready")
	appA, appB, addr, pid1 := atoi(d1["app"]), atoi(d1["appb"]), d1["addr"], atoi(d1["pid"])
	tr.line(fmt.Sprintf("got pong %d", appA))
	if got, want := request(t, addr, "before"), fmt.Sprintf("app %d: before", appA); got != want {
		t.Fatalf("served %q, want %q", got, want)
	}
	if _, ppid, _ := procStat(appA); ppid != pid1 {
		t.Fatalf("app's parent is %d, want the daemon %d", ppid, pid1)
	}

	unix.Kill(pid1, unix.SIGKILL) // the app logs every 2ms meanwhile
	tr.line("daemon exited", "pid="+strconv.Itoa(pid1), "killed by signal 9")
	tr.line("daemon v1 gen=2", "waiting at gate") // restarted at once, held before it fetches

	// No daemon touches the fds now.
	if st, ppid, err := procStat(appA); err != nil || st == 'Z' || ppid != tr.keeperPID() {
		t.Fatalf("app %d: state %c parent %d err %v; want alive, re-parented to the keeper %d", appA, st, ppid, err, tr.keeperPID())
	}
	const queued = 32
	conns := make([]net.Conn, queued)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d while the daemon is dead: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "queued %d\n", i)
		conns[i] = c
	}
	testutil.WaitFor(t, 5*time.Second, "connections in the accept queue", func() bool { return acceptBacklog(t, addr) == queued })
	unix.Kill(appA, unix.SIGUSR2) // 30000 lines, ~330 KB: more than the 64 KiB pipe holds
	tr.line(fmt.Sprintf("app pid=%d burst-start", appA))
	unix.Kill(appB, unix.SIGUSR1) // exits 42, reaped by the keeper
	watcher := tr.client()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	b, err := watcher.Exits(ctx, 0, true) // ack 0: nothing is dropped, the next daemon sees it too
	if err != nil || len(b.Exits) != 1 || b.Exits[0].PID != appB || syscall.WaitStatus(b.Exits[0].Status).ExitStatus() != 42 {
		t.Fatalf("keeper exits while the daemon is dead: %+v, %v; want pid %d status 42", b, err, appB)
	}
	if tr.has("burst-done") || tr.has("channel-eof") || tr.has("log-err") {
		t.Fatalf("the app finished its burst or lost its channel/pipe while no daemon ran:\n%s", tr.p.Output())
	}
	backlog := acceptBacklog(t, addr)
	t.Logf("while the daemon was dead: %d connections queued in the backlog, app %d alive under keeper %d", backlog, appA, tr.keeperPID())

	// Open the gate: a non-blocking open of a FIFO for writing succeeds once its reader is there.
	testutil.WaitFor(t, 5*time.Second, "the daemon to open its gate", func() bool {
		gate, err := os.OpenFile(filepath.Join(gates, "gate2"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			gate.Close()
		}
		return err == nil
	})
	d2 := tr.line("daemon v1 gen=2", "ready")
	if atoi(d2["fetched"]) != 4 || atoi(d2["app"]) != appA || d2["addr"] != addr {
		t.Fatalf("second daemon: %v; want 4 fds fetched, app %d, addr %s", d2, appA, addr)
	}
	tr.line("daemon v1 gen=2", fmt.Sprintf("exit pid=%d", appB), "exited with status 42")
	tr.line("daemon v1 gen=2", fmt.Sprintf("got pong %d", appA)) // the same channel, both ways
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(waitLong))
		l, err := bufio.NewReader(c).ReadString('\n')
		if want := fmt.Sprintf("app %d: queued %d\n", appA, i); err != nil || l != want {
			t.Fatalf("queued connection %d: %q %v, want %q", i, l, err, want)
		}
	}
	tr.line(fmt.Sprintf("app pid=%d burst-done", appA))

	unix.Kill(appA, unix.SIGTERM)
	tr.line("daemon v1 gen=2", "log eof")
	tr.line("daemon v1 gen=2", fmt.Sprintf("exit pid=%d", appA), "exited with status 0")
	n := checkLog(t, filepath.Join(tr.dir, "app.log"))
	if n < 30000 {
		t.Fatalf("%d log lines, want the burst's 30000 at least", n)
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "eof")); err == nil {
		t.Fatal("the app saw its channel reach EOF")
	}
	t.Logf("%d queued connections served by the same app after recovery; %d log lines, none lost or duplicated", queued, n)
	tr.stop()
}

// TestUpdate updates the daemon, then updates to binaries that fail to come up (one exits, one
// never reports ready) and checks the rollback to the previous binary, which has meanwhile been
// deleted from disk.
func TestUpdate(t *testing.T) {
	testutil.CheckGoroutines(t)
	tr := startKeeper(t, []string{"", "fake-daemon", "v1"}, "KTEST_HANDOVER=5000")
	d1 := tr.line("daemon v1 gen=1", "ready")
	appA, addr := atoi(d1["app"]), d1["addr"]
	served := func(msg string) {
		t.Helper()
		if got, want := request(t, addr, msg), fmt.Sprintf("app %d: %s", appA, msg); got != want {
			t.Fatalf("served %q, want %q", got, want)
		}
	}
	served("one")

	self, _ := os.Executable()
	v2 := filepath.Join(tr.dir, "corral-v2")
	copyFile(t, self, v2)
	cl := tr.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
	defer cancel()
	pid2, err := cl.Update(ctx, []string{v2, "fake-daemon", "v2"}, 10*time.Second)
	if err != nil {
		t.Fatalf("update to v2: %v", err)
	}
	tr.line("daemon v1 gen=1", "handover store-err=<nil>")
	d2 := tr.line("daemon v2 gen=2", "ready")
	if atoi(d2["pid"]) != pid2 || atoi(d2["fetched"]) != 4 || atoi(d2["app"]) != appA {
		t.Fatalf("after update: %v; want pid %d, 4 fds, app %d", d2, pid2, appA)
	}
	served("two")

	if err := os.Remove(v2); err != nil { // rollback must not need the file
		t.Fatal(err)
	}
	_, err = cl.Update(ctx, []string{self, "fake-daemon", "crash"}, 10*time.Second)
	if !errors.Is(err, ErrUpdateFailed) || !strings.Contains(err.Error(), "exited with status 1 before READY") {
		t.Fatalf("update to a crashing daemon: %v; want ErrUpdateFailed, exited with status 1", err)
	}
	tr.line("daemon crash gen=3", "trial fetched=4", "store is read-only") // the store stays as v2 left it
	d4 := tr.line("daemon v2 gen=4", "ready")
	if atoi(d4["app"]) != appA {
		t.Fatalf("rolled back: %v", d4)
	}
	served("three")

	_, err = cl.Update(ctx, []string{self, "fake-daemon", "hang"}, 500*time.Millisecond)
	if !errors.Is(err, ErrUpdateFailed) || !strings.Contains(err.Error(), "no READY in time") {
		t.Fatalf("update to a hanging daemon: %v; want ErrUpdateFailed, no READY in time", err)
	}
	d6 := tr.line("daemon v2 gen=6", "ready")
	served("four")

	_, err = cl.Update(ctx, []string{"/nonexistent/corral", "daemon"}, 0)
	if !errors.Is(err, ErrExec) {
		t.Fatalf("update to a missing binary: %v; want ErrExec", err)
	}
	st, err := cl.Ping(ctx)
	if err != nil || st.DaemonPID != atoi(d6["pid"]) || st.Generation != 6 || !st.DaemonReady || st.Updating {
		t.Fatalf("status %+v %v; want the gen-6 daemon %s, ready", st, err, d6["pid"])
	}
	if _, ppid, _ := procStat(appA); ppid != tr.keeperPID() {
		t.Fatalf("app parent %d, want the keeper", ppid)
	}

	unix.Kill(appA, unix.SIGTERM)
	tr.line("daemon v2 gen=6", "log eof")
	n := checkLog(t, filepath.Join(tr.dir, "app.log"))
	if _, err := os.Stat(filepath.Join(tr.dir, "eof")); err == nil {
		t.Fatal("the app saw its channel reach EOF")
	}
	t.Logf("6 daemons over 4 updates (1 done, 2 rolled back, 1 refused), the app kept its pid and channel; %d log lines, none lost", n)
	tr.stop()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestartBackoff: a daemon that crashes at once is restarted after 50, 100, 200, 400ms.
func TestRestartBackoff(t *testing.T) {
	testutil.CheckGoroutines(t)
	tr := startKeeper(t, []string{"", "fake-daemon", "crash-until=4"}, "KTEST_RESTART_MIN=50", "KTEST_RESTART_MAX=1000")
	var starts []time.Time
	for g := 1; g <= 5; g++ {
		f := tr.line(fmt.Sprintf("gen=%d", g), "start t=")
		ns, _ := strconv.ParseInt(f["t"], 10, 64)
		starts = append(starts, time.Unix(0, ns))
	}
	tr.line("daemon idle gen=5", "ready")
	var gaps []string
	for i := 1; i < len(starts); i++ {
		gap, min := starts[i].Sub(starts[i-1]), 50*time.Millisecond<<(i-1)
		if gap < min || gap > min+5*time.Second {
			t.Fatalf("restart %d came %v after the crash, want at least %v", i, gap, min)
		}
		gaps = append(gaps, gap.Round(time.Millisecond).String())
	}
	t.Logf("restart gaps: %s", strings.Join(gaps, ", "))
	tr.stop()
	tr.line("daemon idle gen=5", "sigterm")
}

// TestKeeperDeath SIGKILLs the keeper: the daemon's OnKeeperDeath hook (the daemon ignores
// SIGTERM here, so the PDEATHSIG backstop cannot be what stops it) stops every app, and the
// daemon exits: no process of the tree outlives the keeper.
func TestKeeperDeath(t *testing.T) {
	testutil.CheckGoroutines(t)
	tr := startKeeper(t, []string{"", "fake-daemon", "v1"}, "KTEST_IGNORE_TERM=1")
	d := tr.line("daemon v1 gen=1", "ready")
	appA, appB, pid := atoi(d["app"]), atoi(d["appb"]), atoi(d["pid"])
	tr.line(fmt.Sprintf("app pid=%d started", appA)) // its SIGTERM handler is in place
	tr.line(fmt.Sprintf("appb pid=%d started", appB))
	unix.Kill(tr.keeperPID(), unix.SIGKILL)
	tr.line("daemon v1 gen=1", "keeper gone: stopping apps")
	tr.line(fmt.Sprintf("app pid=%d sigterm", appA))
	for _, p := range []int{appA, appB, pid} {
		waitGone(t, p, waitLong)
	}
	if alive(appA) || alive(appB) || alive(pid) {
		t.Fatal("a process outlived the keeper")
	}
}

// TestStoreCapAndGarbage: the store refuses a STORE past MaxEntries (and still replaces by name),
// garbage records are refused without the keeper losing or leaking an fd, and a client of another
// uid is turned away.
func TestStoreCapAndGarbage(t *testing.T) {
	testutil.CheckGoroutines(t)
	tr := startKeeper(t, []string{"", "fake-daemon", "idle"}, "KTEST_MAX_ENTRIES=4")
	tr.line("daemon idle gen=1", "ready")
	cl := tr.client()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	countFDs := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", tr.keeperPID()))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	if _, err := cl.Ping(ctx); err != nil { // the keeper has accepted cl
		t.Fatal(err)
	}
	base := countFDs()
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for i := 0; i < 4; i++ {
		if err := cl.Store(ctx, "p"+strconv.Itoa(i), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Store(ctx, "p4", r); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("5th store: %v, want ErrStoreFull", err)
	}
	if err := cl.Store(ctx, "p1", w); err != nil { // replacing at the cap is fine
		t.Fatal(err)
	}
	ents, err := cl.FetchAll(ctx)
	if err != nil || len(ents) != 4 {
		t.Fatalf("fetch: %d %v", len(ents), err)
	}
	for _, e := range ents {
		var st, want unix.Stat_t
		unix.Fstat(int(e.File.Fd()), &st)
		src := r
		if e.Name == "p1" {
			src = w
		}
		unix.Fstat(int(src.Fd()), &want)
		if st.Ino != want.Ino {
			t.Fatalf("%s is not the fd stored", e.Name)
		}
		e.File.Close()
	}
	if got := countFDs(); got != base+4 {
		t.Fatalf("keeper holds %d fds, want %d+4", got, base)
	}

	// Garbage, each record on a fresh connection, some with fds attached.
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	nfd := int(null.Fd())
	hdr := func(op byte, flags byte, n uint16, arg uint64, payload string) []byte {
		b := make([]byte, hdrLen+len(payload))
		putHeader(b, header{op: op, flags: flags, n: n, arg: arg})
		copy(b[hdrLen:], payload)
		return b
	}
	garbage := []struct {
		rec []byte
		fds []int
	}{
		{[]byte("hello"), nil},
		{[]byte("GET / HTTP/1.0\r\n\r\n"), []int{nfd, nfd}},
		{hdr(99, 0, 0, 0, ""), nil},
		{hdr(opPing, 0, 0, 0, "x"), []int{nfd}},
		{hdr(opStore, 0, 0, 0, "name"), nil},
		{hdr(opStore, 0, 0, 0, "name"), []int{nfd, nfd, nfd}},
		{hdr(opStore, 0, 0, 0, "bad name"), []int{nfd}},
		{hdr(opStore, 0, 0, 0, strings.Repeat("n", 101)), []int{nfd}},
		{hdr(opRemove, 0, 0, 0, ""), nil},
		{hdr(opFetch, 0, 0, 1<<62, ""), nil},
		{hdr(opExits, 0xfe, 0, 0, ""), nil},
		{hdr(opUpdate, 0, 0, 0, "relative\x00"), nil},
		{hdr(opUpdate, 0, 0, 1<<40, "/bin/true\x00"), nil},
		{make([]byte, 3*maxRecord), []int{nfd}}, // truncated by the keeper's buffer
	}
	for i, g := range garbage {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: tr.sock()}); err != nil {
			t.Fatal(err)
		}
		var oob []byte
		if len(g.fds) > 0 {
			oob = unix.UnixRights(g.fds...)
		}
		if err := unix.Sendmsg(fd, g.rec, oob, nil, 0); err != nil {
			t.Fatalf("garbage %d: send: %v", i, err)
		}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
		buf := make([]byte, 512)
		n, _, _, _, err := unix.Recvmsg(fd, buf, make([]byte, 64), 0)
		if err != nil {
			t.Fatalf("garbage %d: no answer: %v", i, err)
		}
		h, ok := getHeader(buf[:n])
		if !ok || h.op != opErr && !(h.op == opFetch|opReply && h.n == 0) {
			t.Fatalf("garbage %d answered %x %+v", i, buf[:n], h)
		}
		unix.Close(fd)
	}
	if _, err := cl.Ping(ctx); err != nil {
		t.Fatalf("keeper after garbage: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "the keeper to close the garbage connections", func() bool { return countFDs() == base+4 })
	for i := 0; i < 4; i++ {
		if ok, err := cl.Remove(ctx, "p"+strconv.Itoa(i)); !ok || err != nil {
			t.Fatalf("remove p%d: %v %v", i, ok, err)
		}
	}
	if got := countFDs(); got != base {
		t.Fatalf("keeper holds %d fds after removing all, want %d", got, base)
	}

	t.Run("other uid", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to run a helper as uid 65534")
		}
		otherUID(t, tr)
	})
	tr.stop()
}

// otherUID opens the socket to everyone and has uid 65534 connect: the peer-credential check must
// still turn it away.
func otherUID(t *testing.T, tr *tree) {
	self, _ := os.Executable()
	bin, err := os.MkdirTemp("", "keeper-uid")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	os.Chmod(bin, 0o755)
	copyFile(t, self, filepath.Join(bin, "helper"))
	for d := tr.dir; d != "/" && d != "."; d = filepath.Dir(d) {
		var st unix.Stat_t
		unix.Stat(d, &st)
		defer os.Chmod(d, os.FileMode(st.Mode&0o7777))
		os.Chmod(d, os.FileMode(st.Mode&0o7777)|0o011)
	}
	os.Chmod(tr.sock(), 0o666)
	defer os.Chmod(tr.sock(), 0o600)
	cmd := exec.Command(filepath.Join(bin, "helper"), "dial-helper", tr.sock())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "uid=65534 result=rejected") {
		t.Fatalf("another uid got through:\n%s", out)
	}
	tr.line("rejected a connection from another uid", "uid=65534")
}
