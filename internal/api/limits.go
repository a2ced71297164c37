package api

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Control-socket limits (docs/architecture.md, "The control socket"). A client must send a
// request's headers within readHeaderTimeout and its whole body within readTimeout of the start;
// an idle keep-alive connection is closed after idleTimeout. Once the body is read, the handler
// runs without a read deadline (a reload or a shutdown can take minutes, a log stream lasts until
// the client leaves); there is no write timeout, for the same reason. At most maxConns()
// connections are served at once (limitListener). Variables, for tests.
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

// limitListener serves at most n connections at once. A connection is busy while a handler runs
// for it (from the end of its request's body to the end of the response: a log stream stays busy);
// otherwise it is idle: just connected, sending a request, or kept alive between requests. When
// all n slots are taken, a new connection takes the slot of the oldest idle one, which is closed
// (a flood of stalled clients then cannot lock out `corral ls`: each new connection pushes out the
// oldest stalled one); when every slot is busy, Accept waits for one to free (connections wait in
// the socket's backlog meanwhile).
type limitListener struct {
	net.Listener
	n int

	mu      sync.Mutex
	changed *sync.Cond   // broadcast when a slot frees or a connection becomes idle, and at close
	conns   []*limitConn // the served connections, oldest first
	closed  bool
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	l := &limitListener{Listener: ln, n: n}
	l.changed = sync.NewCond(&l.mu)
	return l
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l}
	var victim *limitConn
	l.mu.Lock()
	for len(l.conns) >= l.n && !l.closed {
		if i := l.oldestIdleLocked(); i >= 0 {
			victim = l.conns[i]
			l.conns = append(l.conns[:i], l.conns[i+1:]...)
			break
		}
		l.changed.Wait()
	}
	closed := l.closed
	if !closed {
		l.conns = append(l.conns, lc)
	}
	l.mu.Unlock()
	if victim != nil {
		victim.Conn.Close() // the server's read fails and it lets the connection go
	}
	if closed {
		c.Close()
		return nil, net.ErrClosed
	}
	return lc, nil
}

// oldestIdleLocked returns the index of the oldest idle connection, or -1. The caller holds l.mu.
func (l *limitListener) oldestIdleLocked() int {
	for i, c := range l.conns {
		if !c.busy {
			return i
		}
	}
	return -1
}

func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.changed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// limitConn is a connection served by a limitListener.
type limitConn struct {
	net.Conn
	l    *limitListener
	busy bool // guarded by l.mu
}

// setBusy marks the connection busy (its handler runs) or idle.
func (c *limitConn) setBusy(busy bool) {
	c.l.mu.Lock()
	c.busy = busy
	if !busy {
		c.l.changed.Broadcast()
	}
	c.l.mu.Unlock()
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	l := c.l
	l.mu.Lock()
	for i, o := range l.conns {
		if o == c {
			l.conns = append(l.conns[:i], l.conns[i+1:]...)
			l.changed.Broadcast()
			break
		}
	}
	l.mu.Unlock()
	return err
}
