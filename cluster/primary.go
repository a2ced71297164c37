package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/ipc"
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
	// Environ is the workers' base environment; nil means the primary's own (os.Environ()), as in
	// Node. A supervisor that gives each app exactly its own environment sets it.
	Environ []string
	// Env is added to the base environment for every worker.
	Env []string
	// Dir is the workers' working directory; empty means the primary's.
	Dir string
	// Silent pipes each worker's stdout and stderr to Worker.Stdout and Worker.Stderr instead of
	// sharing the primary's. ForkOptions.Stdout and Stderr take precedence.
	Silent bool
	// SchedulingPolicy is RoundRobin or None; the zero value honours NODE_CLUSTER_SCHED_POLICY.
	SchedulingPolicy Policy
	// SysProcAttr is used for every worker (a process group, credentials, ...).
	SysProcAttr *syscall.SysProcAttr
	// HoldListeners keeps a round-robin listening socket open when its last worker leaves, so that
	// connections wait, instead of being refused, until a worker listens on the same address again
	// (a restart after a crash, or a reload of a single worker). Close releases them. Node closes the
	// socket; the corral daemon holds it.
	HoldListeners bool
	// Logger receives protocol errors, such as garbage sent by a worker. Nil discards them.
	Logger *slog.Logger
}

// ForkOptions are the per-worker options of ForkWith.
type ForkOptions struct {
	// Env is added to the worker's environment, like the argument of Node's cluster.fork(env).
	Env map[string]string
	// Stdout and Stderr receive the worker's output, as in exec.Cmd; nil follows Settings.Silent.
	Stdout, Stderr io.Writer
	// ExtraFiles are passed to the worker after its IPC channel (which is fd 3), from fd 4 on.
	ExtraFiles []*os.File
}

// Primary starts workers and shares listening sockets with them. Independent primaries can live in
// one process; the package-level functions act on a default one.
type Primary struct {
	settings Settings
	policy   Policy
	log      *slog.Logger

	seq    atomic.Int64 // NODE_CLUSTER seq, shared by all workers as in Node
	nextID atomic.Int64

	mu      sync.Mutex
	workers map[int]*Worker
	handles map[string]handle
	closed  bool
	loop    *pollLoop // accept and channel reads; see poll.go

	hmu      sync.Mutex
	handlers handlers
	events   eventQueue
}

type handlers struct {
	fork, online, disconnect []func(*Worker)
	listening                []func(*Worker, Address)
	message                  []func(*Worker, json.RawMessage)
	exit                     []func(*Worker, int, os.Signal)
}

// NewPrimary returns a Primary that starts workers as s says.
func NewPrimary(s Settings) *Primary {
	lg := s.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	p := &Primary{
		settings: s,
		policy:   s.SchedulingPolicy.resolve(),
		log:      lg,
		workers:  make(map[int]*Worker),
		handles:  make(map[string]handle),
	}
	return p
}

// Policy returns the scheduling policy in force.
func (p *Primary) Policy() Policy { return p.policy }

// OnFork registers f to run when a worker has been started (Node's 'fork').
func (p *Primary) OnFork(f func(*Worker)) {
	p.hmu.Lock()
	p.handlers.fork = append(p.handlers.fork, f)
	p.hmu.Unlock()
}

// OnOnline registers f to run when a worker reports it is running (Node's 'online').
func (p *Primary) OnOnline(f func(*Worker)) {
	p.hmu.Lock()
	p.handlers.online = append(p.handlers.online, f)
	p.hmu.Unlock()
}

// OnListening registers f to run when a worker is listening on an address (Node's 'listening').
func (p *Primary) OnListening(f func(*Worker, Address)) {
	p.hmu.Lock()
	p.handlers.listening = append(p.handlers.listening, f)
	p.hmu.Unlock()
}

// OnMessage registers f to run for every user message a worker sends (Node's 'message').
func (p *Primary) OnMessage(f func(*Worker, json.RawMessage)) {
	p.hmu.Lock()
	p.handlers.message = append(p.handlers.message, f)
	p.hmu.Unlock()
}

// OnDisconnect registers f to run when a worker's IPC channel has closed (Node's 'disconnect').
func (p *Primary) OnDisconnect(f func(*Worker)) {
	p.hmu.Lock()
	p.handlers.disconnect = append(p.handlers.disconnect, f)
	p.hmu.Unlock()
}

// OnExit registers f to run when a worker process has exited (Node's 'exit'). code is the exit status
// and sig nil for a normal exit; for a worker killed by a signal, code is -1 and sig the signal.
//
// Handlers of all events run one at a time, in the order the events happened, on a goroutine owned by
// the Primary; a handler that blocks delays the events after it. Handlers may call any method of the
// Primary or of a Worker, including Fork.
func (p *Primary) OnExit(f func(w *Worker, code int, sig os.Signal)) {
	p.hmu.Lock()
	p.handlers.exit = append(p.handlers.exit, f)
	p.hmu.Unlock()
}

