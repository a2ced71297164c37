package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// testHome returns a private CORRAL_HOME and an environment using it; the
// daemon it may start is killed at the end of the test.
func testHome(t *testing.T) (daemonproc.Paths, []string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cd-")
	if err != nil {
		t.Fatal(err)
	}
	p := daemonproc.PathsFor(filepath.Join(dir, "h"))
	t.Cleanup(func() {
		if pid, err := daemonproc.ReadPid(p.PidFile); err == nil && daemonproc.Alive(pid) {
			kpid := daemonproc.KeeperOf(p, pid)
			syscall.Kill(pid, syscall.SIGTERM)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			daemonproc.WaitExit(ctx, pid)
			cancel()
			if kpid > 0 { // first: it would start another daemon
				syscall.Kill(kpid, syscall.SIGKILL)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if kpid := daemonproc.KeeperOf(p, 0); kpid > 0 {
			syscall.Kill(kpid, syscall.SIGKILL)
		}
		os.RemoveAll(dir)
	})
	env := append(os.Environ(), "CORRAL_HOME="+p.Home)
	return p, env
}

func corral(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("corral %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The foreground daemon notifies systemd, ignores SIGHUP, reopens logs on
// SIGUSR2 and exits 0 on SIGTERM, removing its socket and pid file.
func TestForegroundDaemon(t *testing.T) {
	p, env := testHome(t)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(filepath.Dir(p.Home), "notify.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	cmd := exec.Command(filepath.Join(binDir, "corral"), "daemon", "--foreground")
	cmd.Env = append(env, "NOTIFY_SOCKET="+notify.LocalAddr().String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	notify.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, err := notify.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(string(buf[:n]), "READY=1") {
		t.Fatalf("sd_notify got %q", buf[:n])
	}
	if out := corral(t, env, "ping"); strings.TrimSpace(out) != "pong" {
		t.Fatalf("ping: %q", out)
	}
	if pid, err := daemonproc.ReadPid(p.PidFile); err != nil || pid != cmd.Process.Pid {
		t.Fatalf("pid file: %d, %v; want %d", pid, err, cmd.Process.Pid)
	}

	cmd.Process.Signal(syscall.SIGHUP)
	cmd.Process.Signal(syscall.SIGUSR2)
	corral(t, env, "ping") // still there after SIGHUP
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not exit on SIGTERM")
	}
	if _, err := os.Stat(p.Socket); !os.IsNotExist(err) {
		t.Error("socket left behind")
	}
	if _, err := os.Stat(p.PidFile); !os.IsNotExist(err) {
		t.Error("pid file left behind")
	}
	log, _ := os.ReadFile(p.LogFile)
	for _, want := range []string{"corral daemon ready", "SIGUSR2: reopening log files", "signal received, shutting down"} {
		if !strings.Contains(string(log), want) || !strings.Contains(stderr.String(), want) {
			t.Errorf("%q missing from corral.log or stderr:\n%s", want, log)
		}
	}
}

// `corral logs` streams new lines from the daemon until interrupted.
func TestLogsStream(t *testing.T) {
	nodetest.Node(t)
	p, env := testHome(t)
	app := filepath.Join(filepath.Dir(p.Home), "ticker.js")
	os.WriteFile(app, []byte(`let i = 0; setInterval(() => { console.log('tick ' + i++); console.error('tock') }, 50);`), 0o644)
	corral(t, env, "start", app)

	cmd := exec.Command(filepath.Join(binDir, "corral"), "logs", "ticker", "--lines", "0", "--out")
	cmd.Env = env
	logs := testutil.Start(t, cmd)
	seen := 0
	l := logs.WaitLine(t, 20*time.Second, "three streamed lines", func(l string) bool {
		if strings.HasPrefix(l, "0|ticker | tick ") {
			seen++
		}
		return seen == 3 || strings.Contains(l, "tock")
	})
	if strings.Contains(l, "tock") {
		t.Fatalf("--out printed stderr: %q", l)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := logs.Wait(t, 20*time.Second); err != nil {
		t.Errorf("logs exit after SIGINT: %v", err)
	}
	for _, l := range logs.Lines() {
		if strings.Contains(l, "tock") {
			t.Errorf("--out printed stderr: %q", l)
		}
	}
	corral(t, env, "kill")
}

// Concurrent first commands start exactly one daemon.
func TestConcurrentStartOneDaemon(t *testing.T) {
	p, env := testHome(t)
	errs := make(chan error, 6)
	for range 6 {
		go func() {
			cmd := exec.Command(filepath.Join(binDir, "corral"), "ping")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err == nil && strings.TrimSpace(string(out)) != "pong" {
				err = &exec.ExitError{}
			}
			if err != nil {
				err = &pingError{err, string(out)}
			}
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// Count daemons of this home: processes whose environment names it.
	want := "CORRAL_HOME=" + p.Home
	daemons := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range procs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		if strings.Contains(string(cmdline), "daemon") && strings.Contains("\x00"+string(data)+"\x00", "\x00"+want+"\x00") {
			daemons++
		}
	}
	if daemons != 1 {
		t.Errorf("%d daemons running for %s, want 1", daemons, p.Home)
	}
	corral(t, env, "kill")
}

type pingError struct {
	err error
	out string
}

func (e *pingError) Error() string { return e.err.Error() + ": " + e.out }
