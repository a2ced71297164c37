// Package logs writes application log files the way PM2 does, with built-in rotation, and
// turns a process's output stream into prefixed lines that are also fanned out to live
// subscribers.
//
// A File appends to one log path and rotates it by size or by day, renaming the old file to
// <path-without-.log>__<YYYY-MM-DD_HH-mm-ss>.log (the pm2-logrotate naming), optionally
// gzipping it in the background and keeping only the newest rotated files. A LineWriter sits
// between a process's stdout or stderr and one or more Files. Tail reads the end of a file.
package logs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/owner"
)

// DefaultMaxFiles is how many rotated files a rotating File keeps when Options.MaxFiles is 0.
const DefaultMaxFiles = 10

// retryDelay is how long a File waits before it retries a failed open or rotation, so that
// a broken disk does not turn every write into a burst of failing system calls.
const retryDelay = time.Second

// rotatedStamp is the time layout of a rotated file's name (YYYY-MM-DD_HH-mm-ss).
const rotatedStamp = "2006-01-02_15-04-05"

// Options configures a File.
type Options struct {
	// Path is the log file. Missing parent directories are created with mode 0700.
	Path string
	// MaxSize rotates the file before a write would take it past this many bytes.
	// 0 means no size limit.
	MaxSize int64
	// MaxFiles is how many rotated files are kept; older ones are deleted. 0 means
	// DefaultMaxFiles. It only matters when MaxSize or Daily is set.
	MaxFiles int
	// Daily rotates the file on the first write of a new (local) day.
	Daily bool
	// Compress gzips rotated files in the background, naming them *.log.gz.
	Compress bool
	// Mode is the permission of the files created; 0 means 0600.
	Mode os.FileMode
	// Clock returns the current time; nil means time.Now. It decides rotation times and names.
	Clock func() time.Time
	// Stdio makes the process's standard output and error (fds 1 and 2) point at the file each
	// time it is opened (and so after each rotation): the daemon's own log, where a panic's trace
	// must land in the current file.
	Stdio bool
	// OnError, if set, receives errors from background work (compression, deleting old
	// files), which have no caller to return them to. It may be called from any goroutine.
	OnError func(error)
}

// rotating reports whether the options ask for any rotation.
func (o *Options) rotating() bool { return o.MaxSize > 0 || o.Daily }

// File is an append-only log file with optional rotation. It implements io.Writer and is safe
// for concurrent use; each Write lands in the file as one piece. Writes are not buffered, so
// there is nothing to flush.
//
// I/O failures (a full disk, a directory that became read-only) are returned from Write and
// never panic. After the file could not be (re)opened, Write retries opening it at most once a
// second and returns an error meanwhile.
type File struct {
	opts   Options
	prefix string // rotated names are prefix + stamp + ".log"

	mu        sync.Mutex
	f         *os.File // nil after a failed open
	regular   bool     // only regular files are rotated (never /dev/null or a FIFO)
	size      int64
	day       int // dayKey of the day the current file was started
	closed    bool
	retryOpen time.Time // no open attempt before this time
	retryRot  time.Time // no rotation attempt before this time
	lastStamp string    // stamp and counter of the latest rotated name, so that names
	lastSeq   int       // within one second keep increasing after older ones were pruned

	bg       sync.WaitGroup
	bgMu     sync.Mutex
	bgActive bool
	bgDirty  bool     // a prune is due
	pending  []string // rotated files waiting to be compressed
}

