// Package procstat measures the CPU and memory use of a process together with all its
// descendants, as `pm2 monit` and `jlist`'s monit field show them.
//
// It reads /proc directly instead of using gopsutil: a sample needs only one small file per
// process (/proc/<pid>/stat holds the CPU times, the RSS, the thread count and the start time),
// and children are found through /proc/<pid>/task/<tid>/children. gopsutil builds a full
// Process object per pid and finds children by reading the stat file of every process on the
// machine, once per parent, which is far too much work to repeat every second for a hundred
// apps. It also walks and signals process trees, for the daemon's stop of an app's whole tree
// (tree.go). The package is Linux-only.
package procstat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Sample is the resource use of a process tree.
type Sample struct {
	// CPU is the CPU use in percent of one core (a tree can exceed 100 on several cores),
	// rounded to one decimal, since the previous sample of the same pid; the first sample of a
	// pid is the average since the process started.
	CPU float64
	// Memory is the resident set size in bytes, summed over the process and its descendants.
	Memory uint64
}

// maxTree bounds the number of processes summed for one root, against runaway trees.
const maxTree = 10000

// minInterval is the shortest time between two samples that yields a new CPU figure; a sample
// taken sooner repeats the previous figure, as a rate over a few milliseconds is mostly noise.
const minInterval = 50_000_000 // 50ms in nanoseconds

// Sampler samples process trees and remembers, per root pid, the CPU time seen last. Its zero
// value is ready to use, and it is safe for concurrent use.
type Sampler struct {
	mu       sync.Mutex
	inited   bool
	hz       float64 // clock ticks per second (USER_HZ)
	pageSize uint64
	children bool // whether the kernel has /proc/<pid>/task/<tid>/children
	prev     map[int]prevSample

	buf   []byte // file read buffer
	dbuf  []byte // directory read buffer
	stack []int
	seen  map[int]struct{}
	kids  map[int][]int // parent -> children, from a full scan, without children files
}

// prevSample is what the Sampler remembers of a root pid's previous sample.
type prevSample struct {
	start uint64  // process start time in ticks since boot, to notice pid reuse
	ticks uint64  // CPU time of the tree in ticks
	at    int64   // when, in nanoseconds of CLOCK_BOOTTIME
	cpu   float64 // the CPU figure reported
}

// Stat is the part of /proc/<pid>/stat that corral reads: what a sample uses, what the daemon's
// orphan reaper uses to recognise a zombie child outside its own process group, and what the
// daemon's tree stop uses to find and recognise an app's descendants (see Descendants).
type Stat struct {
	PID     int    // the process's pid
	State   byte   // R, S, D, Z, ...
	PPID    int    // parent pid
	PGRP    int    // process group id
	Session int    // session id
	Ticks   uint64 // utime+stime+cutime+cstime, in clock ticks
	Threads int
	Start   uint64 // start time after boot, in clock ticks
	RSS     uint64 // resident set size, in pages
}

func (s *Sampler) init() {
	if s.inited {
		return
	}
	s.inited = true
	s.hz = clockTicks()
	s.pageSize = uint64(os.Getpagesize())
	s.prev = map[int]prevSample{}
	s.seen = map[int]struct{}{}
	s.buf = make([]byte, 4096)
	s.dbuf = make([]byte, 8192)
	tid := unix.Gettid()
	_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid) + "/children")
	s.children = err == nil
}

// clockTicks returns USER_HZ, the unit of the CPU times in /proc, from the AT_CLKTCK entry of
// the auxiliary vector (as the C library's sysconf(_SC_CLK_TCK) does), or 100.
func clockTicks() float64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	word := strconv.IntSize / 8
	get := func(b []byte) uint64 {
		if word == 8 {
			return binary.NativeEndian.Uint64(b)
		}
		return uint64(binary.NativeEndian.Uint32(b))
	}
	for i := 0; i+2*word <= len(b); i += 2 * word {
		if get(b[i:]) == atClkTck {
			if v := get(b[i+word:]); v > 0 {
				return float64(v)
			}
		}
	}
	return 100
}

// Sample measures the process pid and its descendants. It fails with an error matching
// os.ErrProcessDone when pid no longer exists or is a zombie; the Sampler then forgets it.
func (s *Sampler) Sample(pid int) (Sample, error) {
	if pid <= 0 {
		return Sample{}, fmt.Errorf("procstat: invalid pid %d", pid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()

	now, err := boottime()
	if err != nil {
		return Sample{}, err
	}
	root, err := s.readStat(pid)
	if err != nil || root.State == 'Z' || root.State == 'X' {
		delete(s.prev, pid)
		if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return Sample{}, fmt.Errorf("procstat: pid %d: %w", pid, os.ErrProcessDone)
		}
		return Sample{}, fmt.Errorf("procstat: pid %d: %w", pid, err)
	}

	ticks, rss := root.Ticks, root.RSS
	clear(s.seen)
	s.seen[pid] = struct{}{}
	s.stack = s.stack[:0]
	if s.children {
		s.stack = s.appendChildren(s.stack, pid, root.Threads)
	} else {
		s.scanParents()
		s.stack = append(s.stack, s.kids[pid]...)
	}
	for len(s.stack) > 0 && len(s.seen) < maxTree {
		p := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if _, dup := s.seen[p]; dup {
			continue
		}
		s.seen[p] = struct{}{}
		st, err := s.readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		ticks += st.Ticks
		rss += st.RSS
		if s.children {
			s.stack = s.appendChildren(s.stack, p, st.Threads)
		} else {
			s.stack = append(s.stack, s.kids[p]...)
		}
	}

	var cpu float64
	p, ok := s.prev[pid]
	switch {
	case ok && p.start == root.Start && now-p.at < minInterval:
		return Sample{CPU: p.cpu, Memory: rss * s.pageSize}, nil
	case ok && p.start == root.Start:
		if ticks > p.ticks {
			cpu = float64(ticks-p.ticks) / s.hz / (float64(now-p.at) / 1e9) * 100
		}
	default: // first sample of this process: the average since it started
		if elapsed := float64(now)/1e9 - float64(root.Start)/s.hz; elapsed > 0 {
			cpu = float64(ticks) / s.hz / elapsed * 100
		}
	}
	cpu = math.Round(cpu*10) / 10
	s.prev[pid] = prevSample{start: root.Start, ticks: ticks, at: now, cpu: cpu}
	return Sample{CPU: cpu, Memory: rss * s.pageSize}, nil
}

// Forget drops what the Sampler remembers of pid; call it when the process is gone.
func (s *Sampler) Forget(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.prev, pid)
}