func (p *Primary) emit(f func(h *handlers)) {
	p.events.push(func() {
		p.hmu.Lock()
		h := p.handlers
		p.hmu.Unlock()
		f(&h)
	})
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

// ForkWith starts a worker.
func (p *Primary) ForkWith(o ForkOptions) (*Worker, error) {
	p.mu.Lock()
	closed, s := p.closed, p.settings
	p.mu.Unlock()
	if closed {
		return nil, errors.New("cluster: fork: primary is closed")
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
	id := int(p.nextID.Add(1))
	parent, child, err := ipc.Pair()
	if err != nil {
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	defer child.Close()

	cmd := exec.Command(path, args...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = s.SysProcAttr
	base := s.Environ
	if base == nil {
		base = os.Environ()
	}
	env := append(append([]string(nil), base...), s.Env...)
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+o.Env[k])
	}
	cmd.Env = append(withoutKeys(env, "NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"),
		"NODE_UNIQUE_ID="+strconv.Itoa(id), "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json")
	cmd.ExtraFiles = append([]*os.File{child}, o.ExtraFiles...)

	w := &Worker{ID: id, p: p, done: make(chan struct{}), listening: make(chan struct{}),
		callbacks: make(map[int64]func(*wireMsg)), state: stateNone}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	if cmd.Stdout == nil {
		if s.Silent {
			r, err := cmd.StdoutPipe()
			if err != nil {
				parent.Close()
				return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
			}
			w.Stdout = r
		} else {
			cmd.Stdout = os.Stdout
		}
	}
	if cmd.Stderr == nil {
		if s.Silent {
			r, err := cmd.StderrPipe()
			if err != nil {
				parent.Close()
				return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
			}
			w.Stderr = r
		} else {
			cmd.Stderr = os.Stderr
		}
	}
	if err := cmd.Start(); err != nil {
		parent.Close()
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	w.cmd = cmd
	w.Process = cmd.Process
	p.mu.Lock()
	p.workers[id] = w
	w.connected = true
	p.mu.Unlock()
	loop, err := p.pollLoop()
	if err != nil {
		parent.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("cluster: fork worker %d: %w", id, err)
	}
	w.ch = ipc.New(parent, ipc.Options{
		OnMessage:    w.onMessage,
		OnClose:      func(error) { p.onChannelClosed(w) },
		Logger:       p.log.With("worker", id),
		ExternalRead: true,
	})
	e, err := loop.add(w.ch.FD(), func() { w.ch.ReadOnce() })
	if err != nil {
		w.ch.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("cluster: fork worker %d: watch channel: %w", id, err)
	}
	p.mu.Lock()
	w.pollEntry = e
	p.mu.Unlock()
	go p.wait(w)
	p.emit(func(h *handlers) {
		for _, f := range h.fork {
			f(w)
		}
	})
	return w, nil
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
// exit, if a grandchild holds the channel open).
func (p *Primary) wait(w *Worker) {
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
	select {
	case <-w.ch.Done():
	case <-time.After(200 * time.Millisecond):
		w.ch.Close()
		<-w.ch.Done()
	}
	p.mu.Lock()
	w.dead = true
	w.exitCode, w.exitSig = code, sig
	delete(p.workers, w.ID)
	p.mu.Unlock()
	p.emit(func(h *handlers) {
		close(w.done)
		for _, f := range h.exit {
			f(w, code, sig)
		}
	})
}

func (p *Primary) onChannelClosed(w *Worker) {
	p.mu.Lock()
	w.connected = false
	p.removeWorkerLocked(w)
	e, loop := w.pollEntry, p.loop
	p.mu.Unlock()
	if loop != nil {
		loop.remove(w.ch.FD(), e)
	}
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
	if ok && h.remove(w) && !(p.settings.HoldListeners && h.holdable()) {
		delete(p.handles, key)
		h.close()
	}
}

// Close closes every listening socket the primary holds and drops the connections waiting in them.
// It does not stop the workers: Disconnect or Kill them.
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

// pollLoop returns the Primary's poll loop, starting it on first use.
func (p *Primary) pollLoop() (*pollLoop, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loop == nil {
		l, err := newPollLoop()
		if err != nil {
			return nil, fmt.Errorf("epoll: %w", err)
		}
		p.loop = l
	}
	return p.loop, nil
}

func (p *Primary) nextSeq() int64 { return p.seq.Add(1) - 1 }

// sendCluster sends a NODE_CLUSTER message to w, registering cb for its reply.
func (p *Primary) sendCluster(w *Worker, m *wireMsg, cb func(*wireMsg)) error {
	m.Cmd = "NODE_CLUSTER"
	m.Seq = p.nextSeq()
	if cb != nil {
		w.cbmu.Lock()
		w.callbacks[m.Seq] = cb
		w.cbmu.Unlock()
	}
	return w.ch.Send(m)
}

func (p *Primary) reply(w *Worker, req *wireMsg, m *wireMsg) {
	ack := req.Seq
	m.Ack = &ack
	if err := p.sendCluster(w, m, nil); err != nil {
		p.log.Debug("cluster: reply to worker", "worker", w.ID, "err", err)
	}
}

// onInternal handles a NODE_CLUSTER message from w (on w's channel reader goroutine).
func (p *Primary) onInternal(w *Worker, m *wireMsg, fd int) {
	if fd >= 0 { // workers send no handles in the cluster protocol
		unix.Close(fd)
	}
	if m.Ack != nil {
		w.cbmu.Lock()
		cb := w.callbacks[*m.Ack]
		delete(w.callbacks, *m.Ack)
		w.cbmu.Unlock()
		if cb != nil {
			cb(m)
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
		p.log.Debug("cluster: unknown act from worker; ignored", "worker", w.ID, "act", m.Act)
	}
}
