package cluster

import (
	"io"
	"net"
	"sync"
)

// This file holds the listeners Listen and ListenPacket return in a worker: rrListener for
// round-robin (connections handed over by the primary) and the wrappers of a shared socket.

// rrAddr is the address a round-robin listener reports: the primary's socket name.
func rrAddr(network, address string, sn *sockname) net.Addr {
	if network == "unix" {
		return &net.UnixAddr{Name: address, Net: "unix"}
	}
	if sn == nil {
		return &net.TCPAddr{}
	}
	return &net.TCPAddr{IP: net.ParseIP(sn.Address), Port: sn.Port}
}

// rrListener yields the connections the primary hands to this worker. deliver runs on the channel's
// reader goroutine; Accept and Close on the user's.
type rrListener struct {
	key, tuple, network string
	index               int
	addr                net.Addr

	mu     sync.Mutex // guards q and closed; a leaf lock (replies are sent after unlocking)
	q      []pendingConn
	closed bool
	ready  chan struct{} // a connection was queued
	done   chan struct{}
	once   sync.Once
}

type pendingConn struct {
	c   net.Conn
	seq int64 // the newconn to answer when the server takes it
}

func (l *rrListener) deliver(c net.Conn, seq int64) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		replyAccepted(seq, false)
		return
	}
	l.q = append(l.q, pendingConn{c, seq})
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// Accept waits for the next connection the primary hands over.
func (l *rrListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: l.network, Addr: l.addr, Err: net.ErrClosed}
		}
		if len(l.q) > 0 {
			pc := l.q[0]
			l.q[0] = pendingConn{}
			l.q = l.q[1:]
			more := len(l.q) > 0
			l.mu.Unlock()
			if more {
				select {
				case l.ready <- struct{}{}:
				default:
				}
			}
			replyAccepted(pc.seq, true)
			return pc.c, nil
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
}

// Close stops the listener and tells the primary, which hands this worker no more connections.
func (l *rrListener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		q := l.q
		l.q = nil
		l.mu.Unlock()
		close(l.done)
		for _, pc := range q { // not taken by the server: the primary re-routes them
			pc.c.Close()
			replyAccepted(pc.seq, false)
		}
		self.release(l.key, l.tuple, l.index)
	})
	return nil
}

// Addr returns the primary's listening address.
func (l *rrListener) Addr() net.Addr { return l.addr }

// replyAccepted answers a newconn. A connection is accepted only once the server took it from Accept;
// one still queued when its listener closes is refused, and the primary gives it to another worker.
func replyAccepted(seq int64, accepted bool) {
	ack := seq
	self.sendCluster(&wireMsg{Ack: &ack, Accepted: &accepted}, false)
}

// shareRef is a shared socket's registration; closing the socket releases it once.
type shareRef struct {
	key, tuple string
	index      int
	once       sync.Once
}

func (r *shareRef) close(c io.Closer) error {
	var err error
	r.once.Do(func() {
		err = c.Close()
		self.release(r.key, r.tuple, r.index)
	})
	return err
}

// sharedListener is a listening socket shared with the primary and the other workers (PolicyNone).
type sharedListener struct {
	net.Listener
	ref *shareRef
}

func (l *sharedListener) Close() error { return l.ref.close(l.Listener) }

// sharedPacketConn is a UDP socket shared with the primary and the other workers.
type sharedPacketConn struct {
	net.PacketConn
	ref *shareRef
}

func (c *sharedPacketConn) Close() error { return c.ref.close(c.PacketConn) }
