package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/ipc"
	"github.com/corralhq/corral/internal/pidwait"
	"golang.org/x/sys/unix"
)

// Settings configures how a Primary starts workers: Node's cluster.setupPrimary.
type Settings struct {
	// Exec is the worker executable. Empty means this program (os.Executable), which then re-executes
	// itself as a worker.
	Exec string
	// Args are the worker's arguments after the executable, e.g. {"server.js"} when Exec is node.
	// When Exec is empty and Args nil, this program's own arguments are used, as Node does.
	Args []string
	// BaseEnv is the workers' base environment, "KEY=value" entries. Nil means the primary's own
	// (os.Environ()), as in Node; an empty non-nil slice means nothing, for a supervisor that gives
	// each worker exactly its own environment.
	BaseEnv []string
	// ExtraEnv is added to BaseEnv for every worker, "KEY=value" entries.
	ExtraEnv []string
	// Dir is the workers' working directory; empty means the primary's.
	Dir string
	// Silent pipes each worker's stdout and stderr to Worker.Stdout and Worker.Stderr instead of
	// sharing the primary's. ForkOptions.Stdout and Stderr take precedence.
	Silent bool
	// SchedulingPolicy is PolicyRoundRobin or PolicyNone; the zero value honours
	// NODE_CLUSTER_SCHED_POLICY.
	SchedulingPolicy Policy
	// SysProcAttr is used for every worker (a process group, credentials, ...).
	SysProcAttr *syscall.SysProcAttr
	// HoldListeners keeps a round-robin listening socket open when its last worker leaves, so that
	// connections wait, instead of being refused, until a worker listens on the same address again
	// (a restart after a crash, or a reload of a single worker). Close releases them. Node closes the
	// socket; the corral daemon holds it.
	HoldListeners bool
	// Sticky makes the round-robin balancer send every connection from one client IP address to the
	// same worker (sticky sessions, for protocols such as Socket.IO's long polling that keep state in
	// a worker). The worker is chosen by rendezvous hashing of the IP over the workers' slots
	// (ForkOptions.Slot): a worker that leaves loses only its own clients, and a replacement with the
	// same slot gets them back. A connection whose worker is busy waits for it. Connections a worker
	// refuses or never received go to any free worker.
	Sticky bool
	// Logger receives protocol errors, such as garbage sent by a worker. Nil discards them.
	Logger *slog.Logger
}

// ForkOptions are the per-worker options of ForkWith.
type ForkOptions struct {
	// Env is added to the worker's environment after Settings.BaseEnv and Settings.ExtraEnv (a key
	// given twice takes the last value), like the argument of Node's cluster.fork(env).
	Env map[string]string
	// Stdout and Stderr receive the worker's output, as in exec.Cmd; nil follows Settings.Silent.
	Stdout, Stderr io.Writer
	// ExtraFiles are passed to the worker after its IPC channel (which is fd 3), from fd 4 on.
	ExtraFiles []*os.File
	// Held starts the worker out of rotation: it may listen, but round-robin sockets hand it no
	// connection until Worker.Release (Worker.Dial still reaches it). See held.go.
	Held bool
	// Slot identifies the worker for Settings.Sticky: a worker forked with the slot of one that left
	// takes over its clients. Zero means the worker's ID (every worker its own slot).
	Slot int
}

// Primary starts workers and shares listening sockets with them. Independent primaries can live in
// one process; the package-level functions act on a default one. The package documentation says
// which goroutines a Primary runs and what its lock guards.
type Primary struct {
	seq    atomic.Int64 // NODE_CLUSTER seq, shared by all workers as in Node
	nextID atomic.Int64
	log    atomic.Pointer[slog.Logger]

	// mu guards the fields below, the fields of each Worker marked "guarded by p.mu" (its reply
	// callbacks included), and the state of every handle. Held, it allows ipc sends and Close (the
	// ipc package never calls back on the sender's goroutine), pollLoop.add/remove, eventQueue.push,
	// binding and closing sockets; it never allows a call that waits for another goroutine of the
	// Primary, nor user code.
	mu       sync.Mutex
	settings Settings
	policy   Policy
	workers  map[int]*Worker
	handles  map[string]handle
	handlers handlers
	closed   bool          // Close or Shutdown began: no more forks
	quiesced bool          // Quiesce: accept no more connections
	settled  chan struct{} // Quiesce waits on it: closed when a hand-off is acknowledged or given back
	loop     *pollLoop     // accept and channel reads; see poll_linux.go

	waiters sync.WaitGroup // one per Primary.wait goroutine; Add happens under mu while !closed
	events  eventQueue     // runs the user's handlers; see events.go
}

