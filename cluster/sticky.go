package cluster

// Sticky sessions (Settings.Sticky): the round-robin handle accepts a connection, hashes its client's IP
// address, and sends it to the worker that wins the rendezvous hash over the members' slots; when that
// worker is busy, the connection waits in the worker's own queue (rrHandle.sticky). All of it runs
// under Primary.mu, like the rest of the handle.

// maxStickyWaiting bounds the connections accepted and waiting for their busy worker: beyond it the
// listening socket is unwatched, and clients wait in the kernel's backlog.
const maxStickyWaiting = 8192

// stickyScore is the rendezvous-hash score of a client key for a worker slot (splitmix64 of both).
func stickyScore(key uint64, slot int) uint64 {
	z := key ^ (uint64(slot)+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// slotOf is w's slot for sticky sessions.
func slotOf(w *Worker) int {
	if w.slot != 0 {
		return w.slot
	}
	return w.ID
}

// stickyTargetLocked returns the member that owns client key: the highest score over the members'
// slots; of two members with one slot (a reload's old and new worker), the newer.
func (h *rrHandle) stickyTargetLocked(key uint64) *Worker {
	var best *Worker
	var bestScore uint64
	for w := range h.all {
		if !w.connected || w.held { // a held worker gets no connection until Worker.Release
			continue
		}
		s := stickyScore(key, slotOf(w))
		if best == nil || s > bestScore || s == bestScore && w.ID > best.ID {
			best, bestScore = w, s
		}
	}
	return best
}

// stickyConn is a connection waiting for the worker its client is bound to.
type stickyConn struct {
	fd  int
	key uint64
}

// routeStickyLocked sends fd (client key) to its worker if that worker is free, or queues it there;
// with no member left it goes to the common queue. It returns with the free list and queues updated;
// the caller ends with pumpLocked.
func (h *rrHandle) routeStickyLocked(fd int, key uint64) {
	w := h.stickyTargetLocked(key)
	if w == nil {
		h.requeueLocked(fd)
		return
	}
	for i, fw := range h.free {
		if fw == w {
			h.free = append(h.free[:i], h.free[i+1:]...)
			h.sendLocked(w, fd)
			return
		}
	}
	if h.sticky == nil {
		h.sticky = make(map[*Worker][]stickyConn)
	}
	h.sticky[w] = append(h.sticky[w], stickyConn{fd, key})
	h.stickyN++
}

// pumpStickyLocked gives each free worker the first connection waiting for it.
func (h *rrHandle) pumpStickyLocked() {
	for i := 0; i < len(h.free); {
		w := h.free[i]
		q := h.sticky[w]
		if len(q) == 0 {
			i++
			continue
		}
		h.free = append(h.free[:i], h.free[i+1:]...)
		h.stickyN--
		if len(q) == 1 {
			delete(h.sticky, w)
		} else {
			h.sticky[w] = q[1:]
		}
		h.sendLocked(w, q[0].fd)
	}
}

// rerouteStickyLocked sends the connections waiting for w, which left, to their clients' next worker.
func (h *rrHandle) rerouteStickyLocked(w *Worker) {
	q := h.sticky[w]
	if len(q) == 0 {
		return
	}
	delete(h.sticky, w)
	h.stickyN -= len(q)
	for _, c := range q {
		w.bal.rerouted.Add(1)
		h.routeStickyLocked(c.fd, c.key)
	}
}

// stickyWaitingLocked counts the connections waiting for a particular worker.
func (h *rrHandle) stickyWaitingLocked() int { return h.stickyN }
