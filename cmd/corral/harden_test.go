package main

// Regression tests of issue 9 (hardening), defects 1, 2, 4 and 10: a state directory or file of
// another user, a hung daemon, stalled control-socket clients, and what another user is told.
// The other-user cases run as root, with `nobody` as the other user; elsewhere they skip.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/testutil"
)

// otherUser is the user the other-user tests run corral as.
type otherUser struct {
	name     string
	uid, gid int
}

// nobody returns the user nobody, skipping the test unless it runs as root (needed to act as
// another user) and the user exists. The test binaries' directory is opened to it.
func nobody(t *testing.T) otherUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs corral as another user (nobody): needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(binDir, 0o755); err != nil { // MkdirTemp made it 0700
		t.Fatal(err)
	}
	return otherUser{name: u.Username, uid: uid, gid: gid}
}

// command returns `corral args...` to run as u (or as this process when u is nil), in /.
func (u *otherUser) command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
	cmd.Env, cmd.Dir = env, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}
	}
	return cmd
}

// run runs `corral args...` as u (nil: as this process), bounded by timeout, and returns its
// output and error.
func (u *otherUser) run(env []string, timeout time.Duration, args ...string) (string, error) {
	cmd := u.command(env, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", err
	}
	timer := time.AfterFunc(timeout, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	if !timer.Stop() {
		err = fmt.Errorf("still running after %v, killed (%v)", timeout, err)
	}
	return buf.String(), err
}

// envFor is a minimal environment for corral with home as CORRAL_HOME, plus extra.
func envFor(home string, extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "CORRAL_HOME=" + home}, extra...)
}

// Defect 10: another user running ls or kill against someone's state directory is told whose it
// is (not "open lock …: permission denied"), and kill does not try to remove the owner's socket.
func TestAnotherUsersDaemonIsNamed(t *testing.T) {
	nob := nobody(t)
	home, env := readmeHome(t)
	os.Chmod(filepath.Dir(home), 0o755) // the others may reach the home, not enter it
	corral(t, env, "ping")
	sockBefore, err := os.Stat(filepath.Join(home, "corral.sock"))
	if err != nil {
		t.Fatal(err)
	}

	want := fmt.Sprintf("the daemon in %s belongs to user root (uid 0), not to you (user %s (uid %d))", home, nob.name, nob.uid)
	for _, args := range [][]string{{"ls"}, {"kill"}, {"start", "sleep", "--", "600"}} {
		out, err := nob.run(envFor(home), 30*time.Second, args...)
		if err == nil || !strings.Contains(out, want) || strings.Contains(out, "permission denied") {
			t.Errorf("corral %s as %s: %v\n%s\nwant %q", args[0], nob.name, err, out, want)
		}
	}
	if st, err := os.Stat(filepath.Join(home, "corral.sock")); err != nil || !os.SameFile(st, sockBefore) {
		t.Errorf("the owner's socket was touched: %v", err)
	}
	if out := corral(t, env, "ping"); strings.TrimSpace(out) != "pong" {
		t.Errorf("the owner's daemon: %q", out)
	}

	// A home of one's own holding another user's files (a daemon started with sudo and this
	// CORRAL_HOME): the message names the file and its owner.
	dir, err := os.MkdirTemp("", "cn-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	own := filepath.Join(dir, "h")
	os.Mkdir(own, 0o700)
	os.WriteFile(filepath.Join(own, "corral.pid"), []byte("1\n"), 0o600)
	os.Chown(own, nob.uid, nob.gid)
	out, err := nob.run(envFor(own), 30*time.Second, "ls")
	if err == nil || !strings.Contains(out, "the daemon in "+own+" belongs to user root (uid 0)") || !strings.Contains(out, "corral.pid is theirs") {
		t.Errorf("ls with root's corral.pid in %s's own home: %v\n%s", nob.name, err, out)
	}
}

// Defect 1: a state directory that belongs to another user is refused, with a message that says
// whose it is, and nothing is sent to the daemon listening there: not the app, not the caller's
// environment.
func TestAnotherUsersHomeIsRefused(t *testing.T) {
	nob := nobody(t)
	home, _ := readmeHome(t) // its cleanup kills every process of this CORRAL_HOME
	os.Chmod(filepath.Dir(home), 0o755)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, nob.uid, nob.gid)
	// nobody's own daemon, listening on nobody's corral.sock.
	daemon := testutil.Start(t, nob.command(envFor(home, "CORRAL_KEEPER=0"), "daemon", "--foreground"))
	daemon.WaitLine(t, 20*time.Second, "the daemon's readiness", func(l string) bool { return strings.Contains(l, "corral daemon ready") })

	const secret = "SECRET_TOKEN=hunter2-issue9"
	env := envFor(home, secret)
	want := fmt.Sprintf("the daemon in %s belongs to user %s (uid %d), not to you (user root (uid 0))", home, nob.name, nob.uid)
	for _, args := range [][]string{{"start", "sleep", "--name", "stolen", "--", "600"}, {"ls"}, {"kill"}} {
		out, err := (*otherUser)(nil).run(env, 30*time.Second, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("corral %s as root in %s's home: %v\n%s\nwant %q", strings.Join(args, " "), nob.name, err, out, want)
		}
	}
	out, err := nob.run(envFor(home), 30*time.Second, "jlist")
	if err != nil {
		t.Fatalf("jlist as %s: %v\n%s", nob.name, err, out)
	}
	if strings.Contains(out, "stolen") || strings.Contains(out, "hunter2") {
		t.Errorf("%s's daemon received root's app or environment:\n%s", nob.name, out)
	}
	select {
	case <-daemon.Done():
		t.Errorf("%s's daemon was stopped by root's kill", nob.name)
	default:
	}
}

