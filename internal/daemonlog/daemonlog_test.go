package daemonlog

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestThrottleCountsRepeatedWarnings: of 1,000 identical warnings, Burst pass and the others are
// summed up in one line once the window is over; another source, and Info records, are not held
// back.
func TestThrottleCountsRepeatedWarnings(t *testing.T) {
	var buf bytes.Buffer
	c := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	th := NewThrottle(slog.NewTextHandler(&buf, nil), c.now)
	log := slog.New(th).With("component", "test")
	for range 1000 {
		log.Warn("write log", "pm_id", 0, "err", "no space left on device")
		c.add(10 * time.Millisecond)
	}
	log.Warn("write log", "pm_id", 1, "err", "no space left on device") // another app
	log.Info("process exited", "pm_id", 0)
	if n := strings.Count(buf.String(), `msg="write log" component=test pm_id=0`); n != Burst {
		t.Errorf("%d warnings for pm_id 0 passed, want %d:\n%s", n, Burst, buf.String())
	}
	if !strings.Contains(buf.String(), "pm_id=1") || !strings.Contains(buf.String(), "process exited") {
		t.Errorf("another source or an info record was held back:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "more like this") {
		t.Errorf("summary before the window is over:\n%s", buf.String())
	}
	// The window ends: the next record (of any key) brings the summary of the dropped ones.
	c.add(Window)
	log.Warn("something else")
	if !strings.Contains(buf.String(), `msg="write log (995 more like this in 1m10s)" component=test pm_id=0 err="no space left on device" repeated=995`) {
		t.Errorf("no summary of the 995 dropped warnings:\n%s", buf.String())
	}
	// Flush sums up what is pending, at once.
	for range 7 {
		log.Warn("again", "path", "/x")
	}
	th.Flush(context.Background())
	if !strings.Contains(buf.String(), `msg="again (2 more like this in 0s)"`) {
		t.Errorf("Flush did not sum up:\n%s", buf.String())
	}
}

// TestOpenRotates writes 38 MB through the daemon's log: corral.log is rotated at MaxSize and
// only MaxFiles rotated files are kept.
func TestOpenRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "corral.log")
	f, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(NewThrottle(slog.NewTextHandler(f, nil), nil))
	pad := strings.Repeat("x", 1000)
	for i := range 35 << 10 {
		log.Info("process exited", "pm_id", i, "pad", pad)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var total int64
	var names []string
	for _, e := range entries {
		fi, _ := e.Info()
		total += fi.Size()
		names = append(names, e.Name())
		if fi.Size() > MaxSize {
			t.Errorf("%s: %d bytes, more than %d", e.Name(), fi.Size(), MaxSize)
		}
	}
	if len(entries) != MaxFiles+1 || !strings.HasPrefix(names[1], "corral__") {
		t.Errorf("files %v, want corral.log and %d rotated ones", names, MaxFiles)
	}
	t.Logf("38 MB logged: %d files, %d bytes on disk", len(entries), total)
}

// TestOpenStdio checks, in a child process, that with stdio the process's standard error follows
// corral.log across a rotation: what it writes after one lands in the current file.
func TestOpenStdio(t *testing.T) {
	if path := os.Getenv("DAEMONLOG_STDIO_CHILD"); path != "" {
		f, err := Open(path, true)
		if err != nil {
			os.Exit(2)
		}
		f.Write(bytes.Repeat([]byte("x"), MaxSize-10))
		f.Write([]byte("this line rotates the file\n"))
		os.Stderr.WriteString("written on stderr after the rotation\n")
		f.Close()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "corral.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenStdio$")
	cmd.Env = append(os.Environ(), "DAEMONLOG_STDIO_CHILD="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "this line rotates the file\nwritten on stderr after the rotation\n" {
		t.Errorf("corral.log after the rotation: %q", b)
	}
}
