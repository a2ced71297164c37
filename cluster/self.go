package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

// This file is the worker process's own side of the package (Node's lib/internal/cluster/child.js):
// the channel to the parent, opened at init, and the messages on it. listen.go asks the primary for
// sockets; rrlistener.go is what Listen returns.

// self is this process's side of the cluster: the one piece of global state, as in Node, because a
// process is started as a worker or it is not.
var self *processState

// init opens the IPC channel when this process has one; see "In a worker" in the package
// documentation for what that does to the process.
func init() { self = newProcessState() }

// processState is this process's channel to its parent and the worker's state.
//
// Goroutines: the channel's reader runs onMessage (connections handed over, the disconnect request,
// user messages), its writer runs onClose; Messages has its own queue goroutine; Listen, Accept,
// Send and Serve run on the user's goroutines.
type processState struct {
	id      int // NODE_UNIQUE_ID; > 0 in a worker
	ch      *ipc.Channel
	initErr error
	log     *slog.Logger

	// mu guards the fields below. Under it the package calls nothing but ipc sends (which never
	// call back) and eventQueue.push; stop functions and reply delivery happen after unlocking.
	mu       sync.Mutex
	seq      int64
	cbs      map[int64]chan *wireReply // replies awaited (queryServer); closed when none will come
	servers  map[string]*rrListener
	shared   map[string]func() // key → close of a shared listener, for disconnect
	indexes  map[string]*indexSet
	msgs     chan json.RawMessage // Messages(); nil until the first call
	msgq     eventQueue           // feeds msgs without ever blocking the channel's reader
	backlog  []json.RawMessage    // user messages received before the first Messages call
	stopping []func()             // called on the primary's disconnect request or "shutdown"
	left     bool                 // a disconnect was requested: channel EOF is expected
	stopped  bool                 // runStop ran: stop functions registered later run at once
}

type wireReply struct {
	m  *wireMsg
	fd int
}

type indexSet struct {
	next int
	used map[int]struct{}
}

func newProcessState() *processState {
	s := &processState{
		cbs:     make(map[int64]chan *wireReply),
		servers: make(map[string]*rrListener),
		shared:  make(map[string]func()),
		indexes: make(map[string]*indexSet),
		log:     slog.New(slog.DiscardHandler),
	}
	fdStr, hasFD := os.LookupEnv("NODE_CHANNEL_FD")
	idStr, isWorker := os.LookupEnv("NODE_UNIQUE_ID")
	if isWorker {
		s.id, _ = strconv.Atoi(idStr)
		if s.id <= 0 {
			s.id = 1 << 30 // present but not a positive number: still a worker, as in Node
		}
	}
	if !hasFD {
		if isWorker {
			s.initErr = errors.New("cluster: NODE_UNIQUE_ID is set but NODE_CHANNEL_FD is not")
		}
		return s
	}
	mode := os.Getenv("NODE_CHANNEL_SERIALIZATION_MODE")
	for _, k := range []string{"NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"} {
		os.Unsetenv(k) // as Node: our own children must not take themselves for workers
	}
	if mode != "" && mode != "json" {
		s.initErr = fmt.Errorf("cluster: IPC serialization %q is not supported (use json)", mode)
		return s
	}
	fd, err := strconv.Atoi(fdStr)
	if err != nil || fd < 0 {
		s.initErr = fmt.Errorf("cluster: bad NODE_CHANNEL_FD %q", fdStr)
		return s
	}
	conn, err := ipc.FromFD(fd)
	if err != nil {
		s.initErr = fmt.Errorf("cluster: open IPC channel: %w", err)
		return s
	}
	s.ch = ipc.New(conn, ipc.Options{OnMessage: s.onMessage, OnClose: s.onClose})
	if s.id > 0 {
		s.sendCluster(&wireMsg{Act: "online"}, false)
	}
	return s
}

// ID returns this worker's id (Node's cluster.worker.id), or 0 in a process that is not a worker.
func ID() int {
	if self.id == 1<<30 {
		return 0
	}
	return self.id
}

// Send sends msg to the parent process as JSON: Node's process.send(). It returns once the message is
// written to the channel, so the process may exit right after. It works in a cluster worker
// and in any process started with an IPC channel (the corral daemon gives one to fork-mode apps).
// It returns ErrNoChannel without a channel, and an error wrapping ErrNotConnected once the channel
// has closed.
func Send(msg any) error {
	if self.ch == nil {
		if self.initErr != nil { // a channel was announced but could not be opened
			return fmt.Errorf("%w: %w", ErrNoChannel, self.initErr)
		}
		return ErrNoChannel
	}
	if err := self.ch.SendWait(msg); err != nil {
		if errors.Is(err, ipc.ErrClosed) {
			err = ErrNotConnected
		}
		return fmt.Errorf("cluster: send: %w", err)
	}
	return nil
}

// Ready tells the parent that this process is ready to serve: it sends the message "ready", which the
// corral daemon and PM2 wait for when an app is started with wait_ready.
func Ready() error { return Send("ready") }