// Defect 1: links planted by another user in the places the daemon creates files are not
// followed: the logs directory, an app's pid file, a log file in a shared (sticky) directory.
func TestPlantedLinksAreNotFollowed(t *testing.T) {
	nob := nobody(t)
	base, err := os.MkdirTemp("", "cl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	evil := filepath.Join(base, "evil") // the other user's directory
	os.Mkdir(evil, 0o755)
	os.Chown(evil, nob.uid, nob.gid)
	victims := filepath.Join(base, "victims") // where the links point: root's
	os.Mkdir(victims, 0o700)
	plant := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, nob.uid, nob.gid); err != nil {
			t.Fatal(err)
		}
	}

	// The logs directory is a link (of the other user) to their directory.
	home, env := readmeHome(t)
	os.Mkdir(home, 0o700)
	plant(evil, filepath.Join(home, "logs"))
	out, err := (*otherUser)(nil).run(env, 60*time.Second, "start", "sleep", "--name", "sl", "--", "600")
	if err == nil || !strings.Contains(out, filepath.Join(home, "logs")+" is a symbolic link (to "+evil+") owned by user "+nob.name) {
		t.Errorf("start with a planted logs link: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(evil); len(ents) > 0 {
		t.Errorf("the daemon created %v in %s's directory", ents, nob.name)
	}

	// An app's pid file and a log file in a sticky shared directory are links to root's files.
	home2, env2 := readmeHome(t)
	shared := filepath.Join(base, "shared")
	os.Mkdir(shared, 0o777)
	os.Chmod(shared, 0o777|os.ModeSticky)
	out = corral(t, env2, "start", "sleep", "--name", "sl", "--", "600")
	var pidPath string
	for _, p := range jlist(t, "/", env2) {
		pidPath = p.str("pm_pid_path")
	}
	if pidPath == "" {
		t.Fatalf("no pid path in jlist after %s", out)
	}
	corral(t, env2, "stop", "sl")
	os.Remove(pidPath)
	plant(filepath.Join(victims, "pid"), pidPath)
	corral(t, env2, "restart", "sl")
	plant(filepath.Join(victims, "log"), filepath.Join(shared, "app.log"))
	out, err = (*otherUser)(nil).run(env2, 60*time.Second, "start", "sleep", "--name", "lg", "--output", filepath.Join(shared, "app.log"), "--", "600")
	if err == nil || !strings.Contains(out, filepath.Join(shared, "app.log")+" is a symbolic link (to "+filepath.Join(victims, "log")+") owned by user "+nob.name) {
		t.Errorf("start with a planted log link: %v\n%s", err, out)
	}
	testutil.WaitFor(t, 20*time.Second, "sl online", func() bool {
		for _, p := range jlist(t, "/", env2) {
			if p.Name == "sl" && p.status() == "online" {
				return true
			}
		}
		return false
	})
	if ents, _ := os.ReadDir(victims); len(ents) > 0 {
		t.Errorf("the daemon followed planted links and created %v (start lg said: %s)", ents, out)
	}
	if log, _ := os.ReadFile(filepath.Join(home2, "corral.log")); !strings.Contains(string(log), "is a symbolic link") {
		t.Errorf("corral.log does not say why the pid file was not written:\n%s", log)
	}

	// A planted control socket or pid file in the home: refused before anything is sent.
	home3, env3 := readmeHome(t)
	os.Mkdir(home3, 0o700)
	plant(filepath.Join(evil, "corral.sock"), filepath.Join(home3, "corral.sock"))
	out, err = (*otherUser)(nil).run(env3, 30*time.Second, "ls")
	if err == nil || !strings.Contains(out, filepath.Join(home3, "corral.sock")+" is a symbolic link") {
		t.Errorf("ls with a planted socket link: %v\n%s", err, out)
	}
}

