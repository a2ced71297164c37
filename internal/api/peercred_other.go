//go:build !linux

package api

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux; elsewhere every peer is refused.
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("peer credentials: not supported on this platform")
}