// Messages returns a channel of the messages the parent sends. Messages that arrived before the first
// call are delivered first, as Node buffers them until a 'message' listener exists. Every call returns
// the same channel. A reader that falls behind delays only the messages, never the channel (they
// queue in memory).
func Messages() <-chan json.RawMessage {
	self.mu.Lock()
	defer self.mu.Unlock()
	if self.msgs == nil {
		self.msgs = make(chan json.RawMessage, 64)
		for _, m := range self.backlog {
			self.forwardLocked(m)
		}
		self.backlog = nil
	}
	return self.msgs
}

func (s *processState) forwardLocked(m json.RawMessage) {
	out := s.msgs
	s.msgq.push(func() { out <- m })
}

// onStop registers fn to run when the parent asks this worker to disconnect or sends "shutdown";
// if that already happened, fn runs now.
func (s *processState) onStop(fn func()) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		fn()
		return
	}
	s.stopping = append(s.stopping, fn)
	s.mu.Unlock()
}

// stopRequested reports whether the parent asked this process to stop (disconnect or "shutdown").
func (s *processState) stopRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.left || s.stopped
}

// onMessage is the channel's OnMessage, on its reader goroutine.
func (s *processState) onMessage(m ipc.Message) {
	if !m.Internal {
		if m.FD >= 0 {
			unix.Close(m.FD)
		}
		s.mu.Lock()
		if s.msgs == nil {
			s.backlog = append(s.backlog, m.Raw)
		} else {
			s.forwardLocked(m.Raw)
		}
		s.mu.Unlock()
		if isShutdown(m.Raw) {
			s.runStop()
		}
		return
	}
	if m.Cmd != "NODE_CLUSTER" {
		if m.FD >= 0 {
			unix.Close(m.FD)
		}
		return
	}
	var cm wireMsg
	if err := json.Unmarshal(m.Raw, &cm); err != nil {
		s.log.Warn("cluster: malformed message from primary", "err", err)
		if m.FD >= 0 {
			unix.Close(m.FD)
		}
		return
	}
	if cm.Ack != nil {
		s.mu.Lock()
		ch := s.cbs[*cm.Ack]
		delete(s.cbs, *cm.Ack)
		s.mu.Unlock()
		if ch != nil {
			ch <- &wireReply{m: &cm, fd: m.FD} // buffered: one reply per request
			return
		}
	}
	switch cm.Act {
	case "newconn":
		s.onNewConn(&cm, m.FD)
	case "disconnect":
		s.mu.Lock()
		s.left = true
		s.mu.Unlock()
		// Stop first, then close the servers: Serve must learn that a stop was asked before its
		// listener reports "closed" (it also checks stopRequested, so the order is belt and braces).
		s.runStop()
		s.abandonQueries()
		s.closeServers()
		s.ch.CloseAfterFlush()
	default:
		if m.FD >= 0 {
			unix.Close(m.FD)
		}
	}
}

func isShutdown(raw json.RawMessage) bool {
	return strings.TrimSpace(string(raw)) == `"shutdown"`
}

func (s *processState) runStop() {
	s.mu.Lock()
	s.stopped = true
	fns := s.stopping
	s.stopping = nil
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// abandonQueries wakes every Listen waiting for the primary's answer: none will come (the primary
// does not answer a worker on its way out), and query returns ErrDisconnecting or ErrNotConnected.
func (s *processState) abandonQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for seq, ch := range s.cbs {
		close(ch)
		delete(s.cbs, seq)
	}
}

// onClose is the channel's OnClose, on its writer goroutine.
func (s *processState) onClose(error) {
	s.abandonQueries()
	s.mu.Lock()
	left := s.left
	s.mu.Unlock()
	if s.id > 0 && !left {
		// As Node: a worker whose primary went away exits at once.
		os.Exit(0)
	}
}

func (s *processState) sendCluster(m *wireMsg, wantReply bool) (<-chan *wireReply, error) {
	s.mu.Lock()
	m.Cmd = "NODE_CLUSTER"
	m.Seq = s.seq
	s.seq++
	var ch chan *wireReply
	if wantReply {
		ch = make(chan *wireReply, 1)
		s.cbs[m.Seq] = ch
	}
	s.mu.Unlock()
	if err := s.ch.Send(m); err != nil {
		s.mu.Lock()
		delete(s.cbs, m.Seq)
		s.mu.Unlock()
		if errors.Is(err, ipc.ErrClosed) {
			err = ErrNotConnected
		}
		return nil, err
	}
	return ch, nil
}

func (s *processState) onNewConn(m *wireMsg, fd int) {
	s.mu.Lock()
	ln := s.servers[m.Key]
	s.mu.Unlock()
	if fd < 0 || ln == nil {
		replyAccepted(m.Seq, false)
		if fd >= 0 {
			unix.Close(fd)
		}
		return
	}
	f := os.NewFile(uintptr(fd), "conn")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		s.log.Warn("cluster: received connection unusable", "err", err)
		replyAccepted(m.Seq, false)
		return
	}
	ln.deliver(c, m.Seq)
}

func (s *processState) closeServers() {
	s.mu.Lock()
	var lns []*rrListener
	for _, l := range s.servers {
		lns = append(lns, l)
	}
	var shared []func()
	for _, c := range s.shared {
		shared = append(shared, c)
	}
	s.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
	for _, c := range shared {
		c()
	}
}