// Defect 2: kill does not hang on a daemon stopped with SIGSTOP: after a bounded ping it stops
// the daemon (and its apps) the hard way; ls and start say that the daemon does not answer.
func TestKillStoppedDaemon(t *testing.T) {
	home, env := readmeHome(t)
	corral(t, env, "start", "sleep", "--name", "zz", "--", "600")
	pid, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	p := daemonproc.PathsFor(home)
	kpid := daemonproc.KeeperOf(p, pid)
	var app int
	for _, j := range jlist(t, "/", env) {
		app = j.PID
	}
	if app <= 0 {
		t.Fatal("no app pid")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)

	want := fmt.Sprintf("the daemon (pid %d) does not answer", pid)
	for _, args := range [][]string{{"ls"}, {"start", "sleep", "--name", "yy", "--", "600"}} {
		start := time.Now()
		out, err := (*otherUser)(nil).run(env, 60*time.Second, args...)
		if err == nil || !strings.Contains(out, want) || strings.Contains(out, "deadline exceeded") {
			t.Errorf("corral %s on a stopped daemon (%s): %v\n%s\nwant %q", args[0], time.Since(start).Round(time.Millisecond), err, out, want)
		}
	}

	start := time.Now()
	out, err := (*otherUser)(nil).run(env, 90*time.Second, "kill")
	took := time.Since(start)
	if err != nil || !strings.Contains(out, fmt.Sprintf("unresponsive daemon (pid %d) killed", pid)) {
		t.Fatalf("kill on a stopped daemon (%s): %v\n%s", took.Round(time.Millisecond), err, out)
	}
	t.Logf("kill on a SIGSTOPped daemon took %s", took.Round(time.Millisecond))
	waitGone(t, "after kill", pid, kpid, app)
	checkNoneLeft(t, home)
}

