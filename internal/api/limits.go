package api

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Control-socket limits (docs/architecture.md, "Control socket limits"). A client must send a
// request's headers within readHeaderTimeout and its whole body within readTimeout of the start;
// an idle keep-alive connection is closed after idleTimeout. Once the body is read, the handler
// runs without a read deadline (a reload or a shutdown can take minutes, a log stream lasts until
// the client leaves); there is no write timeout, for the same reason. At most maxConns() connections are served at once, log streams included;
// more wait in the socket's backlog until one closes. Variables, for tests.
var (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 10 * time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 64 << 10
)

// connLimit is the connection limit Serve applies (maxConns); tests replace it.
var connLimit = maxConns

// maxConnsCap caps the number of connections served at once.
const maxConnsCap = 1024

// maxConns returns how many connections the daemon serves at once: maxConnsCap, or a quarter of
// the descriptor limit when that is lower (the rest are for the apps' pipes, sockets and logs),
// and at least 16.
func maxConns() int {
	var lim unix.Rlimit
	n := maxConnsCap
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur/4 < uint64(n) {
		n = int(lim.Cur / 4)
	}
	return max(n, 16)
}

// limitListener accepts at most n connections at once: Accept waits for a slot, and a slot is
// freed when its connection is closed (by the server, after a timeout or at the end).
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn frees its slot once, when closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
