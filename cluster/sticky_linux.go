package cluster

import "golang.org/x/sys/unix"

// accept4Client accepts like accept4 and returns a hash of the client's IP address (an IPv4-mapped
// IPv6 address hashes as the IPv4 one; a Unix socket peer hashes to 0).
func accept4Client(lfd int) (int, uint64, error) {
	fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, 0, err
	}
	var ip []byte
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ip = a.Addr[:]
	case *unix.SockaddrInet6:
		ip = a.Addr[:]
		if isV4Mapped(a.Addr) {
			ip = a.Addr[12:]
		}
	}
	h := uint64(14695981039346656037) // FNV-1a
	for _, b := range ip {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return fd, h, nil
}

func isV4Mapped(a [16]byte) bool {
	for _, b := range a[:10] {
		if b != 0 {
			return false
		}
	}
	return a[10] == 0xff && a[11] == 0xff
}
