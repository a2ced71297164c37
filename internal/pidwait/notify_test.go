package pidwait

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

type notified struct {
	ws  syscall.WaitStatus
	err error
}

// Notify reports each child's status once it has exited, and while the children run no goroutine
// waits for any of them.
func TestNotify(t *testing.T) {
	g0 := runtime.NumGoroutine()
	const n = 50
	ch := make(chan notified, n+1)
	var pids []int
	for range n {
		cmd := start(t, "exec sleep 100")
		pids = append(pids, cmd.Process.Pid)
		Notify(cmd.Process, func(ws syscall.WaitStatus, err error) { ch <- notified{ws, err} })
	}
	quick := start(t, "exit 7")
	Notify(quick.Process, func(ws syscall.WaitStatus, err error) { ch <- notified{ws, err} })
	select {
	case got := <-ch:
		if got.err != nil || !got.ws.Exited() || got.ws.ExitStatus() != 7 {
			t.Fatalf("status %#x, err %v: want exit 7", got.ws, got.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no notification for a child that exited")
	}
	assertReaped(t, quick.Process.Pid)
	if d := runtime.NumGoroutine() - g0; d > 5 {
		t.Errorf("%d goroutines more while %d children run, want at most 5", d, n)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for range n {
		select {
		case got := <-ch:
			if got.err != nil || !got.ws.Signaled() || got.ws.Signal() != syscall.SIGKILL {
				t.Fatalf("status %#x, err %v: want killed by SIGKILL", got.ws, got.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a killed child was not notified")
		}
	}
	for _, pid := range pids {
		assertReaped(t, pid)
	}
}
