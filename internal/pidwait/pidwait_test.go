package pidwait

import (
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

func TestExitCode(t *testing.T) {
	cmd := start(t, "exit 7")
	ws, err := Wait(cmd.Process)
	if err != nil {
		t.Fatal(err)
	}
	if !ws.Exited() || ws.ExitStatus() != 7 {
		t.Fatalf("status %#x: want exit 7", ws)
	}
	assertReaped(t, cmd.Process.Pid)
}

func TestSignal(t *testing.T) {
	cmd := start(t, "exec sleep 100")
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		ws, err := Wait(cmd.Process)
		if err != nil {
			t.Error(err)
		}
		done <- ws
	}()
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case ws := <-done:
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Fatalf("status %#x: want killed by SIGTERM", ws)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the child was killed")
	}
	assertReaped(t, cmd.Process.Pid)
}

// TestExitedBeforeWait: a child that is a zombie before Wait starts is reaped at once.
func TestExitedBeforeWait(t *testing.T) {
	cmd := start(t, "exit 3")
	pid := cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for state(pid) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("child %d never became a zombie (state %q)", pid, state(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	ws, err := Wait(cmd.Process)
	if err != nil || ws.ExitStatus() != 3 {
		t.Fatalf("Wait = %#x, %v: want exit 3", ws, err)
	}
	assertReaped(t, pid)
}

// TestNoThreadPerChild: waiting for many children does not hold a thread each (os.Process.Wait
// would: one per child, blocked in waitid).
func TestNoThreadPerChild(t *testing.T) {
	const n = 50
	before := threads(t)
	var cmds []*exec.Cmd
	for range n {
		cmds = append(cmds, start(t, "exec sleep 1000"))
	}
	var wg sync.WaitGroup
	statuses := make([]syscall.WaitStatus, n)
	for i, c := range cmds {
		wg.Go(func() {
			ws, err := Wait(c.Process)
			if err != nil {
				t.Error(err)
			}
			statuses[i] = ws
		})
	}
	// Every waiter parked: the goroutine profile shows them all in the poller.
	deadline := time.Now().Add(30 * time.Second)
	for parked() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d waiters parked in the poller", parked(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := threads(t); got > before+8 {
		t.Errorf("%d threads while waiting for %d children (%d before): want no thread per child", got, n, before)
	}
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGKILL)
	}
	wg.Wait()
	for i, ws := range statuses {
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("child %d: status %#x, want SIGKILL", i, ws)
		}
		assertReaped(t, cmds[i].Process.Pid)
	}
}

// TestExitedLeavesTheChildToWait: Exited parks without a thread per child and returns once the
// child has exited, unreaped, so that exec.Cmd.Wait reaps it with its status, the os package marks
// the process done (Signal: os.ErrProcessDone) and no descriptor is left behind.
func TestExitedLeavesTheChildToWait(t *testing.T) {
	const n = 30
	fds := func() int {
		e, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(e)
	}
	beforeFDs, beforeThreads := fds(), threads(t)
	var cmds []*exec.Cmd
	for range n {
		cmds = append(cmds, start(t, "exec sleep 1000"))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range cmds {
		wg.Go(func() {
			Exited(c.Process)
			if s := state(c.Process.Pid); s != "Z" {
				t.Errorf("child %d: state %q after Exited, want Z (exited, not reaped)", i, s)
			}
			errs[i] = c.Wait()
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for parkedIn("pidwait.exitedPidfd") < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d waiters parked in the poller", parkedIn("pidwait.exitedPidfd"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := threads(t); got > beforeThreads+8 {
		t.Errorf("%d threads while waiting for %d children (%d before): want no thread per child", got, n, beforeThreads)
	}
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGKILL)
	}
	wg.Wait()
	for i, c := range cmds {
		ws, _ := c.ProcessState.Sys().(syscall.WaitStatus)
		if errs[i] == nil || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("child %d: Wait %v, status %#x, want killed by SIGKILL", i, errs[i], ws)
		}
		if err := c.Process.Signal(syscall.SIGTERM); err != os.ErrProcessDone {
			t.Errorf("child %d: Signal after Wait: %v, want os.ErrProcessDone", i, err)
		}
		assertReaped(t, c.Process.Pid)
	}
	if got := fds(); got > beforeFDs {
		t.Errorf("%d descriptors open after the waits, %d before", got, beforeFDs)
	}
}

// TestFallback: without a pidfd (errNoPidfd) Wait still reaps through os.Process.Wait.
func TestFallback(t *testing.T) {
	cmd := start(t, "exit 5")
	st, err := cmd.Process.Wait()
	if err != nil || st.ExitCode() != 5 {
		t.Fatalf("os wait: %v %v", st, err)
	}
	// A pid that is no child of ours any more: an error, not a hang.
	if _, err := waitPidfd(cmd.Process.Pid); err == nil {
		t.Fatal("waitPidfd of a reaped child succeeded")
	}
}

func state(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func assertReaped(t *testing.T, pid int) {
	t.Helper()
	if s := state(pid); s != "" {
		t.Errorf("process %d still exists after Wait (state %s)", pid, s)
	}
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

// parked counts goroutines in waitPidfd that wait in the poller.
func parked() int { return parkedIn("pidwait.waitPidfd") }

// parkedIn counts goroutines in fn that wait in the poller.
func parkedIn(fn string) int {
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, fn) && strings.Contains(g, "runtime_pollWait") {
			n++
		}
	}
	return n
}
