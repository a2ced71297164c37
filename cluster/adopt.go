package cluster

import (
	"os"
	"sort"
)

// Adopting workers: a supervisor that must survive its own death (a SIGKILL, an upgrade) keeps the
// descriptors its Primary depends on in another process, then rebuilds a Primary around them:
//
//	// the old supervisor, while it runs:
//	lns, _ := p.ListenerFiles()   // each listening socket, by handle key
//	ch, _ := w.ChannelFile()      // the primary's end of each worker's channel
//	// ... plus w.ID, w.Process.Pid, w.HandleKeys(), whether w was listening, p.NextSeq()
//
//	// its successor:
//	q := cluster.NewPrimary(settings)
//	q.SetNextSeq(seq + 1<<32)     // headroom for what the old one sent after the snapshot
//	q.AdoptListener(key, ln)      // every socket first
//	q.Adopt(cluster.AdoptSpec{ID: id, Pid: pid, Channel: ch, Keys: keys, Listening: true, Status: st})
//
// The files are Linux only (adopt_linux.go); elsewhere they fail with ErrNotSupported.

// AdoptSpec describes a worker started by an earlier primary, for Primary.Adopt.
type AdoptSpec struct {
	// ID is the worker's NODE_UNIQUE_ID (Worker.ID in the earlier primary).
	ID int
	// Pid is the worker's process id. The caller makes sure it is still the same process (its start
	// time, /proc/<pid>/stat field 22, against pid reuse); Adopt fails if no such process exists.
	Pid int
	// Channel is the primary's end of the worker's IPC channel (Worker.ChannelFile in the earlier
	// primary). Adopt takes ownership of it, and closes it if it fails.
	Channel *os.File
	// Keys are the handle keys of the sockets the worker was using (Worker.HandleKeys in the earlier
	// primary); each must have been given to AdoptListener. The worker is put back on each
	// round-robin socket as a free worker once it has answered a first round trip, which flushes the
	// replies it still owed the earlier primary.
	Keys []string
	// Listening says that the worker had reported 'listening': Worker.Listening is closed at once.
	// No 'online' or 'listening' event is replayed; they happened in the earlier primary.
	Listening bool
	// Status reports how the process ended, once its pidfd says it has: it is not this process's
	// child, so wait4 cannot tell (the keeper reaps it). It runs on the worker's own goroutine and may
	// wait until the status is known; Shutdown waits for it. nil, or ok false: the exit is reported
	// as code -1 and a nil signal.
	Status func(pid int) (code int, sig os.Signal, ok bool)
}

// NextSeq returns the seq number the Primary will put on its next NODE_CLUSTER message. A
// supervisor stores it so that its successor's Primary can continue above it (SetNextSeq).
func (p *Primary) NextSeq() int64 { return p.seq.Load() }

// SetNextSeq makes the Primary number its NODE_CLUSTER messages from n on; it never lowers the
// number. An adopted worker may still answer a message of the earlier primary (a connection it
// accepts late, {"ack":seq,"accepted":true}), which must not be taken for the answer to a message
// of this one, so n must be above every seq the earlier primary used. A NextSeq stored some time
// before the earlier primary died is behind by what it sent since (about one per connection): add
// headroom, such as 1<<32; seq numbers are JavaScript numbers in a Node worker, exact up to 2^53.
func (p *Primary) SetNextSeq(n int64) {
	for {
		cur := p.seq.Load()
		if n <= cur || p.seq.CompareAndSwap(cur, n) {
			return
		}
	}
}

// NextWorkerID returns the ID the next forked worker will get.
func (p *Primary) NextWorkerID() int { return int(p.nextID.Load()) + 1 }

// SetNextWorkerID makes the next forked worker's ID at least id; it never lowers it. Adopt already
// keeps IDs above every adopted worker's; this also skips the IDs of workers that died while no
// primary ran.
func (p *Primary) SetNextWorkerID(id int) {
	p.raiseNextID(int64(id) - 1)
}

// raiseNextID makes the last ID handed out at least n.
func (p *Primary) raiseNextID(n int64) {
	for {
		cur := p.nextID.Load()
		if n <= cur || p.nextID.CompareAndSwap(cur, n) {
			return
		}
	}
}

// HandleKeys returns, sorted, the handle keys (Node's `address:port:addressType:fd:index`) of the
// sockets the worker uses: those it receives connections from (round-robin) and those it was given
// (PolicyNone, UDP). A supervisor stores them for AdoptSpec.Keys. A worker that disconnected or
// closed its servers uses none.
func (w *Worker) HandleKeys() []string {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var keys []string
	for key, h := range p.handles {
		if h.member(w) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	return keys
}
