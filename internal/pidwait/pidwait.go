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
	"os"
	"syscall"
)

// Wait waits for p, a child of this process, to exit, reaps it and returns its wait status.
// Where pidfds are not available (an old kernel, no descriptor left, not Linux) it falls back
// to p.Wait, which holds a thread. The caller then releases p (p.Release), which closes the pidfd the os
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

// Exited waits, without holding a thread where pidfds are available, until p, a child of this
// process, has exited, and leaves it unreaped: the caller's exec.Cmd.Wait (or p.Wait) then reaps
// it at once, so the os package marks p done and closes its own pidfd, and p.Signal reports
// os.ErrProcessDone from then on. Where no pollable pidfd can be had it returns at once, and the
// caller's Wait blocks as it always did.
func Exited(p *os.Process) {
	exitedPidfd(p.Pid)
}
