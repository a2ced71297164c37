package cluster

import "golang.org/x/sys/unix"

// acceptBacklog returns the connections in the accept queue of the listening TCP socket fd (Linux
// reports it as tcpi_unacked of a listening socket), or 0 when it cannot tell (a Unix socket).
func acceptBacklog(fd int) int {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != 10 { // TCP_LISTEN
		return 0
	}
	return int(info.Unacked)
}
