package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

type workerState int

const (
	stateNone workerState = iota
	stateOnline
	stateListening
)

// Worker is a worker process as its primary sees it: the value Node's cluster.fork() returns. (The
// worker process's own side of the package is in self.go, listen.go and rrlistener.go.) Its methods
// are safe for concurrent use and may be called from event handlers.
type Worker struct {
	// ID is unique among the workers of one Primary and is the worker's NODE_UNIQUE_ID.
	ID int
	// Process is the worker's process.
	Process *os.Process
	// Stdout and Stderr read the worker's output when Settings.Silent is set and ForkOptions gave no
	// writers; nil otherwise. They are the read ends of pipes whose write ends only the worker (and
	// the processes it starts) holds: a reader gets everything the worker wrote, then io.EOF once they
	// have all exited, whenever it reads, before or after the worker's exit. The package never closes
	// them; the caller closes each when done (unlike exec.Cmd.StdoutPipe, the exit does not). A
	// worker blocks when a pipe is full, so read them.
	Stdout, Stderr io.ReadCloser

	p    *Primary
	cmd  *exec.Cmd // nil for an adopted worker
	ch   *ipc.Channel
	bal  balancerCounters // see Balancer
	slot int              // ForkOptions.Slot, for Settings.Sticky; 0: ID

	// Set by Adopt for a worker an earlier primary started (see adopt_linux.go); cmd is nil.
	pid      int           // for Status (Process.Release would reset Process.Pid)
	pidfd    int           // its pidfd, in the poll loop until the exit; owned by the loop's handler
	gone     chan struct{} // closed by the poll loop when the pidfd reports the exit
	status   func(pid int) (code int, sig os.Signal, ok bool)
	pidEntry *pollEntry // guarded by p.mu

	// Guarded by p.mu.
	state                 workerState
	connected, dead       bool
	exitedAfterDisconnect bool
	exitCode              int
	exitSig               os.Signal
	pollEntry             *pollEntry
	// syncing: adopted, and its first round trip (Primary.sendSyncLocked) is unanswered; until it is,
	// the worker is a member of its handles but not free: replies meant for the earlier primary may
	// still come.
	syncing bool
	// held: out of rotation until Release (ForkOptions.Held); never on a free list meanwhile.
	held    bool
	syncSeq int64 // the seq of the latest round trip
	// callbacks wait for replies (the ack of a message the primary sent); the poll loop calls and
	// removes one when its reply arrives, with p.mu held.
	callbacks map[int64]func(*wireMsg)
	// handoffs are the round-robin connections in flight to the worker by seq, waiting for its
	// {accepted} reply like callbacks (a map of their own: no closure per connection).
	handoffs map[int64]*handoff

	exited     chan struct{} // closed by Primary.wait once the exit is recorded (Shutdown waits on it)
	done       chan struct{} // closed on the event goroutine, just before the exit handlers
	listening  chan struct{}
	listenOnce sync.Once
}

// Send sends msg to the worker as JSON: Node's worker.send(). A Go string "shutdown" arrives in a
// Node worker as the string 'shutdown'. Send does not block on the worker; a nil error means the
// message is queued. It returns an error wrapping ErrNotConnected once the channel has closed.
func (w *Worker) Send(msg any) error {
	var err error
	if raw, ok := msg.(json.RawMessage); ok {
		err = w.ch.SendRaw(raw)
	} else {
		err = w.ch.Send(msg)
	}
	return w.sendErr("send to", err)
}

func (w *Worker) sendErr(what string, err error) error {
	if errors.Is(err, ipc.ErrClosed) {
		err = ErrNotConnected
	}
	if err != nil {
		return fmt.Errorf("cluster: %s worker %d: %w", what, w.ID, err)
	}
	return nil
}

// Disconnect asks the worker to close its servers and then its channel, after which it exits once its
// work is done: Node's worker.disconnect(). The worker takes no new connections from now on. It
// returns an error wrapping ErrNotConnected if the channel has closed already.
func (w *Worker) Disconnect() error {
	p := w.p
	p.mu.Lock()
	if !w.connected {
		p.mu.Unlock()
		return w.sendErr("disconnect", ErrNotConnected)
	}
	w.exitedAfterDisconnect = true
	p.removeWorkerLocked(w)
	p.mu.Unlock()
	return w.sendErr("disconnect", p.sendCluster(w, &wireMsg{Act: "disconnect"}))
}

