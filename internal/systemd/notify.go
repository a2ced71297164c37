// Package systemd talks to systemd: readiness notification (sd_notify) for the corral daemon, and
// the service unit that `corral startup` installs to run the daemon at boot.
package systemd

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Notify sends state (for example "READY=1" or "STOPPING=1", several assignments separated by
// newlines) to the service manager over the datagram socket named by $NOTIFY_SOCKET, as
// sd_notify(3) does. A name starting with '@' is an abstract socket. When $NOTIFY_SOCKET is unset
// Notify does nothing and returns (false, nil); sent is true once the datagram was written.
func Notify(state string) (sent bool, err error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	switch {
	case strings.HasPrefix(name, "@"):
		name = "\x00" + name[1:]
	case strings.HasPrefix(name, "/"):
	default:
		return false, fmt.Errorf("sd_notify: unsupported NOTIFY_SOCKET %q (want an absolute path or @abstract name)", name)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify %q: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %q: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	return true, nil
}
