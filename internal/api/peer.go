package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
)

// UntrustedPeerError is what a Client returns when the process listening on the control socket
// runs as another user: nothing is sent to it (a request carries the caller's environment).
type UntrustedPeerError struct {
	Socket string
	UID    int // the listener's uid (SO_PEERCRED)
}

func (e *UntrustedPeerError) Error() string {
	who := "uid " + strconv.Itoa(e.UID)
	if u, err := user.LookupId(strconv.Itoa(e.UID)); err == nil && u.Username != "" {
		who = fmt.Sprintf("user %s (uid %d)", u.Username, e.UID)
	}
	return fmt.Sprintf("refusing to talk to %s: the process listening on it runs as %s, not as you (uid %d)", e.Socket, who, os.Geteuid())
}

// trustedPeer reports whether a daemon running as uid may be sent requests: one of the caller's
// own uid, or root's (which can read everything anyway). Tests replace it.
var trustedPeer = func(uid int) bool { return uid == os.Geteuid() || uid == 0 }

// dialTrusted connects to the Unix socket and checks who listens on it (SO_PEERCRED gives the
// credentials the listener had when it called listen).
func dialTrusted(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	uid, err := peerUID(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	if !trustedPeer(uid) {
		c.Close()
		return nil, &UntrustedPeerError{Socket: socket, UID: uid}
	}
	return c, nil
}
