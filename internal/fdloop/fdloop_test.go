package fdloop

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

func fdOf(t *testing.T, f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// A watched pipe's callback runs when data arrives and when the writer hangs up, not after
// Remove; the loop's goroutine ends with the last watch.
func TestLoopWatchAndRemove(t *testing.T) {
	testutil.CheckGoroutines(t)
	l := &Loop{}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	calls := make(chan struct{}, 16)
	watch, err := l.Add(fdOf(t, r), func() { calls <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("x")
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after a write")
	}
	w.Close()
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after the writer closed")
	}
	watch.Remove()
	watch.Remove() // twice: nothing
	l.mu.Lock()
	running := l.ep != nil
	l.mu.Unlock()
	if running {
		t.Fatal("the epoll set is still open with nothing watched")
	}
}

// Notify during a run makes exactly one more run; concurrent Notifies never run Fn twice at once.
func TestNotifierOneAtATime(t *testing.T) {
	testutil.CheckGoroutines(t)
	var running, max, runs atomic.Int32
	release := make(chan struct{})
	n := &Notifier{}
	n.Fn = func() {
		if c := running.Add(1); c > max.Load() {
			max.Store(c)
		}
		if runs.Add(1) == 1 {
			<-release
		}
		running.Add(-1)
	}
	n.Notify()
	for range 100 {
		n.Notify()
		runtime.Gosched()
	}
	close(release)
	if !testutil.Eventually(10*time.Second, func() bool { return n.state.Load() == 0 }) {
		t.Fatal("the notifier did not go idle")
	}
	if max.Load() != 1 {
		t.Fatalf("%d runs at once, want 1", max.Load())
	}
	if r := runs.Load(); r < 2 || r > 2 {
		t.Fatalf("%d runs, want 2 (the first, and one for the Notifies during it)", r)
	}
}

// Removing the last watch while the loop is in its callback (events arriving) neither deadlocks
// nor leaves the loop running: the set is closed outside the loop's lock.
func TestLoopRemoveLastWhileBusy(t *testing.T) {
	testutil.CheckGoroutines(t)
	l := &Loop{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 500 {
			r, w, err := os.Pipe()
			if err != nil {
				t.Error(err)
				return
			}
			watch, err := l.Add(fdOf(t, r), func() {})
			if err != nil {
				t.Error(err)
				return
			}
			w.WriteString("x")
			w.Close()
			watch.Remove()
			r.Close()
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Add/Remove cycles did not finish (deadlock?)")
	}
}
