//go:build !linux

package cluster

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The poll loop and accept4 are Linux-only (epoll); elsewhere forking fails with ErrNotSupported
// before either is needed.

type pollLoop struct{}

type pollEntry struct{}

func newPollLoop() (*pollLoop, error) { return nil, ErrNotSupported }

func (l *pollLoop) add(fd int, fn func()) (*pollEntry, error) { return nil, ErrNotSupported }

func (l *pollLoop) addIdle(fd int, fn func()) (*pollEntry, error) { return nil, ErrNotSupported }

func (l *pollLoop) watch(fd int, e *pollEntry, on bool) error { return ErrNotSupported }

func (l *pollLoop) remove(fd int, e *pollEntry) {}

func (l *pollLoop) stop() {}

func (l *pollLoop) wait() {}

func accept4(lfd int) (int, error) { return -1, ErrNotSupported }

// socketpair returns a connected pair of close-on-exec Unix stream sockets.
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fds, err
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	return fds, nil
}

func isNonblock(fd int) bool { return false }

func closeFD(fd int) { unix.Close(fd) }
