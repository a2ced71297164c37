package pidwait

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

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

// exitedPidfd parks in the runtime poller on a pidfd for pid until the child has exited (a
// zombie), without reaping it. It returns at once when it cannot.
func exitedPidfd(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(uintptr) bool {
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				return true // not ours to wait for (any more): the caller's Wait says why
			default:
				// With WNOHANG, a child still running leaves info zeroed (si_signo 0, not SIGCHLD).
				return info.Signo != 0
			}
		}
	})
}
