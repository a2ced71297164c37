package ipc

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

const (
	// sendFlags: a peer that went away is an EPIPE error, never a SIGPIPE.
	sendFlags = unix.MSG_NOSIGNAL
	// recvFlags: one attempt (the owner polls), and received fds are close-on-exec from the start.
	recvFlags = unix.MSG_CMSG_CLOEXEC | unix.MSG_DONTWAIT
)

// Pair creates a connected pair for a child process: parent is this process's end, child is the file to
// pass in exec.Cmd.ExtraFiles (close it after the child has started).
func Pair() (parent *net.UnixConn, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ipc: socketpair: %w", err)
	}
	pf := os.NewFile(uintptr(fds[0]), "ipc-parent")
	defer pf.Close()
	c, err := net.FileConn(pf)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("ipc: socketpair conn: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "ipc-child"), nil
}

// FromFD opens the channel end a parent passed to this process as fd (NODE_CHANNEL_FD). The fd is
// duplicated and closed, and the duplicate is close-on-exec.
func FromFD(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "ipc")
	if f == nil {
		return nil, fmt.Errorf("ipc: bad fd %d", fd)
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("ipc: fd %d: %w", fd, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("ipc: fd %d is not a unix socket", fd)
	}
	return uc, nil
}

// unreadByPeer returns how many bytes written on the Unix stream socket fd its peer has not read yet
// (SIOCOUTQ: for AF_UNIX, what is still charged to the sender's buffer), or 0 when it cannot tell.
func unreadByPeer(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
}
