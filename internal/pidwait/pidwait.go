// Package pidwait waits for a child process without holding an OS thread while it runs.
//
// os.Process.Wait blocks its goroutine's thread in waitid(2) for the child's whole life: a
// daemon supervising 100 processes holds 100 threads, each with its own signal stack, g0 stack
// and kernel task. Wait here opens a pidfd for the child (pidfd_open(2), Linux 5.3+) and parks
// the goroutine in the runtime's poller until the pidfd turns readable, which the kernel does
// when the child exits; it then reaps the child with wait4(pid, WNOHANG). Only the waiting
// goroutine is left per child.
//
// The caller must be the only one that reaps pid (nothing waits for it with waitpid(-1) or its
// process group meanwhile): until it is reaped the pid cannot be reused, so opening a pidfd for
// it by number is race-free.
package pidwait

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Wait waits for p, a child of this process, to exit, reaps it and returns its wait status.
// Where pidfds are not available (an old kernel, no descriptor left) it falls back to p.Wait,
// which holds a thread. The caller then releases p (p.Release), which closes the pidfd the os
// package keeps for it; Wait does not, because Release writes p.Pid.
func Wait(p *os.Process) (syscall.WaitStatus, error) {
	ws, err := waitPidfd(p.Pid)
	if !errors.Is(err, errNoPidfd) {
		return ws, err
	}
	st, err := p.Wait()
	if err != nil {
		return 0, err
	}
	ws, _ = st.Sys().(syscall.WaitStatus)
	return ws, nil
}

// errNoPidfd says that no pollable pidfd could be had for the child; Wait falls back to p.Wait.
var errNoPidfd = errors.New("pidwait: no pidfd")

// waitPidfd is Wait with a pidfd in the runtime poller.
func waitPidfd(pid int) (syscall.WaitStatus, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			// No such process: not a live or zombie child of ours any more (reaped elsewhere).
			return 0, fmt.Errorf("pidwait: pid %d: %w", pid, err)
		}
		return 0, errNoPidfd
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, errNoPidfd
	}
	var ws unix.WaitStatus
	var werr error
	reaped := false
	err = rc.Read(func(uintptr) bool {
		for {
			got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				werr = fmt.Errorf("pidwait: wait4 %d: %w", pid, err)
				return true
			case got == 0:
				return false // running: park until the pidfd is readable (the child exited)
			default:
				reaped = true
				return true
			}
		}
	})
	if err != nil && !reaped && werr == nil {
		return 0, errNoPidfd // the pidfd could not be polled: the child is still there to wait for
	}
	return syscall.WaitStatus(ws), werr
}
