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
