package logs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeClock is a settable clock; step, if set, advances it on every reading.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var rotatedRe = regexp.MustCompile(`^app__(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)(?:_(\d+))?\.log(\.gz)?$`)

// rotatedInDir returns the rotated files of app.log in dir, oldest first, failing on any
// file that is neither app.log nor a well-formed rotated name.
func rotatedInDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type rf struct {
		stamp string
		seq   int
		name  string
	}
	var list []rf
	for _, e := range entries {
		if e.Name() == "app.log" {
			continue
		}
		m := rotatedRe.FindStringSubmatch(e.Name())
		if m == nil {
			t.Fatalf("unexpected file %q in log dir", e.Name())
		}
		seq := 0
		if m[2] != "" {
			seq, _ = strconv.Atoi(m[2])
		}
		list = append(list, rf{m[1], seq, e.Name()})
	}
	slices.SortFunc(list, func(a, b rf) int {
		if c := strings.Compare(a.stamp, b.stamp); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	var names []string
	for _, r := range list {
		names = append(names, filepath.Join(dir, r.name))
	}
	return names
}

func readMaybeGzip(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line-%04d\n", i) // 10 bytes
	}
	return b.String()
}

func writeLines(t *testing.T, w io.Writer, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := fmt.Fprintf(w, "line-%04d\n", i); err != nil {
			t.Fatalf("write line %d: %v", i, err)
		}
	}
}

func TestRotateBySizeKeepsMaxFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		step time.Duration
	}{
		{"one rotation per second", time.Second},
		{"many rotations per second", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := &fakeClock{t: time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC), step: tc.step}
			l, err := Open(Options{Path: filepath.Join(dir, "app.log"), MaxSize: 100, MaxFiles: 3, Clock: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			writeLines(t, l, 1, 95) // 10 lines per file: 9 rotations, 5 lines left
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rot := rotatedInDir(t, dir)
			if len(rot) != 3 {
				t.Fatalf("kept %d rotated files, want 3: %v", len(rot), rot)
			}
			var got strings.Builder
			for _, r := range rot {
				got.WriteString(readMaybeGzip(t, r))
			}
			if want := numbered(61, 90); got.String() != want {
				t.Errorf("rotated files hold %q, want %q", got.String(), want)
			}
			if cur := readMaybeGzip(t, filepath.Join(dir, "app.log")); cur != numbered(91, 95) {
				t.Errorf("current file holds %q", cur)
			}
			st, err := os.Stat(filepath.Join(dir, "app.log"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
		})
	}
}

func TestRotateCompressed(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC), step: time.Second}
	var bgErrs []error
	var mu sync.Mutex
	l, err := Open(Options{Path: filepath.Join(dir, "app.log"), MaxSize: 100, MaxFiles: 4, Compress: true,
		Clock: clk.Now, OnError: func(err error) { mu.Lock(); bgErrs = append(bgErrs, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, l, 1, 95)
	if err := l.Close(); err != nil { // waits for compression
		t.Fatal(err)
	}
	if len(bgErrs) > 0 {
		t.Fatalf("background errors: %v", bgErrs)
	}
	rot := rotatedInDir(t, dir)
	if len(rot) != 4 {
		t.Fatalf("kept %d rotated files, want 4: %v", len(rot), rot)
	}
	var got strings.Builder
	for _, r := range rot {
		if !strings.HasSuffix(r, ".log.gz") {
			t.Errorf("%s is not compressed", r)
		}
		got.WriteString(readMaybeGzip(t, r)) // fails on an invalid gzip stream
	}
	if want := numbered(51, 90); got.String() != want {
		t.Errorf("rotated files hold %q, want %q", got.String(), want)
	}

	// A rotated file an earlier run left uncompressed is compressed when the file is opened.
	left := filepath.Join(dir, "app__2024-03-06_00-00-00.log")
	if err := os.WriteFile(left, []byte("leftover\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = Open(Options{Path: filepath.Join(dir, "app.log"), MaxSize: 100, MaxFiles: 4, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readMaybeGzip(t, left+".gz"); got != "leftover\n" {
		t.Errorf("leftover compressed to %q", got)
	}
	if rot := rotatedInDir(t, dir); len(rot) != 4 {
		t.Errorf("after sweep: %d rotated files, want 4", len(rot))
	}
}

func TestRotateDaily(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	loc := time.FixedZone("X", 3600)
	clk := &fakeClock{t: time.Date(2024, 3, 5, 23, 59, 58, 0, loc)}
	l, err := Open(Options{Path: path, Daily: true, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	io.WriteString(l, "day1 a\n")
	clk.Set(time.Date(2024, 3, 5, 23, 59, 59, 0, loc))
	io.WriteString(l, "day1 b\n")
	if rot := rotatedInDir(t, dir); len(rot) != 0 {
		t.Fatalf("rotated within a day: %v", rot)
	}
	clk.Set(time.Date(2024, 3, 6, 0, 0, 1, 0, loc))
	if _, err := io.WriteString(l, "day2 a\n"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "day2 b\n")
	rot := rotatedInDir(t, dir)
	if len(rot) != 1 || filepath.Base(rot[0]) != "app__2024-03-06_00-00-01.log" {
		t.Fatalf("rotated files %v, want app__2024-03-06_00-00-01.log", rot)
	}
	if got := readMaybeGzip(t, rot[0]); got != "day1 a\nday1 b\n" {
		t.Errorf("rotated file holds %q", got)
	}
	if got := readMaybeGzip(t, path); got != "day2 a\nday2 b\n" {
		t.Errorf("current file holds %q", got)
	}
}

func TestRotateDailyEmptyFile(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2024, 3, 5, 8, 0, 0, 0, time.UTC)}
	l, err := Open(Options{Path: filepath.Join(dir, "app.log"), Daily: true, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	clk.Set(time.Date(2024, 3, 6, 8, 0, 0, 0, time.UTC)) // a day passes without output
	io.WriteString(l, "a\n")
	io.WriteString(l, "b\n")
	if rot := rotatedInDir(t, dir); len(rot) != 0 {
		t.Errorf("rotated although the file was empty when the day changed: %v", rot)
	}
}

func TestRotateDailyExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yesterday := time.Date(2024, 3, 4, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, yesterday, yesterday); err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Date(2024, 3, 5, 8, 0, 0, 0, time.UTC)}
	l, err := Open(Options{Path: path, Daily: true, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	io.WriteString(l, "new\n")
	rot := rotatedInDir(t, dir)
	if len(rot) != 1 || readMaybeGzip(t, rot[0]) != "old\n" || readMaybeGzip(t, path) != "new\n" {
		t.Fatalf("a file last written yesterday was not rotated: %v", rot)
	}
}

func TestReopenAfterExternalRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "app.log") // parent created on open
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("log dir: %v %v", st.Mode(), err)
	}
	io.WriteString(l, "one\n")
	if err := os.Rename(path, path+".1"); err != nil { // what logrotate does
		t.Fatal(err)
	}
	io.WriteString(l, "two\n") // still the old (moved) file
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "three\n")
	if got := readMaybeGzip(t, path+".1"); got != "one\ntwo\n" {
		t.Errorf("moved file holds %q", got)
	}
	if got := readMaybeGzip(t, path); got != "three\n" {
		t.Errorf("reopened file holds %q", got)
	}

	if err := l.Truncate(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(l, "four\n")
	if got := readMaybeGzip(t, path); got != "four\n" {
		t.Errorf("after truncate the file holds %q", got)
	}
	l.Close()
	if _, err := io.WriteString(l, "x\n"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Path: filepath.Join(dir, "app.log"), MaxSize: 2000, MaxFiles: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const writers, lines = 8, 300
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				if _, err := fmt.Fprintf(l, "w%d-%04d-%s\n", g, i, strings.Repeat("x", g*3)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := append(rotatedInDir(t, dir), filepath.Join(dir, "app.log"))
	if len(files) < 10 {
		t.Fatalf("only %d files; rotation did not happen under concurrency", len(files))
	}
	seen := map[string]int{}
	next := make([]int, writers)
	for _, f := range files {
		data := readMaybeGzip(t, f)
		if len(data) > 2000 {
			t.Errorf("%s has %d bytes, over MaxSize", f, len(data))
		}
		sc := bufio.NewScanner(strings.NewReader(data))
		for sc.Scan() {
			var g, i int
			var pad string
			if n, _ := fmt.Sscanf(sc.Text(), "w%d-%04d-%s", &g, &i, &pad); n < 2 || g >= writers ||
				sc.Text() != fmt.Sprintf("w%d-%04d-%s", g, i, strings.Repeat("x", g*3)) {
				t.Fatalf("torn line %q in %s", sc.Text(), f)
			}
			if i != next[g] {
				t.Fatalf("writer %d: line %d after %d (out of order or lost)", g, i, next[g]-1)
			}
			next[g]++
			seen[sc.Text()]++
		}
	}
	if len(seen) != writers*lines {
		t.Errorf("found %d distinct lines, want %d", len(seen), writers*lines)
	}
}

// withoutDACOverride runs fn on an OS thread that cannot bypass file permissions, so that a
// test running as root still sees a read-only directory as read-only. Linux capabilities
// belong to threads; the thread is discarded afterwards (it stays locked when its goroutine
// ends).
func withoutDACOverride(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("drop capabilities: %v", err)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	path := filepath.Join(dir, "app.log")
	clk := &fakeClock{t: time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)}
	l, err := Open(Options{Path: path, MaxSize: 10, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	io.WriteString(l, "before\n")
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}

	withoutDACOverride(t, func() {
		// Creating a file in the read-only directory fails.
		if _, err := Open(Options{Path: filepath.Join(dir, "other.log")}); !errors.Is(err, os.ErrPermission) {
			t.Errorf("open in read-only dir: %v, want a permission error", err)
		}
		// Rotation cannot rename in the directory: the write still lands, with an error.
		n, err := io.WriteString(l, "rotate!\n")
		if err == nil || n != len("rotate!\n") {
			t.Errorf("write needing rotation in read-only dir: n=%d err=%v", n, err)
		}
	})
	if got := readMaybeGzip(t, path); got != "before\nrotate!\n" {
		t.Errorf("file holds %q", got)
	}

	// The file was moved away and the directory is read-only: reopening and writing fail.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	withoutDACOverride(t, func() {
		if err := l.Reopen(); !errors.Is(err, os.ErrPermission) {
			t.Errorf("reopen in read-only dir: %v, want a permission error", err)
		}
		clk.Set(clk.Now().Add(2 * time.Second))
		if _, err := io.WriteString(l, "lost\n"); err == nil {
			t.Error("write with no open file succeeded")
		}
	})

	// Once the directory is writable again, a later write recovers.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(l, "too soon\n"); err == nil {
		t.Error("write retried the open before the retry delay")
	}
	clk.Set(clk.Now().Add(2 * time.Second))
	if _, err := io.WriteString(l, "back\n"); err != nil {
		t.Fatalf("write after the directory became writable: %v", err)
	}
	if got := readMaybeGzip(t, path); got != "back\n" {
		t.Errorf("recovered file holds %q", got)
	}
}

func TestFullDiskAndBadPaths(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	// /dev/full fails every write with ENOSPC, like a full disk. It is not a regular file, so
	// it is never rotated even with a size limit.
	l, err := Open(Options{Path: "/dev/full", MaxSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 3 {
		if _, err := io.WriteString(l, "hello world\n"); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write to /dev/full: %v, want ENOSPC", err)
		}
	}

	// A parent that is a regular file cannot become a directory, even for root.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: filepath.Join(notDir, "app.log")}); err == nil ||
		!strings.Contains(err.Error(), notDir) {
		t.Errorf("open under a regular file: %v", err)
	}
	for _, o := range []Options{{}, {Path: "x", MaxSize: -1}, {Path: "x", MaxFiles: -2}} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) accepted bad options", o)
		}
	}
}

func TestRotatedNameWithoutLogSuffix(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)}
	l, err := Open(Options{Path: filepath.Join(dir, "out.txt"), MaxSize: 4, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	io.WriteString(l, "abc\n")
	io.WriteString(l, "def\n")
	want := filepath.Join(dir, "out.txt__2024-03-05_10-00-00.log")
	if got, err := os.ReadFile(want); err != nil || !bytes.Equal(got, []byte("abc\n")) {
		t.Errorf("rotated %s: %q %v", want, got, err)
	}
}
