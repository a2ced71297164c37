// Package fdhygiene keeps file descriptors a process inherited from leaking further: a process
// started by a shell or a supervisor may hold descriptors it knows nothing about (a shell's
// `exec 7>file`, a parent's leaked pipe), and every child it starts would inherit them in turn.
//
// Everything Go itself opens is close-on-exec, and every descriptor that survives an execve is
// not (close-on-exec ones are closed by it); so, at the start of a Go program, an fd >= 3 without
// FD_CLOEXEC is exactly an inherited one. CloseInherited closes those; CloexecFrom marks every fd
// close-on-exec, which is always safe, even for the runtime's own descriptors.
package fdhygiene

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloexecFrom marks every open file descriptor >= low close-on-exec, with
// close_range(CLOSE_RANGE_CLOEXEC) (Linux 5.11) or, where that is missing, by walking
// /proc/self/fd.
func CloexecFrom(low int) error {
	if low < 0 {
		low = 0
	}
	err := unix.CloseRange(uint(low), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("close_range(%d, CLOEXEC): %w", low, err)
	}
	return cloexecWalk(low)
}

// cloexecWalk is CloexecFrom without close_range.
func cloexecWalk(low int) error {
	fds, err := openFDs()
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if fd < low {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("mark fd %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}

// CloseInherited closes every descriptor >= 3 that is not close-on-exec, except those in keep:
// at the start of a Go program, the descriptors it inherited and did not ask for. To keep one,
// mark it close-on-exec first or list it in keep. It never closes a descriptor Go opened.
func CloseInherited(keep ...int) error {
	fds, err := openFDs()
	if err != nil {
		return err
	}
next:
	for _, fd := range fds {
		if fd < 3 {
			continue
		}
		for _, k := range keep {
			if fd == k {
				continue next
			}
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // gone since the listing, or not inherited
		}
		if err := unix.Close(fd); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("close inherited fd %d: %w", fd, err)
		}
	}
	return nil
}

// OpenFDs lists the process's open file descriptors.
func OpenFDs() ([]int, error) { return openFDs() }

// openFDs lists /proc/self/fd or, without /proc, probes every descriptor below RLIMIT_NOFILE
// (capped at 1<<20) with F_GETFD. The listing includes, possibly, the descriptor it used itself.
func openFDs() ([]int, error) {
	names, err := readDirNames("/proc/self/fd")
	if err == nil {
		fds := make([]int, 0, len(names))
		for _, n := range names {
			if fd, err := strconv.Atoi(n); err == nil {
				fds = append(fds, fd)
			}
		}
		return fds, nil
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("list open fds: %w", err)
	}
	max := min(lim.Cur, 1<<20)
	var fds []int
	for fd := 0; uint64(fd) < max; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

var readDirNames = func(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
