package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Held workers and Dial: how a supervisor checks a new worker's health before it serves.
//
// A worker forked with ForkOptions.Held joins its round-robin sockets as usual (its listen calls
// succeed and 'listening' fires) but is put on no free list: the primary hands it no connection
// until Release. Dial hands it one connection of the caller's own, on one of its sockets, so that
// a readiness probe reaches exactly that worker, held or not. A Dial connection that the worker
// refuses, or that cannot be delivered, is closed, never given to another worker.

// ErrNoSocket is returned by Dial when the worker listens on no round-robin socket.
var ErrNoSocket = errors.New("cluster: the worker listens on no round-robin socket")

// ErrBusy is returned by Dial when a connection to the worker is in flight (not yet
// acknowledged); try again later.
var ErrBusy = errors.New("cluster: a connection to the worker is in flight")

// Held reports whether the worker is out of rotation (ForkOptions.Held, until Release).
func (w *Worker) Held() bool {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.held
}

// Release puts a held worker into rotation on every round-robin socket it listens on.
func (w *Worker) Release() {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.held {
		return
	}
	w.held = false
	for _, key := range sortedKeys(p.handles) {
		if h, ok := p.handles[key].(*rrHandle); ok {
			h.rejoinLocked(w)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Dial returns a connection served by this worker: one end of a socket pair whose other end is
// handed to the worker as a new connection on its round-robin socket key (the first it listens on
// when key is ""), exactly as an accepted one. It fails with ErrBusy while another connection to
// the worker awaits its acknowledgement, and with ErrNoSocket when the worker listens on none.
func (w *Worker) Dial(ctx context.Context, key string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.connected {
		return nil, fmt.Errorf("cluster: dial worker %d: %w", w.ID, ErrNotConnected)
	}
	var h *rrHandle
	for _, k := range sortedKeys(p.handles) {
		if rh, ok := p.handles[k].(*rrHandle); ok && rh.member(w) && !rh.closed && (key == "" || key == k) {
			h = rh
			break
		}
	}
	if h == nil {
		return nil, fmt.Errorf("cluster: dial worker %d: %w", w.ID, ErrNoSocket)
	}
	if h.busy[w] != nil {
		return nil, fmt.Errorf("cluster: dial worker %d: %w", w.ID, ErrBusy)
	}
	fds, err := socketpair()
	if err != nil {
		return nil, fmt.Errorf("cluster: dial worker %d: socketpair: %w", w.ID, err)
	}
	mine := os.NewFile(uintptr(fds[0]), "dial")
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, fmt.Errorf("cluster: dial worker %d: %w", w.ID, err)
	}
	// The worker is busy with this connection until its answer; off the free list meanwhile.
	for i, fw := range h.free {
		if fw == w {
			h.free = append(h.free[:i], h.free[i+1:]...)
			break
		}
	}
	seq := p.nextSeq()
	h.sendHandoffLocked(w, &handoff{h: h, w: w, fd: fds[1], seq: seq, probe: true}, h.newconnLine(seq))
	h.pumpLocked()
	return c, nil
}

// Hold takes the worker out of rotation, as ForkOptions.Held does at fork: the round-robin sockets
// hand it no new connection until Release (what it has is not touched). While every worker of a
// socket is held, its connections wait in the kernel's backlog.
func (w *Worker) Hold() {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.held {
		return
	}
	w.held = true
	for _, key := range sortedKeys(p.handles) {
		if h, ok := p.handles[key].(*rrHandle); ok {
			for i, fw := range h.free {
				if fw == w {
					h.free = append(h.free[:i], h.free[i+1:]...)
					break
				}
			}
			h.rerouteStickyLocked(w) // Settings.Sticky: its waiting clients go to their next worker
			h.pumpLocked()
		}
	}
}