// Open validates opts and opens (creating if needed) the log file for appending. If rotation
// with compression is configured, rotated files left uncompressed by an earlier run are
// compressed and the retention limit is applied in the background.
func Open(opts Options) (*File, error) {
	if opts.Path == "" {
		return nil, errors.New("open log file: empty path")
	}
	if opts.MaxSize < 0 {
		return nil, fmt.Errorf("open log file %s: negative max size %d", opts.Path, opts.MaxSize)
	}
	if opts.MaxFiles < 0 {
		return nil, fmt.Errorf("open log file %s: negative max files %d", opts.Path, opts.MaxFiles)
	}
	if opts.MaxFiles == 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.Mode == 0 {
		opts.Mode = 0o600
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	opts.Path = filepath.Clean(opts.Path)
	l := &File{opts: opts, prefix: strings.TrimSuffix(opts.Path, ".log") + "__"}
	if err := l.openLocked(opts.Clock()); err != nil {
		return nil, err
	}
	if opts.rotating() && l.regular {
		l.sweep()
	}
	return l, nil
}

// dayKey identifies t's calendar day in t's location.
func dayKey(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}

// openLocked opens the log path for appending. The caller holds l.mu (or owns l exclusively).
func (l *File) openLocked(now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(l.opts.Path), 0o700); err != nil {
		l.retryOpen = now.Add(retryDelay)
		return fmt.Errorf("open log file %s: %w", l.opts.Path, err)
	}
	f, err := owner.OpenFile(l.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, l.opts.Mode) // O_NOFOLLOW
	if err != nil {
		l.retryOpen = now.Add(retryDelay)
		return fmt.Errorf("open log file: %w", err)
	}
	if l.opts.Stdio {
		for _, fd := range []int{1, 2} {
			if err := syscall.Dup3(int(f.Fd()), fd, 0); err != nil {
				f.Close()
				l.retryOpen = now.Add(retryDelay)
				return fmt.Errorf("open log file %s: standard output and error: %w", l.opts.Path, err)
			}
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		l.retryOpen = now.Add(retryDelay)
		return fmt.Errorf("open log file: %w", err)
	}
	l.f = f
	l.regular = st.Mode().IsRegular()
	l.size = st.Size()
	l.day = dayKey(now)
	if l.size > 0 {
		// An existing file belongs to the day it was last written.
		l.day = dayKey(st.ModTime().In(now.Location()))
	}
	return nil
}

// Write appends p to the log file, rotating it first if p would take it past MaxSize or the
// day changed (Daily). If rotation fails, p is still written to the current file and the
// rotation error is returned with n == len(p); rotation is retried a second later.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("write log file %s: %w", l.opts.Path, os.ErrClosed)
	}
	now := l.opts.Clock()
	if l.f == nil {
		if now.Before(l.retryOpen) {
			return 0, fmt.Errorf("write log file %s: not open after an earlier error", l.opts.Path)
		}
		if err := l.openLocked(now); err != nil {
			return 0, err
		}
	}
	if l.size == 0 {
		l.day = dayKey(now) // an empty file belongs to the day of its first line
	}
	var rotErr error
	if l.dueLocked(len(p), now) {
		rotErr = l.rotateLocked(now)
		if l.f == nil {
			return 0, rotErr
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write log file: %w", err)
	}
	return n, rotErr
}

// dueLocked reports whether the file must be rotated before a write of n bytes at now.
func (l *File) dueLocked(n int, now time.Time) bool {
	if !l.regular || !l.opts.rotating() || l.size == 0 || now.Before(l.retryRot) {
		return false
	}
	if l.opts.MaxSize > 0 && l.size+int64(n) > l.opts.MaxSize {
		return true
	}
	return l.opts.Daily && dayKey(now) != l.day
}

// rotateLocked renames the current file away, opens a fresh one and queues the rotated file for
// compression and pruning. On a failed rename the current file stays in use.
func (l *File) rotateLocked(now time.Time) error {
	name, err := l.rotatedName(now)
	if err != nil {
		l.retryRot = now.Add(retryDelay)
		return err
	}
	if err := os.Rename(l.opts.Path, name); err != nil {
		l.retryRot = now.Add(retryDelay)
		return fmt.Errorf("rotate log file: %w", err)
	}
	old := l.f
	l.f = nil
	openErr := l.openLocked(now)
	old.Close()
	l.enqueue(name)
	if openErr != nil {
		return fmt.Errorf("rotate log file %s: %w", l.opts.Path, openErr)
	}
	return nil
}

// rotatedName returns a free name for a file rotated at now: prefix + stamp + ".log", or with a
// "_N" counter after the stamp when several rotations happen within one second.
func (l *File) rotatedName(now time.Time) (string, error) {
	stamp := now.Format(rotatedStamp)
	first := 0
	if stamp == l.lastStamp {
		first = l.lastSeq + 1
	}
	for n := first; n < first+10000; n++ {
		name := l.prefix + stamp + ".log"
		if n > 0 {
			name = l.prefix + stamp + "_" + strconv.Itoa(n) + ".log"
		}
		if !exists(name) && !exists(name+".gz") {
			l.lastStamp, l.lastSeq = stamp, n
			return name, nil
		}
	}
	return "", fmt.Errorf("rotate log file %s: no free name for %s", l.opts.Path, stamp)
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// Reopen closes the file and opens the path again. Use it after an external tool (logrotate)
// moved the file away, so that writes go to a new file at the path; it is what
// `corral reloadLogs` and SIGUSR2 do.
func (l *File) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("reopen log file %s: %w", l.opts.Path, os.ErrClosed)
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	return l.openLocked(l.opts.Clock())
}

// Truncate empties the log file (what `corral flush` does). Rotated files are left alone.
func (l *File) Truncate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("truncate log file %s: %w", l.opts.Path, os.ErrClosed)
	}
	if l.f == nil {
		if err := l.openLocked(l.opts.Clock()); err != nil {
			return err
		}
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate log file: %w", err)
	}
	l.size = 0
	return nil
}

// Path returns the path of the log file.
func (l *File) Path() string { return l.opts.Path }

// Close closes the file and waits for background compression and pruning to finish. Writes
// after Close fail with os.ErrClosed. Closing twice is harmless.
func (l *File) Close() error {
	l.mu.Lock()
	var err error
	if !l.closed {
		l.closed = true
		if l.f != nil {
			if cerr := l.f.Close(); cerr != nil {
				err = fmt.Errorf("close log file: %w", cerr)
			}
			l.f = nil
		}
	}
	l.mu.Unlock()
	l.bg.Wait()
	return err
}

