package cluster

import "sync/atomic"

// BalancerStats is what the round-robin balancer did with one worker's connections, summed over the
// worker's listening sockets. The counters only grow; InFlight is a gauge.
type BalancerStats struct {
	// HandedOff counts the connections sent to the worker (newconn), whatever became of them, the
	// readiness probes' (Worker.Dial) included.
	HandedOff uint64 `json:"handed_off"`
	// InFlight is the number of connections sent to the worker that it has not answered yet: at most
	// one per listening socket.
	InFlight int64 `json:"in_flight"`
	// Refused counts the connections the worker declined ({accepted:false}: Node's
	// server.maxConnections, or no server under that key); each went to another worker.
	Refused uint64 `json:"refused"`
	// Rerouted counts the connections sent to the worker that never reached it (NODE_HANDLE_NACK, or
	// the worker died or closed its channel before the ACK); each went to another worker.
	Rerouted uint64 `json:"rerouted"`
}

// balancerCounters are a worker's BalancerStats. They are written under Primary.mu (on the hand-off
// path, so atomics: no lock, no allocation for a reader) and read by Worker.Balancer without it.
type balancerCounters struct {
	handedOff, refused, rerouted atomic.Uint64
	inFlight                     atomic.Int64
}

// Balancer returns what the round-robin balancer did with this worker's connections. It takes no
// lock and may be called from any goroutine.
func (w *Worker) Balancer() BalancerStats {
	return BalancerStats{
		HandedOff: w.bal.handedOff.Load(),
		InFlight:  w.bal.inFlight.Load(),
		Refused:   w.bal.refused.Load(),
		Rerouted:  w.bal.rerouted.Load(),
	}
}

// Waiting returns how many connections wait for a free worker on the primary's round-robin sockets:
// those given back to the primary and queued for another worker, plus those the kernel has accepted
// but the primary has not (it accepts only while a worker is free, so a busy cluster's connections
// wait in the listening sockets' backlogs). It takes the primary's lock.
func (p *Primary) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.handles {
		if rr, ok := h.(*rrHandle); ok && !rr.closed {
			n += len(rr.queue) + rr.stickyWaitingLocked() + acceptBacklog(rr.fd)
		}
	}
	return n
}
