package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/logs"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

func keptPumpManager() *Manager {
	return &Manager{log: slog.New(slog.DiscardHandler), kp: newKeeperLink(nil, "", slog.New(slog.DiscardHandler))}
}

// The pumps of kept pipes share the poll loop: many pipes written at once, in pieces that split
// lines, reach their writers whole, in order, none lost, and EOF ends each pump (the loop's
// goroutine ends with the last one).
func TestKeptPumpsOnLoopLoseNothing(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := keptPumpManager()
	const pipes, lines = 40, 2000
	var dsts []*syncBuf
	var wg sync.WaitGroup
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		dst := &syncBuf{}
		dsts = append(dsts, dst)
		m.startKeptPump(r, logs.NewLineWriter(logs.LineOptions{App: "t", PartialDelay: logs.DefaultPartialDelay}, dst), "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			var b strings.Builder
			for n := range lines {
				fmt.Fprintf(&b, "pipe %d line %d %s\n", i, n, strings.Repeat("x", n%150))
			}
			data := b.String()
			for len(data) > 0 { // pieces of 1..4096 bytes: lines split across writes
				k := min(len(data), 1+(len(data)*7)%4096)
				if _, err := w.WriteString(data[:k]); err != nil {
					t.Error(err)
					return
				}
				data = data[k:]
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { m.kp.pumpWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the pumps did not end after their writers closed the pipes")
	}
	for i, d := range dsts {
		got := strings.Split(strings.TrimSuffix(d.String(), "\n"), "\n")
		if len(got) != lines {
			t.Fatalf("pipe %d: %d lines, want %d", i, len(got), lines)
		}
		for n, l := range got {
			if want := fmt.Sprintf("pipe %d line %d %s", i, n, strings.Repeat("x", n%150)); l != want {
				t.Fatalf("pipe %d line %d: %q, want %q", i, n, l, want)
			}
		}
	}
}

// A partial line on a pipe that stays open is written out after its delay, and what follows it
// arrives too; the pump then ends at EOF.
func TestKeptPumpFlushesPartialLine(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := keptPumpManager()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	dst := &syncBuf{}
	m.startKeptPump(r, logs.NewLineWriter(logs.LineOptions{App: "t", PartialDelay: logs.DefaultPartialDelay}, dst), "")
	w.WriteString("first\nhalf")
	if !testutil.Eventually(10*time.Second, func() bool { return strings.Contains(dst.String(), "half") }) {
		t.Fatalf("partial line not written after its delay: %q", dst.String())
	}
	w.WriteString(" more\nlast")
	w.Close()
	m.kp.pumpWG.Wait()
	if got := dst.String(); !strings.HasPrefix(got, "first\nhalf") || !strings.Contains(got, " more") || !strings.HasSuffix(got, "last\n") {
		t.Fatalf("written %q", got)
	}
}

// Idle pumps on the loop hold no goroutine each, and the hand-over stops them between two chunks,
// leaving what the pipes hold in them.
func TestKeptPumpsIdleHoldNoGoroutineAndQuiesce(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := keptPumpManager()
	g0 := runtime.NumGoroutine()
	var ws []*os.File
	var keep *os.File
	var dsts []*syncBuf
	for range 100 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		dst := &syncBuf{}
		if keep == nil { // the keeper's copy of the first pipe
			rc, _ := r.SyscallConn()
			rc.Control(func(fd uintptr) {
				if d, err := unix.Dup(int(fd)); err == nil {
					keep = os.NewFile(uintptr(d), "kept")
				}
			})
		}
		m.startKeptPump(r, logs.NewLineWriter(logs.LineOptions{App: "t"}, dst), "")
		w.WriteString("hello\n")
		ws, dsts = append(ws, w), append(dsts, dst)
	}
	for _, d := range dsts {
		if !testutil.Eventually(10*time.Second, func() bool { return d.String() == "hello\n" }) {
			t.Fatalf("written %q", d.String())
		}
	}
	if !testutil.Eventually(5*time.Second, func() bool { return runtime.NumGoroutine()-g0 <= 5 }) {
		t.Fatalf("%d goroutines more with 100 idle pumps, want at most 5", runtime.NumGoroutine()-g0)
	}
	if !m.quiescePumps(10 * time.Second) {
		t.Fatal("quiescePumps: the pumps did not stop")
	}
	// Stopped: a line written now stays in the pipe (the keeper's copy, here dup) for the next daemon.
	if _, err := ws[0].WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	if n := pipeLen(t, keep); n != len("after\n") {
		t.Fatalf("the pipe holds %d bytes after the hand-over, want %d", n, len("after\n"))
	}
	if got := dsts[0].String(); got != "hello\n" {
		t.Fatalf("written after the hand-over: %q", got)
	}
	keep.Close()
	for _, w := range ws {
		w.Close()
	}
}