// sweep schedules compression of rotated files an earlier run left uncompressed, and a prune.
func (l *File) sweep() {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.opts.Compress {
		for _, r := range l.rotatedFiles() {
			for _, v := range r.variants {
				if strings.HasSuffix(v, ".log") {
					l.pending = append(l.pending, v)
				}
			}
		}
	}
	l.startBgLocked()
}

// enqueue schedules background work after a rotation produced name.
func (l *File) enqueue(name string) {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.opts.Compress {
		l.pending = append(l.pending, name)
	}
	l.startBgLocked()
}

func (l *File) startBgLocked() {
	l.bgDirty = true
	if !l.bgActive {
		l.bgActive = true
		l.bg.Add(1)
		go l.background()
	}
}

// background compresses pending rotated files and prunes old ones until nothing is left to do.
// One goroutine at most runs per File, so compression and pruning never race each other.
func (l *File) background() {
	defer l.bg.Done()
	for {
		l.bgMu.Lock()
		if len(l.pending) == 0 && !l.bgDirty {
			l.bgActive = false
			l.bgMu.Unlock()
			return
		}
		jobs := l.pending
		l.pending = nil
		l.bgDirty = false
		l.bgMu.Unlock()

		for _, name := range jobs {
			if err := compressFile(name, l.opts.Mode); err != nil {
				l.report(err)
			}
		}
		if err := l.prune(); err != nil {
			l.report(err)
		}
	}
}

func (l *File) report(err error) {
	if l.opts.OnError != nil {
		l.opts.OnError(err)
	}
}

// rotated is one rotated log file, possibly present in several forms (.log, .log.gz, and the
// .log.gz.tmp of an interrupted compression).
type rotated struct {
	stamp    string
	seq      int
	variants []string
}

// rotatedFiles lists this File's rotated files, oldest first.
func (l *File) rotatedFiles() []*rotated {
	dir := filepath.Dir(l.opts.Path)
	base := filepath.Base(l.prefix)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	byKey := map[string]*rotated{}
	var list []*rotated
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, base)
		if !ok {
			continue
		}
		var core string
		for _, suf := range []string{".log", ".log.gz", ".log.gz.tmp"} {
			if c, ok := strings.CutSuffix(rest, suf); ok {
				core = c
				break
			}
		}
		stamp, seq, ok := parseRotated(core)
		if !ok {
			continue
		}
		key := stamp + "/" + strconv.Itoa(seq)
		r := byKey[key]
		if r == nil {
			r = &rotated{stamp: stamp, seq: seq}
			byKey[key] = r
			list = append(list, r)
		}
		r.variants = append(r.variants, filepath.Join(dir, name))
	}
	slices.SortFunc(list, func(a, b *rotated) int {
		if c := strings.Compare(a.stamp, b.stamp); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	return list
}

// parseRotated splits "YYYY-MM-DD_HH-mm-ss" or "YYYY-MM-DD_HH-mm-ss_N" into stamp and N.
func parseRotated(core string) (string, int, bool) {
	if len(core) < len(rotatedStamp) {
		return "", 0, false
	}
	stamp, rest := core[:len(rotatedStamp)], core[len(rotatedStamp):]
	if _, err := time.Parse(rotatedStamp, stamp); err != nil {
		return "", 0, false
	}
	if rest == "" {
		return stamp, 0, true
	}
	digits, ok := strings.CutPrefix(rest, "_")
	if !ok {
		return "", 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 {
		return "", 0, false
	}
	return stamp, n, true
}

// prune deletes rotated files beyond the newest MaxFiles.
func (l *File) prune() error {
	list := l.rotatedFiles()
	var errs []error
	for i := 0; i < len(list)-l.opts.MaxFiles; i++ {
		for _, v := range list[i].variants {
			if err := os.Remove(v); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("prune rotated log: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// compressFile gzips src to src+".gz" (through a temporary file, so a half-written archive
// never carries the final name) and removes src.
func compressFile(src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // already compressed or pruned
	}
	if err != nil {
		return fmt.Errorf("compress rotated log: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("compress rotated log: %w", err)
	}
	dst := src + ".gz"
	tmp := dst + ".tmp"
	out, err := owner.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("compress rotated log: %w", err)
	}
	zw := gzip.NewWriter(out)
	zw.Name = filepath.Base(src)
	zw.ModTime = st.ModTime()
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compress rotated log %s: %w", src, err)
	}
	// Keep the rotated file's time so that age-based tools see when it was written.
	_ = os.Chtimes(tmp, st.ModTime(), st.ModTime())
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compress rotated log: %w", err)
	}
	if err := os.Remove(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compress rotated log: %w", err)
	}
	return nil
}