// NewPrimary returns a Primary that starts workers as s says.
func NewPrimary(s Settings) *Primary {
	p := &Primary{
		settings: s,
		policy:   s.SchedulingPolicy.resolve(),
		workers:  make(map[int]*Worker),
		handles:  make(map[string]handle),
	}
	p.setLogger(s.Logger)
	return p
}

func (p *Primary) setLogger(lg *slog.Logger) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	p.log.Store(lg)
}

func (p *Primary) logger() *slog.Logger { return p.log.Load() }

// Policy returns the scheduling policy in force.
func (p *Primary) Policy() Policy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.policy
}

// Workers returns the live workers keyed by Worker.ID. A worker leaves the map once it has both
// exited and disconnected.
func (p *Primary) Workers() map[int]*Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[int]*Worker, len(p.workers))
	for id, w := range p.workers {
		m[id] = w
	}
	return m
}

// Fork starts a worker with env added to its environment: Node's cluster.fork(env).
func (p *Primary) Fork(env map[string]string) (*Worker, error) {
	return p.ForkWith(ForkOptions{Env: env})
}

// ForkWith starts a worker. It fails with an error wrapping ErrPrimaryClosed once Close or Shutdown
// has begun, and ErrNotSupported on systems other than Linux.
func (p *Primary) ForkWith(o ForkOptions) (*Worker, error) {
	p.mu.Lock()
	closed, s := p.closed, p.settings
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("cluster: fork: %w", ErrPrimaryClosed)
	}
	path, args := s.Exec, s.Args
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cluster: fork: %w", err)
		}
		path = exe
		if args == nil {
			args = os.Args[1:]
		}
	}
	loop, err := p.pollLoop()
	if err != nil {
		return nil, fmt.Errorf("cluster: fork: %w", err)
	}
	id := int(p.nextID.Add(1))
	parent, child, err := ipc.Pair()
	if err != nil {
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	defer child.Close()

	cmd := exec.Command(path, args...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = s.SysProcAttr
	cmd.Env = workerEnv(id, s, o.Env)
	cmd.ExtraFiles = append([]*os.File{child}, o.ExtraFiles...)

	w := &Worker{ID: id, slot: o.Slot, p: p, done: make(chan struct{}), exited: make(chan struct{}),
		listening: make(chan struct{}), callbacks: make(map[int64]func(*wireMsg)), handoffs: make(map[int64]*handoff),
		state: stateNone, held: o.Held}
	// Silent output goes through plain pipes, not cmd.StdoutPipe: the package waits for the process
	// itself (Primary.wait), and exec.Cmd.Wait would close a StdoutPipe's read end under the user's
	// reader. The parent keeps only the read end, so the reader drains everything, then sees io.EOF.
	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	closeReaders := func() {
		for _, r := range []io.ReadCloser{w.Stdout, w.Stderr} {
			if r != nil {
				r.Close()
			}
		}
	}
	silent := func(dst *io.Writer, std *os.File, rd *io.ReadCloser) error {
		switch {
		case *dst != nil:
		case s.Silent:
			r, wr, err := os.Pipe()
			if err != nil {
				return err
			}
			childEnds = append(childEnds, wr)
			*dst, *rd = wr, r
		default:
			*dst = std
		}
		return nil
	}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	err = silent(&cmd.Stdout, os.Stdout, &w.Stdout)
	if err == nil {
		err = silent(&cmd.Stderr, os.Stderr, &w.Stderr)
	}
	if err != nil {
		parent.Close()
		closeReaders()
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	if err := cmd.Start(); err != nil {
		parent.Close()
		closeReaders()
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	w.cmd = cmd
	w.Process = cmd.Process
	w.ch = ipc.New(parent, ipc.Options{
		OnMessage:    w.onMessage,
		OnClose:      func(error) { p.onChannelClosed(w) },
		Logger:       p.logger().With("worker", id),
		ExternalRead: true,
		PeekCluster:  w.peekCluster,
	})
	if !knownToTakeCoalescedHandles(s.Exec) {
		w.ch.SetHandleAlone()
	}

	// Register the worker and its channel in one step under p.mu, so that Close and Shutdown either
	// see the worker or make this fork fail, and so that the first message (which the poll loop may
	// read as soon as the channel is added) finds the worker connected.
	p.mu.Lock()
	err = ErrPrimaryClosed
	var entry *pollEntry
	if !p.closed {
		entry, err = loop.add(w.ch.FD(), w.readChannel)
	}
	if err != nil {
		p.mu.Unlock()
		w.ch.Close()
		cmd.Process.Kill()
		cmd.Wait()
		<-w.ch.Done()
		closeReaders()
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	w.pollEntry = entry
	w.connected = true
	p.workers[id] = w
	p.waiters.Add(1)
	p.mu.Unlock()
	go p.wait(w)
	p.emit(func(h *handlers) {
		for _, f := range h.fork {
			f(w)
		}
	})
	return w, nil
}

// workerEnv is BaseEnv (or the primary's environment), ExtraEnv, the fork's own variables in key
// order, and the channel variables.
func workerEnv(id int, s Settings, forkEnv map[string]string) []string {
	base := s.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	env := append(append([]string(nil), base...), s.ExtraEnv...)
	keys := make([]string, 0, len(forkEnv))
	for k := range forkEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+forkEnv[k])
	}
	return append(withoutKeys(env, "NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"),
		"NODE_UNIQUE_ID="+strconv.Itoa(id), "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json")
}

func withoutKeys(env []string, keys ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, k := range keys {
			if len(kv) > len(k) && kv[len(k)] == '=' && kv[:len(k)] == k {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// wait reaps the worker and reports its exit once its channel has closed too (or shortly after the
// exit, if a grandchild holds the channel open). It runs on a goroutine of its own per worker.
//
// The goroutine waits in pidwait.Exited until the worker has exited: on Linux it is parked in the
// runtime's poller on a pidfd rather than holding a thread blocked in waitid for the worker's whole
// life (exec.Cmd.Wait's blocked thread also saw the exit late under load). cmd.Wait then reaps the
// worker at once, so the os package closes its own pidfd and Worker.Process stays as Node's
// worker.process does: its Pid kept, Signal reporting os.ErrProcessDone.
func (p *Primary) wait(w *Worker) {
	defer p.waiters.Done()
	pidwait.Exited(w.cmd.Process)
	err := w.cmd.Wait()
	code, sig := 0, os.Signal(nil)
	if st, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		switch {
		case st.Signaled():
			code, sig = -1, st.Signal()
		case st.Exited():
			code = st.ExitStatus()
		}
	} else if err != nil {
		code = -1
	}
	p.finishWorker(w, code, sig)
}

// finishWorker reports the exit of w (forked or adopted) once its channel has closed too, or 200ms
// after the exit if a grandchild holds the channel open; on the worker's waiter goroutine.
func (p *Primary) finishWorker(w *Worker, code int, sig os.Signal) {
	t := time.NewTimer(200 * time.Millisecond)
	select {
	case <-w.ch.Done():
	case <-t.C:
		// The process is gone but its channel is still open: a process it started holds it, or the
		// poll loop has not yet read to the end. Stop receiving rather than close: what the worker
		// wrote before dying is still read, so a hand-off it acknowledged is known to be its own
		// (closed with it), not taken for undelivered and handed to another worker, which would then
		// wait for a request the dead worker had already read: a connection left hanging.
		w.ch.CloseRead()
		t.Reset(time.Second)
		select {
		case <-w.ch.Done():
		case <-t.C:
			w.ch.Close() // the poll loop is not reading it (a closed Primary): drop the rest
			<-w.ch.Done()
		}
	}
	t.Stop()
	p.mu.Lock()
	w.dead = true
	w.exitCode, w.exitSig = code, sig
	delete(p.workers, w.ID)
	p.mu.Unlock()
	close(w.exited)
	p.emit(func(h *handlers) {
		close(w.done)
		for _, f := range h.exit {
			f(w, code, sig)
		}
	})
}

// onChannelClosed is w's channel's OnClose: on the channel's writer goroutine, no lock held.
func (p *Primary) onChannelClosed(w *Worker) {
	p.mu.Lock()
	was := w.connected
	w.connected = false
	p.removeWorkerLocked(w)
	e, loop := w.pollEntry, p.loop
	p.mu.Unlock()
	if !was {
		return // a fork that failed after its channel was made: the worker never existed
	}
	loop.remove(w.ch.FD(), e)
	p.emit(func(h *handlers) {
		for _, f := range h.disconnect {
			f(w)
		}
	})
}

// removeWorkerLocked drops w from every handle and closes the handles left without workers, at
// once, so that a worker asking for the same address next binds it again without EADDRINUSE.
func (p *Primary) removeWorkerLocked(w *Worker) {
	for key := range p.handles {
		p.removeFromHandleLocked(key, w)
	}
}

func (p *Primary) removeFromHandleLocked(key string, w *Worker) {
	h, ok := p.handles[key]
	if ok && h.remove(w) && !h.keepOpen(p.settings.HoldListeners) {
		delete(p.handles, key)
		h.close()
	}
}

// Close closes every listening socket the primary holds at once, dropping the connections waiting
// in them, and makes later forks fail with ErrPrimaryClosed. It does not stop the workers and waits
// for nothing: their channels stay open and their events keep coming until they exit, and the
// primary's goroutines end after the last worker's. To stop the workers too, and wait until
// everything the Primary started has ended, use Shutdown; or Disconnect or Kill each worker.
func (p *Primary) Close() error {
	p.mu.Lock()
	p.closed = true
	for k, h := range p.handles {
		delete(p.handles, k)
		h.close()
	}
	loop := p.loop
	p.mu.Unlock()
	if loop != nil {
		loop.stop() // now, or once the last worker's channel has closed
	}
	return nil
}

// Quiesce stops accepting connections on the round-robin sockets and waits until every connection
// the primary has accepted is in a worker's hands (its NODE_HANDLE_ACK read) or closed, or until ctx
// ends (its error is returned). New connections then wait in the sockets' backlogs, where they
// survive the primary: a supervisor that hands its workers over to a successor (which adopts them
// and the sockets) calls it last, so that it exits holding no connection. Workers keep being served
// the connections given back to the primary (refused, or never acknowledged), and replies and
// messages flow as before. It is final: the Primary accepts nothing more.
func (p *Primary) Quiesce(ctx context.Context) error {
	p.mu.Lock()
	p.quiesced = true
	for _, h := range p.handles {
		if rh, ok := h.(*rrHandle); ok {
			rh.armLocked()
		}
	}
	p.mu.Unlock()
	for {
		p.mu.Lock()
		n := 0
		for _, h := range p.handles {
			if rh, ok := h.(*rrHandle); ok {
				n += rh.unsettledLocked()
			}
		}
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		if p.settled == nil {
			p.settled = make(chan struct{})
		}
		ch := p.settled
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cluster: quiesce: %d connection(s) not yet acknowledged: %w", n, ctx.Err())
		}
	}
}

// settledLocked wakes Quiesce, if it waits, after a hand-off changed state. Called with p.mu held.
func (p *Primary) settledLocked() {
	if p.settled != nil {
		close(p.settled)
		p.settled = nil
	}
}

// Shutdown stops the Primary gracefully: it makes later forks fail (ErrPrimaryClosed), asks every
// worker to disconnect (Worker.Disconnect: a worker closes its servers, finishes its work and
// exits), and waits for them to exit. If ctx ends first, it kills the workers still running with
// SIGKILL (Worker.Kill) and returns an error wrapping ctx's error. Either way it then closes the
// listening sockets (as Close) and waits until every goroutine the Primary started has ended: the
// poll loop, each worker's channel goroutine and waiter, and the event goroutine, after the queued
// event handlers (the workers' disconnect and exit events included) have returned.
//
// Since it waits for the handlers to return, Shutdown must not be called from an event handler, nor
// while holding a lock that a handler takes. Calling it again, or after Close, is safe.
func (p *Primary) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	ws := make([]*Worker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		_ = w.Disconnect() // ErrNotConnected: its channel has closed already; its exit is awaited below
	}
	killed := 0
	for _, w := range ws {
		select {
		case <-w.exited:
			continue
		case <-ctx.Done():
		}
		select {
		case <-w.exited:
		default:
			w.Kill(syscall.SIGKILL)
			killed++
			<-w.exited // SIGKILL cannot be caught: the exit follows
		}
	}
	p.Close()
	p.waiters.Wait() // every worker reaped, its channel closed and its writer goroutine ending
	p.mu.Lock()
	loop := p.loop
	p.mu.Unlock()
	if loop != nil {
		loop.wait() // it stops once its last descriptor is removed, which Close and the channels did
	}
	p.events.wait()
	if killed > 0 {
		return fmt.Errorf("cluster: shutdown: killed %d worker(s) still running: %w", killed, ctx.Err())
	}
	return nil
}

// pollLoop returns the Primary's poll loop, starting it on first use; a closed Primary starts none
// (nothing would stop it).
func (p *Primary) pollLoop() (*pollLoop, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loop == nil {
		if p.closed {
			return nil, ErrPrimaryClosed
		}
		l, err := newPollLoop()
		if err != nil {
			return nil, fmt.Errorf("poll loop: %w", err)
		}
		p.loop = l
	}
	return p.loop, nil
}

func (p *Primary) nextSeq() int64 { return p.seq.Add(1) - 1 }

// sendCluster sends a NODE_CLUSTER message to w. It may be called with p.mu held.
func (p *Primary) sendCluster(w *Worker, m *wireMsg) error {
	m.Cmd = "NODE_CLUSTER"
	m.Seq = p.nextSeq()
	return w.ch.Send(m)
}

func (p *Primary) reply(w *Worker, req *wireMsg, m *wireMsg) {
	ack := req.Seq
	m.Ack = &ack
	if err := p.sendCluster(w, m); err != nil {
		p.logger().Debug("cluster: reply to worker", "worker", w.ID, "err", err)
	}
}

// onInternal handles a NODE_CLUSTER message from w, on the poll loop (w's channel reader).
func (p *Primary) onInternal(w *Worker, m *wireMsg, fd int) {
	if fd >= 0 { // workers send no handles in the cluster protocol
		unix.Close(fd)
	}
	if m.Ack != nil {
		p.mu.Lock()
		cb := w.callbacks[*m.Ack]
		delete(w.callbacks, *m.Ack)
		if cb != nil {
			cb(m) // with p.mu held
		}
		ho := w.handoffs[*m.Ack]
		if ho != nil {
			delete(w.handoffs, *m.Ack)
			ho.h.onAcceptedLocked(w, ho, m.Accepted != nil && *m.Accepted)
		}
		p.mu.Unlock()
		if cb != nil || ho != nil {
			return
		}
	}
	switch m.Act {
	case "online":
		p.mu.Lock()
		if w.state == stateNone {
			w.state = stateOnline
		}
		p.mu.Unlock()
		p.emit(func(h *handlers) {
			for _, f := range h.online {
				f(w)
			}
		})
	case "queryServer":
		p.queryServer(w, m)
	case "listening":
		addr := Address{Address: jsString(m.Address), Port: -1}
		if rawIsNull(m.Address) {
			addr.Address = ""
		}
		if n, ok := rawInt64(m.Port); ok {
			addr.Port = int(n)
		}
		_ = json.Unmarshal(m.AddressType, &addr.AddressType)
		p.mu.Lock()
		w.state = stateListening
		p.mu.Unlock()
		p.emit(func(h *handlers) {
			w.listenOnce.Do(func() { close(w.listening) })
			for _, f := range h.listening {
				f(w, addr)
			}
		})
	case "close":
		p.mu.Lock()
		p.removeFromHandleLocked(m.Key, w)
		p.mu.Unlock()
	case "exitedAfterDisconnect":
		p.mu.Lock()
		w.exitedAfterDisconnect = true
		p.mu.Unlock()
		p.reply(w, m, &wireMsg{})
	default:
		p.logger().Debug("cluster: unknown act from worker; ignored", "worker", w.ID, "act", m.Act)
	}
}

// knownToTakeCoalescedHandles reports whether the worker program exec is one that keeps a received fd
// for the next NODE_HANDLE line whatever else came in the same read: Node, and Go programs built with
// this package (exec empty: this program). Other workers (Deno, which gives the fd to the first line of
// the read; Bun; anything run by a #! line) get their handles only once they have read what precedes
// them (ipc.Channel.SetHandleAlone).
func knownToTakeCoalescedHandles(exec string) bool {
	if exec == "" {
		return true
	}
	base := filepath.Base(exec)
	return base == "node" || base == "nodejs"
}

// isBun reports whether the worker program exec is Bun, whose channel marks internal lines.
func isBun(exec string) bool { return filepath.Base(exec) == "bun" }