// boottime returns CLOCK_BOOTTIME in nanoseconds, the clock process start times count in.
func boottime() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("procstat: read boot clock: %w", err)
	}
	return ts.Nano(), nil
}

// readFile reads a small /proc file into s.buf and returns its content.
func (s *Sampler) readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		m, err := unix.Read(fd, s.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return s.buf[:n], nil
		}
		n += m
	}
}

// readStat reads and parses /proc/<pid>/stat.
func (s *Sampler) readStat(pid int) (Stat, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := s.readFile(path)
	if err != nil {
		return Stat{}, err
	}
	st, ok := parseStat(b)
	if !ok {
		return Stat{}, fmt.Errorf("procstat: %s: malformed content %.80q", path, b)
	}
	return st, nil
}

// ReadStat reads and parses /proc/<pid>/stat. A process that is gone gives an error wrapping
// fs.ErrNotExist.
func ReadStat(pid int) (Stat, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	// open, one read, close into a buffer on the stack (os.ReadFile also fstats, registers the
	// file with the poller and reads again to see EOF: the daemon reads one per process it starts).
	var buf [1024]byte
	var b []byte
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stat{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	switch {
	case err != nil:
		return Stat{}, &fs.PathError{Op: "read", Path: path, Err: err}
	case n < len(buf):
		b = buf[:n]
	default: // a line longer than the buffer (not seen): read it whole
		if b, err = os.ReadFile(path); err != nil {
			return Stat{}, err
		}
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ParseStat parses the content of a /proc/<pid>/stat file.
func ParseStat(b []byte) (Stat, error) {
	st, ok := parseStat(b)
	if !ok {
		return Stat{}, fmt.Errorf("procstat: malformed stat line %.80q", b)
	}
	return st, nil
}

// parseStat parses the content of /proc/<pid>/stat (see proc_pid_stat(5)). The command name,
// in parentheses, may itself contain spaces and parentheses, so fields count from the last ')'.
func parseStat(b []byte) (Stat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return Stat{}, false
	}
	var st Stat
	if j := bytes.IndexByte(b, ' '); j > 0 && j < i {
		st.PID = int(parseUint(b[:j]))
	}
	st.State = b[i+2]
	// Fields after the name, numbered from 3 (state) as in proc_pid_stat(5).
	field := 3
	rest := b[i+2:]
	for len(rest) > 0 && field <= 24 {
		j := bytes.IndexByte(rest, ' ')
		var tok []byte
		if j < 0 {
			tok, rest = rest, nil
		} else {
			tok, rest = rest[:j], rest[j+1:]
		}
		switch field {
		case 4:
			st.PPID = int(parseUint(tok))
		case 5:
			st.PGRP = int(parseUint(tok))
		case 6:
			st.Session = int(parseUint(tok))
		case 14, 15, 16, 17: // utime, stime, cutime, cstime
			st.Ticks += parseUint(tok)
		case 20:
			st.Threads = int(parseUint(tok))
		case 22:
			st.Start = parseUint(tok)
		case 24:
			st.RSS = parseUint(tok)
		}
		field++
	}
	return st, field > 24
}

// parseUint parses a decimal number; negative or malformed values count as 0 (cutime and
// cstime are signed in the kernel but never negative in practice).
func parseUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}

// appendChildren appends the children of pid, read from the children file of each of its
// threads (a child belongs to the thread that forked it).
func (s *Sampler) appendChildren(dst []int, pid, threads int) []int {
	p := strconv.Itoa(pid)
	if threads <= 1 {
		return s.appendChildFile(dst, "/proc/"+p+"/task/"+p+"/children")
	}
	dir := "/proc/" + p + "/task"
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return dst
	}
	defer unix.Close(fd)
	for {
		n, err := unix.ReadDirent(fd, s.dbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return dst
		}
		_, _, names := unix.ParseDirent(s.dbuf[:n], -1, nil)
		for _, tid := range names {
			dst = s.appendChildFile(dst, dir+"/"+tid+"/children")
		}
	}
}

func (s *Sampler) appendChildFile(dst []int, path string) []int {
	b, err := s.readFile(path)
	if err != nil {
		return dst
	}
	for _, f := range bytes.Fields(b) {
		if v := parseUint(f); v > 0 {
			dst = append(dst, int(v))
		}
	}
	return dst
}

// scanParents fills s.kids from the parent pid of every process, for kernels built without
// /proc/<pid>/task/<tid>/children.
func (s *Sampler) scanParents() {
	if s.kids == nil {
		s.kids = map[int][]int{}
	}
	clear(s.kids)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := s.readStat(p); err == nil && st.PPID > 0 {
			s.kids[st.PPID] = append(s.kids[st.PPID], p)
		}
	}
}
