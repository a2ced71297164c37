package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Process trees, for stopping an app with everything it started: Descendants walks a tree by
// parent pid, Same and Signal recognise a process by its pid and start time (a pid can be reused
// once its process is gone), BootTicks places a wall-clock time on the start-time scale.

var (
	treeOnce     sync.Once
	treeChildren bool    // whether the kernel has /proc/<pid>/task/<tid>/children
	treeHZ       float64 // USER_HZ
)

func treeInit() {
	treeOnce.Do(func() {
		treeHZ = clockTicks()
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/children")
		treeChildren = err == nil
	})
}

// children appends the children of pid, read from its threads' children files.
func children(dst []int, pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := readDirNames(dir)
	if err != nil {
		return dst, err
	}
	for _, tid := range tids {
		b, err := os.ReadFile(dir + "/" + tid + "/children")
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, f := range bytes.Fields(b) {
			if v := parseUint(f); v > 0 {
				dst = append(dst, int(v))
			}
		}
	}
	return dst, nil
}

// parents maps every process's parent pid to its children, by a scan of /proc.
func parents() (map[int][]int, error) {
	names, err := readDirNames("/proc")
	if err != nil {
		return nil, fmt.Errorf("procstat: scan /proc: %w", err)
	}
	kids := map[int][]int{}
	for _, n := range names {
		p, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if st, err := ReadStat(p); err == nil && st.PPID > 0 {
			kids[st.PPID] = append(kids[st.PPID], p)
		}
	}
	return kids, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Descendants returns the stat of every descendant of the processes in roots (children, their
// children, and so on; not the roots themselves), each once, at most maxTree of them. Processes
// that are gone by the time they are read are left out; zombies are included (State 'Z'), they
// have no children. The walk follows parent pids, so it cannot see past a process that has died:
// its children were re-parented (to init or to the nearest child subreaper).
func Descendants(roots ...int) []Stat {
	treeInit()
	var kids map[int][]int
	if !treeChildren {
		var err error
		if kids, err = parents(); err != nil {
			return nil
		}
	}
	seen := make(map[int]bool, len(roots))
	var stack []int
	for _, r := range roots {
		seen[r] = true
	}
	push := func(pid int) {
		if treeChildren {
			stack, _ = children(stack, pid)
		} else {
			stack = append(stack, kids[pid]...)
		}
	}
	for _, r := range roots {
		push(r)
	}
	var out []Stat
	for len(stack) > 0 && len(out) < maxTree {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		st, err := ReadStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, st)
		if st.State != 'Z' && st.State != 'X' {
			push(p)
		}
	}
	return out
}

// Same reports whether pid is still the live (not zombie) process that started at start (in
// clock ticks after boot, Stat.Start).
func Same(pid int, start uint64) bool {
	st, err := ReadStat(pid)
	return err == nil && st.Start == start && st.State != 'Z' && st.State != 'X'
}

// Signal sends sig to the process pid if it is still the one that started at start, and reports
// whether it was sent. Through a pidfd the check and the signal cannot race with the reuse of the
// pid; on kernels without pidfds (before 5.3) kill(2) follows the check.
func Signal(pid int, start uint64, sig unix.Signal) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		defer unix.Close(fd)
	case err == unix.ENOSYS:
		fd = -1
	case err == unix.ESRCH:
		return false, nil
	default:
		return false, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	st, err := ReadStat(pid)
	if err != nil || st.Start != start {
		return false, nil // gone, or the pid names another process now
	}
	if fd >= 0 {
		err = unix.PidfdSendSignal(fd, sig, nil, 0)
	} else {
		err = unix.Kill(pid, sig)
	}
	if err == unix.ESRCH {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("signal %d: %w", pid, err)
	}
	return true, nil
}

// BootTicks converts a wall-clock time to the scale of Stat.Start: clock ticks after boot,
// rounded down. Times before boot give 0.
func BootTicks(t time.Time) uint64 {
	treeInit()
	now, err := boottime()
	if err != nil {
		return 0
	}
	ns := now - time.Since(t).Nanoseconds()
	if ns <= 0 {
		return 0
	}
	return uint64(float64(ns) / 1e9 * treeHZ)
}