// Kill closes the worker's channel and then sends it sig (SIGTERM when nil): Node's worker.kill().
// It does not wait: Done is closed once the worker has exited.
func (w *Worker) Kill(sig os.Signal) error {
	if sig == nil {
		sig = syscall.SIGTERM
	}
	w.p.mu.Lock()
	w.exitedAfterDisconnect = true
	dead := w.dead
	w.p.mu.Unlock()
	w.ch.Close()
	if dead {
		return nil
	}
	if err := w.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// IsConnected reports whether the worker's IPC channel is open.
func (w *Worker) IsConnected() bool {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.connected
}

// IsDead reports whether the worker process has exited.
func (w *Worker) IsDead() bool {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.dead
}

// ExitedAfterDisconnect reports whether the worker left because it was asked to (Disconnect or Kill)
// or chose to (its own cluster.worker.disconnect()), rather than by accident.
func (w *Worker) ExitedAfterDisconnect() bool {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.exitedAfterDisconnect
}

// Done is closed when the worker process has exited and been reaped, just before the exit handlers run.
func (w *Worker) Done() <-chan struct{} { return w.done }

// ExitCode returns the worker's exit status, or -1 if a signal killed it. Valid once Done is closed.
func (w *Worker) ExitCode() int {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.exitCode
}

// ExitSignal returns the signal that killed the worker, or nil. Valid once Done is closed.
func (w *Worker) ExitSignal() os.Signal {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.exitSig
}

// Listening is closed when the worker first reports that it is listening.
func (w *Worker) Listening() <-chan struct{} { return w.listening }

// readChannel is the poll loop's handler of the worker's channel. Once the channel has closed, its
// socket stays open until the channel's close callbacks have run (onChannelClosed removes it from
// the loop): meanwhile it is unwatched, or its end of file would wake the loop again and again.
func (w *Worker) readChannel() {
	if w.ch.ReadOnce() {
		return
	}
	w.p.mu.Lock()
	e, loop := w.pollEntry, w.p.loop
	w.p.mu.Unlock()
	loop.watch(w.ch.FD(), e, false)
}

// peekCluster is the channel's PeekCluster: it takes the worker's {accepted} reply to a round-robin
// hand-off (one per connection) straight from the read buffer, with no copy and no decoding beyond
// parseAcceptedReply. Anything else goes on to onMessage. On the poll loop, no lock held.
func (w *Worker) peekCluster(line []byte) bool {
	ack, accepted, _, ok := parseAcceptedReply(line)
	if !ok {
		return false
	}
	p := w.p
	p.mu.Lock()
	ho := w.handoffs[ack]
	if ho != nil {
		delete(w.handoffs, ack)
		ho.h.onAcceptedLocked(w, ho, accepted)
	}
	p.mu.Unlock()
	return ho != nil
}

// onMessage is the channel's OnMessage: on the poll loop, no lock of the package held.
func (w *Worker) onMessage(m ipc.Message) {
	p := w.p
	if m.Internal {
		if m.Cmd != "NODE_CLUSTER" {
			if m.FD >= 0 {
				unix.Close(m.FD)
			}
			return
		}
		var cm wireMsg
		if ack, accepted, seq, ok := parseAcceptedReply(m.Raw); ok { // (peekCluster takes most)
			cm = wireMsg{Cmd: "NODE_CLUSTER", Ack: &ack, Accepted: &accepted, Seq: seq}
		} else if err := json.Unmarshal(m.Raw, &cm); err != nil {
			p.logger().Warn("cluster: malformed NODE_CLUSTER message from worker; ignored", "worker", w.ID, "err", err)
			if m.FD >= 0 {
				unix.Close(m.FD)
			}
			return
		}
		p.onInternal(w, &cm, m.FD)
		return
	}
	if m.FD >= 0 { // a handle sent by user code; the Go API carries no handles
		unix.Close(m.FD)
	}
	raw := m.Raw
	p.emit(func(h *handlers) {
		for _, f := range h.message {
			f(w, raw)
		}
	})
}
