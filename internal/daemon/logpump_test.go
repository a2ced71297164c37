package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/logs"
	"golang.org/x/sys/unix"
)

// syncBuf is a goroutine-safe log destination.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pipeLen returns how many bytes the pipe holds.
func pipeLen(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// teeOnce consumes only the complete lines it wrote: a partial line stays in the pipe (where a
// SIGKILL cannot lose it) until its newline comes, or until every writer has closed the pipe.
func TestTeeOnceConsumesOnlyWrittenLines(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var dst syncBuf
	lw := logs.NewLineWriter(logs.LineOptions{App: "t"}, &dst)
	fd := int(r.Fd())

	if done, eof, _, err := teeOnce(fd, lw, false); done || eof || err != nil {
		t.Fatalf("empty pipe: done %v eof %v err %v, want a wait", done, eof, err)
	}
	w.WriteString("one\ntwo\npar")
	if done, eof, _, err := teeOnce(fd, lw, false); !done || eof || err != nil {
		t.Fatalf("two lines and a part: done %v eof %v err %v", done, eof, err)
	}
	if got := dst.String(); got != "one\ntwo\n" {
		t.Fatalf("written %q, want the two complete lines", got)
	}
	if n := pipeLen(t, r); n != len("par") {
		t.Fatalf("the pipe holds %d bytes, want the 3 of the partial line", n)
	}
	if done, _, partial, _ := teeOnce(fd, lw, false); done || !partial {
		t.Fatal("a partial line alone was consumed; it must wait for its newline")
	}
	w.WriteString("tial\nlast")
	teeOnce(fd, lw, false)
	if got := dst.String(); got != "one\ntwo\npartial\n" {
		t.Fatalf("written %q", got)
	}
	w.Close() // the last writer leaves: the tail is the stream's last line
	if done, eof, _, err := teeOnce(fd, lw, false); !done || eof || err != nil {
		t.Fatalf("tail after hang-up: done %v eof %v err %v", done, eof, err)
	}
	if done, eof, _, err := teeOnce(fd, lw, false); !done || !eof || err != nil {
		t.Fatalf("end of stream: done %v eof %v err %v", done, eof, err)
	}
	lw.Close()
	if got := dst.String(); got != "one\ntwo\npartial\nlast\n" {
		t.Fatalf("written %q", got)
	}
}

// With flush (a partial line's delay is over), teeOnce writes the partial line as it is and
// consumes it; the rest of the line continues it in the file.
func TestTeeOnceFlushesPartialLine(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var dst syncBuf
	lw := logs.NewLineWriter(logs.LineOptions{App: "t"}, &dst)
	fd := int(r.Fd())
	w.WriteString("Password: ")
	if done, _, partial, _ := teeOnce(fd, lw, false); done || !partial {
		t.Fatalf("partial line: done %v partial %v", done, partial)
	}
	if done, _, partial, err := teeOnce(fd, lw, true); !done || partial || err != nil {
		t.Fatalf("flush: done %v partial %v err %v", done, partial, err)
	}
	if got := dst.String(); got != "Password: " {
		t.Fatalf("written %q", got)
	}
	if n := pipeLen(t, r); n != 0 {
		t.Fatalf("the pipe holds %d bytes after the flush", n)
	}
	w.WriteString("ok\n")
	teeOnce(fd, lw, false)
	if got := dst.String(); got != "Password: ok\n" {
		t.Fatalf("written %q", got)
	}
}

// A line longer than logs.DefaultMaxLine without a newline is written in pieces rather than
// waiting for a newline that a full pipe would never let through.
func TestTeeOnceLongLine(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := unix.FcntlInt(r.Fd(), unix.F_SETPIPE_SZ, 256<<10); err != nil {
		t.Skipf("F_SETPIPE_SZ: %v", err)
	}
	var dst syncBuf
	lw := logs.NewLineWriter(logs.LineOptions{App: "t"}, &dst)
	long := strings.Repeat("x", logs.DefaultMaxLine+100)
	go w.WriteString(long)
	for n := 0; pipeLen(t, r) < teeChunk && n < 1000; n++ {
		unix.Poll([]unix.PollFd{{Fd: int32(r.Fd()), Events: unix.POLLIN}}, 10)
	}
	if done, _, _, err := teeOnce(int(r.Fd()), lw, false); !done || err != nil {
		t.Fatalf("a MaxLine run without newline: done %v err %v", done, err)
	}
	if got := dst.String(); got != strings.Repeat("x", logs.DefaultMaxLine)+"\n" {
		t.Fatalf("written %d bytes, want one MaxLine piece", len(got))
	}
}

// idlePumpBytes starts n pumps (kept when kept is set, else the plain ones), each on a pipe that
// has carried a 64 KiB burst of lines and is now idle, and returns the heap and stack bytes per
// pump once every burst is in its log.
func idlePumpBytes(t *testing.T, n int, kept bool) float64 {
	m := &Manager{log: slog.New(slog.DiscardHandler), kp: newKeeperLink(nil, "", slog.New(slog.DiscardHandler))}
	burst := []byte(strings.Repeat(strings.Repeat("x", 99)+"\n", 655))
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var ends []*os.File
	var dsts []*syncBuf
	var wg sync.WaitGroup
	for range n {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		dst := &syncBuf{}
		lw := logs.NewLineWriter(logs.LineOptions{App: "t", PartialDelay: logs.DefaultPartialDelay}, dst)
		if kept {
			m.startKeptPump(r, lw, "") // on the poll loop; closes r and lw at the end
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				copyLines(r, lw)
				lw.Close()
				r.Close()
			}()
		}
		w.Write(burst)
		ends, dsts = append(ends, w), append(dsts, dst)
	}
	for _, d := range dsts {
		for deadline := time.Now().Add(20 * time.Second); len(d.String()) < len(burst); {
			if time.Now().After(deadline) {
				t.Fatalf("a pump wrote %d of %d bytes", len(d.String()), len(burst))
			}
			time.Sleep(time.Millisecond)
		}
		d.mu.Lock()
		d.b = bytes.Buffer{} // the destination's copy is not the pump's
		d.mu.Unlock()
	}
	runtime.GC()
	runtime.GC() // a sync.Pool empties over two collections
	runtime.ReadMemStats(&ms1)
	for _, w := range ends {
		w.Close()
	}
	wg.Wait()
	m.kp.pumpWG.Wait()
	used := int64(ms1.HeapInuse+ms1.StackInuse) - int64(ms0.HeapInuse+ms0.StackInuse)
	return float64(used) / float64(n)
}

// An idle pipe's pump holds no chunk buffer: with 100 processes' pipes idle after a burst, the
// pumps (their goroutine, line writer and state) stay well under the 64 KiB chunk each, which a
// per-pump buffer pinned before.
func TestIdlePumpsHoldNoBuffer(t *testing.T) {
	for _, kept := range []bool{true, false} {
		per := idlePumpBytes(t, 100, kept)
		t.Logf("kept %v: %.0f bytes per idle pump", kept, per)
		if per > 24<<10 {
			t.Errorf("kept %v: %.0f bytes per idle pump, want <= %d", kept, per, 24<<10)
		}
	}
}