// Defect 4: clients that send headers and part of a body are cut off (or pushed out by newer
// connections), and meanwhile ls answers and a log stream keeps streaming; the daemon's
// descriptors come back to where they were.
func TestControlSocketHalfOpenClients(t *testing.T) {
	home, env := readmeHome(t)
	dir := filepath.Dir(home)
	ticker := filepath.Join(dir, "ticker")
	os.WriteFile(ticker, []byte("#!/bin/sh\ni=0\nwhile :; do echo tick $i; i=$((i+1)); sleep 0.2; done\n"), 0o755)
	corral(t, env, "start", ticker, "--name", "tk")
	pid, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	fds := func() int { ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); return len(ents) }
	before := fds()

	logs := exec.Command(filepath.Join(binDir, "corral"), "logs", "tk", "--lines", "0", "--out")
	logs.Env = env
	stream := testutil.Start(t, logs)
	stream.WaitPrefix(t, 20*time.Second, "0|tk")

	const n = 2000 // more than the daemon serves at once (1,024): the newest push out the oldest
	sock := filepath.Join(home, "corral.sock")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /v1/list HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tar"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	start := time.Now()
	if out := corral(t, env, "ls"); !strings.Contains(out, "tk") {
		t.Errorf("ls during the flood:\n%s", out)
	}
	t.Logf("ls during the flood answered in %s", time.Since(start).Round(time.Millisecond))

	// Each connection is watched until the daemon closes it.
	var mu sync.Mutex
	var last time.Duration
	open := 0
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			c.SetReadDeadline(start.Add(45 * time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			mu.Lock()
			defer mu.Unlock()
			if errors.As(err, &ne) && ne.Timeout() {
				open++
			} else if d := time.Since(start); d > last {
				last = d
			}
		}(c)
	}
	wg.Wait()
	if open > 0 {
		t.Fatalf("%d of %d half-open connections still open after 45 s", open, n)
	}
	t.Logf("%d half-open connections: the last closed by the daemon %s after the flood", n, last.Round(100*time.Millisecond))

	// The log stream outlived the read and idle timeouts.
	seen := len(stream.Lines())
	k := 0
	stream.WaitLine(t, 20*time.Second, "a line streamed after the flood", func(string) bool { k++; return k > seen })
	for _, c := range conns {
		c.Close()
	}
	var now int
	if !testutil.Eventually(20*time.Second, func() bool { now = fds(); return now <= before+4 }) {
		t.Errorf("daemon descriptors: %d before, %d after the flood", before, now)
	}
}

// The daemon runs with its descriptor soft limit raised to (one below) the hard limit — Go's
// runtime does it at start — and its apps get back the limit the daemon was started with
// (os/exec restores it), so that a select()-based app does not meet descriptors above 1023.
func TestDaemonFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max < 2048 {
		t.Skipf("hard descriptor limit %d: too low to tell", lim.Max)
	}
	home, env := readmeHome(t)
	sh := exec.Command("/bin/sh", "-c", `ulimit -S -n 1024 && exec corral start sleep --name lim -- 600`)
	sh.Env = env
	if out, err := runBounded(sh, 60*time.Second); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	pid, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var app int
	for _, j := range jlist(t, "/", env) {
		app = j.PID
	}
	soft, hard := openFilesLimit(t, pid)
	if soft < hard-1 {
		t.Errorf("daemon: soft limit %d, hard %d", soft, hard)
	}
	if soft, _ := openFilesLimit(t, app); soft != 1024 {
		t.Errorf("app: soft limit %d, want the 1024 the daemon was started with", soft)
	}
}

// openFilesLimit reads the soft and hard RLIMIT_NOFILE of pid from /proc.
func openFilesLimit(t *testing.T, pid int) (soft, hard uint64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), "Max open files"); ok {
			f := strings.Fields(l)
			soft, _ = strconv.ParseUint(f[0], 10, 64)
			hard, _ = strconv.ParseUint(f[1], 10, 64)
			return soft, hard
		}
	}
	t.Fatalf("no open files limit for %d", pid)
	return 0, 0
}

// Defect 10: ls shows a --listen app as what it is (mode listen); jlist keeps PM2's shape
// (exec_mode fork_mode) and lists the addresses in pm2_env.listen.
func TestListenAppMode(t *testing.T) {
	home, env := readmeHome(t)
	sock := filepath.Join(filepath.Dir(home), "app.sock")
	corral(t, env, "start", "sleep", "--name", "shared", "-i", "2", "--listen", "unix:"+sock, "--", "600")
	rows := tableRowsOf(corral(t, env, "ls"))
	if len(rows) != 2 {
		t.Fatalf("ls rows: %v", rows)
	}
	for _, r := range rows {
		if r["mode"] != "listen" {
			t.Errorf("ls mode %q, want listen: %v", r["mode"], r)
		}
	}
	for _, p := range jlist(t, "/", env) {
		l, _ := p.Env["listen"].([]any)
		if p.str("exec_mode") != "fork_mode" || len(l) != 1 || l[0] != "unix:"+sock {
			t.Errorf("jlist: exec_mode %q, listen %v", p.str("exec_mode"), p.Env["listen"])
		}
	}
}
