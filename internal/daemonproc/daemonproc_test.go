package daemonproc

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// shortDir returns a temporary directory whose paths fit a Unix socket name.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cdp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestEnsureHome(t *testing.T) {
	dir := filepath.Join(shortDir(t), "home")
	if err := EnsureHome(dir); err != nil {
		t.Fatal(err)
	}
	mode := func() os.FileMode { st, _ := os.Stat(dir); return st.Mode().Perm() }
	if mode() != 0o700 {
		t.Errorf("created with %o", mode())
	}
	os.Chmod(dir, 0o755)
	if err := EnsureHome(dir); err != nil || mode() != 0o700 {
		t.Errorf("not tightened: %o, %v", mode(), err)
	}
	file := filepath.Join(shortDir(t), "f")
	os.WriteFile(file, nil, 0o600)
	if err := EnsureHome(file); err == nil {
		t.Error("a file accepted as home")
	}
}

func TestDefaultHome(t *testing.T) {
	t.Setenv(EnvHome, "rel/dir")
	h, err := DefaultHome()
	if err != nil || !filepath.IsAbs(h) || !strings.HasSuffix(h, "rel/dir") {
		t.Errorf("DefaultHome = %q, %v", h, err)
	}
	t.Setenv(EnvHome, "")
	t.Setenv("HOME", "/home/someone")
	if h, _ := DefaultHome(); h != "/home/someone/.corral" {
		t.Errorf("DefaultHome = %q", h)
	}
}

func TestPidFile(t *testing.T) {
	p := filepath.Join(shortDir(t), "x.pid")
	if err := WritePid(p, 1234); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPid(p); err != nil || pid != 1234 {
		t.Errorf("ReadPid = %d, %v", pid, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("pid file mode %o", st.Mode().Perm())
	}
	os.WriteFile(p, []byte("garbage"), 0o600)
	if _, err := ReadPid(p); err == nil || !strings.Contains(err.Error(), "garbage") {
		t.Errorf("bad pid file: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestAliveAndWaitExit(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("self not alive")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	if !Alive(pid) {
		t.Fatal("child not alive")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitExit(ctx, pid); err == nil {
		t.Fatal("WaitExit returned while the process runs")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := WaitExit(ctx2, pid); err != nil {
		t.Fatalf("WaitExit after kill: %v", err)
	}
	if Alive(pid) { // a zombie (not reaped yet) is not alive
		t.Error("exited child counts as alive")
	}
	cmd.Wait()
	if Alive(pid) {
		t.Error("reaped child counts as alive")
	}
	if err := WaitExit(context.Background(), pid); err != nil {
		t.Errorf("WaitExit on a gone pid: %v", err)
	}
}

func TestCleanStaleAndListen(t *testing.T) {
	p := PathsFor(shortDir(t))
	// A socket file nobody listens on, and a pid file of a dead process.
	ln, err := net.Listen("unix", p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	dead := exec.Command("true")
	dead.Run()
	WritePid(p.PidFile, dead.Process.Pid)

	ctx := context.Background()
	ln2, err := Listen(ctx, p)
	if err != nil {
		t.Fatalf("Listen over stale files: %v", err)
	}
	defer ln2.Close()
	if _, err := os.Stat(p.PidFile); !os.IsNotExist(err) {
		t.Error("stale pid file kept")
	}
	if st, _ := os.Stat(p.Socket); st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o", st.Mode().Perm())
	}

	// A live daemon answers: a second Listen must fail and leave its socket alone.
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- api.Serve(sctx, ln2, nopBackend{}, "test") }()
	defer func() { cancel(); <-done }()
	if _, err := Listen(ctx, p); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Listen: %v", err)
	}
	if _, err := os.Stat(p.Socket); err != nil {
		t.Error("live socket removed")
	}
}

// writeScript writes an executable shell script standing in for `corral`.
func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "fake-corral")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Spawn starts the keeper (`self __keeper`), or the daemon itself with $CORRAL_KEEPER=0, and waits
// for its readiness byte.
func TestSpawnWaitsForReadiness(t *testing.T) {
	t.Run("keeper", func(t *testing.T) { testSpawnWaitsForReadiness(t, "__keeper", os.Environ()) })
	t.Run("no-keeper", func(t *testing.T) {
		testSpawnWaitsForReadiness(t, "daemon", append(os.Environ(), EnvKeeper+"=0"))
	})
}

func testSpawnWaitsForReadiness(t *testing.T, sub string, env []string) {
	dir := shortDir(t)
	p := PathsFor(dir)
	pidFile := filepath.Join(dir, "child.pid")
	self := writeScript(t, dir, `[ "$1" = `+sub+` ] || exit 3
[ "$CORRAL_HOME" = "`+dir+`" ] || exit 4
echo $$ > `+pidFile+`
printf 1 >&$CORRAL_READY_FD
exec sleep 30
`)
	if err := Spawn(context.Background(), p, self, env); err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if !Alive(pid) {
		t.Fatal("spawned daemon not running")
	}
	// It runs in its own session.
	if sid, _ := getsid(pid); sid != pid {
		t.Errorf("daemon session %d, want its own (%d)", sid, pid)
	}
}

func getsid(pid int) (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

func TestSpawnReportsEarlyDeath(t *testing.T) {
	dir := shortDir(t)
	p := PathsFor(dir)
	self := writeScript(t, dir, "echo 'listen: address already in use' >&2\nexit 1\n")
	err := Spawn(context.Background(), p, self, os.Environ())
	if err == nil || !strings.Contains(err.Error(), "failed to start") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Spawn = %v", err)
	}
}

func TestSpawnTimesOut(t *testing.T) {
	dir := shortDir(t)
	p := PathsFor(dir)
	self := writeScript(t, dir, "exec sleep 30\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Spawn(ctx, p, self, os.Environ())
	if err == nil || !strings.Contains(err.Error(), "did not become ready") {
		t.Fatalf("Spawn = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// nopBackend answers every call with nothing.
type nopBackend struct{ api.Backend }

func (nopBackend) List(context.Context) ([]api.Proc, error) { return nil, nil }
