package ipc

import (
	"fmt"
	"net"
	"os"
	"unsafe"

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

// recvmsg reads into r.buf and r.oob: unix.Recvmsg without the peer's address, whose decoding costs
// an allocation per call, and with the header kept in r.
func recvmsg(fd int, r *reader, flags int) (n, oobn int, err error) {
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	r.msg = unix.Msghdr{Iov: &r.iov, Control: &r.oob[0]}
	r.msg.SetIovlen(1)
	r.msg.SetControllen(len(r.oob))
	// Raw: the socket is non-blocking (MSG_DONTWAIT), so the call never blocks the thread, and it
	// skips the scheduler's system-call bookkeeping (which also wakes its monitor thread, sysmon).
	got, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msg)), uintptr(flags))
	switch errno {
	case 0:
		return int(got), int(r.msg.Controllen), nil
	case unix.EAGAIN:
		return 0, 0, unix.EAGAIN
	}
	return 0, 0, errno
}

// sendmsgNB makes one non-blocking sendmsg of b with oob (flags gain MSG_DONTWAIT) and reports how
// many bytes went out. Raw, as recvmsg.
func sendmsgNB(fd int, b, oob []byte, flags int) (int, error) {
	var iov unix.Iovec
	var msg unix.Msghdr
	if len(b) > 0 {
		iov.Base = &b[0]
		iov.SetLen(len(b))
		msg.Iov = &iov
		msg.SetIovlen(1)
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags|unix.MSG_DONTWAIT))
	switch errno {
	case 0:
		return int(n), nil
	case unix.EAGAIN:
		return 0, unix.EAGAIN
	}
	return 0, errno
}
