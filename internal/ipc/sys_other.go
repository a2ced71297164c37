//go:build !linux

package ipc

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Only Linux is supported: elsewhere a channel cannot be made (Pair and FromFD fail), and these
// flags exist only so that the package compiles.
const (
	sendFlags = 0
	recvFlags = unix.MSG_DONTWAIT
)

// Pair returns ErrNotSupported: Node IPC channels are implemented for Linux only.
func Pair() (parent *net.UnixConn, child *os.File, err error) { return nil, nil, ErrNotSupported }

// FromFD returns ErrNotSupported: Node IPC channels are implemented for Linux only.
func FromFD(fd int) (*net.UnixConn, error) { return nil, ErrNotSupported }

func unreadByPeer(fd int) int { return 0 }

func recvmsg(fd int, r *reader, flags int) (n, oobn int, err error) {
	n, oobn, _, _, err = unix.Recvmsg(fd, r.buf, r.oob, flags)
	return
}

func sendmsgNB(fd int, b, oob []byte, flags int) (int, error) {
	return unix.SendmsgN(fd, b, oob, nil, flags|unix.MSG_DONTWAIT)
}
