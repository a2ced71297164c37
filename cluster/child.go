package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

// ErrNoChannel is returned by Send and Ready in a process that has no IPC channel to a parent.
var ErrNoChannel = errors.New("cluster: no IPC channel to a parent process (NODE_CHANNEL_FD not set)")

// self is this process's side of the cluster: the one piece of global state, as in Node, because a
// process is started as a worker or it is not.
var self *processState

func init() { self = newProcessState() }

type processState struct {
	id       int // NODE_UNIQUE_ID; > 0 in a worker
	ch       *ipc.Channel
	initErr  error
	log      *slog.Logger
	seq      int64
	mu       sync.Mutex
	cbs      map[int64]chan *wireReply
	servers  map[string]*rrListener
	shared   map[string]func() // key → close of a shared listener, for disconnect
	indexes  map[string]*indexSet
	subs     []func(json.RawMessage)
	backlog  []json.RawMessage // user messages received before anyone subscribed
	stopping []func()          // called on the primary's disconnect request
	msgs     chan json.RawMessage
	left     bool // a disconnect was requested: channel EOF is expected
	stopped  bool // runStop ran: handlers registered later run at once
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
		s.initErr = err
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
func Send(msg any) error {
	if self.ch == nil {
		return ErrNoChannel
	}
	return self.ch.SendWait(msg)
}

// Ready tells the parent that this process is ready to serve: it sends the message "ready", which the
// corral daemon and PM2 wait for when an app is started with wait_ready.
func Ready() error { return Send("ready") }

// Messages returns a channel of the messages the parent sends. Messages that arrived before the first
// call are delivered first, as Node buffers them until a 'message' listener exists. Every call returns
// the same channel.
func Messages() <-chan json.RawMessage {
	self.mu.Lock()
	defer self.mu.Unlock()
	if self.msgs == nil {
		self.msgs = make(chan json.RawMessage, 64)
		q := newFeeder(self.msgs)
		self.subscribeLocked(q.push)
	}
	return self.msgs
}

// feeder forwards to a channel without ever blocking the IPC reader.
type feeder struct {
	mu   sync.Mutex
	q    []json.RawMessage
	busy bool
	out  chan json.RawMessage
}

func newFeeder(out chan json.RawMessage) *feeder { return &feeder{out: out} }

func (f *feeder) push(m json.RawMessage) {
	f.mu.Lock()
	f.q = append(f.q, m)
	if !f.busy {
		f.busy = true
		go f.run()
	}
	f.mu.Unlock()
}

func (f *feeder) run() {
	for {
		f.mu.Lock()
		if len(f.q) == 0 {
			f.busy = false
			f.mu.Unlock()
			return
		}
		m := f.q[0]
		f.q = f.q[1:]
		f.mu.Unlock()
		f.out <- m
	}
}

func (s *processState) subscribeLocked(fn func(json.RawMessage)) {
	s.subs = append(s.subs, fn)
	for _, m := range s.backlog {
		fn(m)
	}
	s.backlog = nil
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

func (s *processState) onMessage(m ipc.Message) {
	if !m.Internal {
		if m.FD >= 0 {
			unix.Close(m.FD)
		}
		s.mu.Lock()
		subs := s.subs
		if len(subs) == 0 {
			s.backlog = append(s.backlog, m.Raw)
		}
		s.mu.Unlock()
		for _, f := range subs {
			f(m.Raw)
		}
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
			ch <- &wireReply{m: &cm, fd: m.FD}
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
		s.closeServers()
		s.runStop()
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

func (s *processState) onClose(error) {
	s.mu.Lock()
	left := s.left
	for seq, ch := range s.cbs {
		close(ch)
		delete(s.cbs, seq)
	}
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

// replyAccepted answers a newconn. A connection is accepted only once the server took it from Accept;
// one still queued when its listener closes is refused, and the primary gives it to another worker.
func replyAccepted(seq int64, accepted bool) {
	ack := seq
	self.sendCluster(&wireMsg{Ack: &ack, Accepted: &accepted}, false)
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

// Listen announces on the network address like net.Listen. In a cluster worker the primary owns the
// socket: with round-robin scheduling the returned listener yields the connections the primary hands
// over; with None it is the shared socket itself. Outside a cluster it is net.Listen. Networks: "tcp",
// "tcp4", "tcp6", "unix".
func Listen(network, address string) (net.Listener, error) {
	if !IsWorker() {
		return net.Listen(network, address)
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil, fmt.Errorf("cluster: listen %s %s: unsupported network", network, address)
	}
	listenErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	req, tuple, rep, err := ask(network, address)
	if err != nil {
		return nil, listenErr(err)
	}
	ref := &shareRef{key: rep.m.Key, tuple: tuple, index: *req.Index}
	if rep.fd >= 0 { // shared handle: the socket is ours to listen on
		if err := syscall.Listen(rep.fd, 511); err != nil && !errors.Is(err, syscall.EINVAL) {
			unix.Close(rep.fd)
			self.release(ref.key, tuple, ref.index)
			return nil, listenErr(err)
		}
		f := os.NewFile(uintptr(rep.fd), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			self.release(ref.key, tuple, ref.index)
			return nil, listenErr(err)
		}
		sl := &sharedListener{Listener: ln, ref: ref}
		if !self.register(ref.key, func() { sl.Close() }, nil) {
			sl.Close()
			return nil, listenErr(errDisconnecting)
		}
		self.announce(req)
		return sl, nil
	}
	l := &rrListener{key: ref.key, tuple: tuple, index: ref.index, network: network, ready: make(chan struct{}, 1), done: make(chan struct{})}
	l.addr = rrAddr(network, address, rep.m.Sockname)
	if !self.register(l.key, nil, l) {
		self.release(l.key, tuple, ref.index)
		return nil, listenErr(errDisconnecting)
	}
	self.announce(req)
	return l, nil
}

// ListenPacket announces on a UDP address like net.ListenPacket. In a cluster worker the socket is
// bound by the primary and shared by all workers, as in Node; outside a cluster it is
// net.ListenPacket.
func ListenPacket(network, address string) (net.PacketConn, error) {
	if !IsWorker() {
		return net.ListenPacket(network, address)
	}
	if network != "udp4" && network != "udp6" && network != "udp" {
		return nil, fmt.Errorf("cluster: listen packet %s %s: unsupported network", network, address)
	}
	listenErr := func(err error) error { return &net.OpError{Op: "listen", Net: network, Err: err} }
	req, tuple, rep, err := ask(network, address)
	if err != nil {
		return nil, listenErr(err)
	}
	ref := &shareRef{key: rep.m.Key, tuple: tuple, index: *req.Index}
	if rep.fd < 0 {
		self.release(ref.key, tuple, ref.index)
		return nil, listenErr(errors.New("primary sent no socket"))
	}
	f := os.NewFile(uintptr(rep.fd), "udp")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		self.release(ref.key, tuple, ref.index)
		return nil, listenErr(err)
	}
	sp := &sharedPacketConn{PacketConn: pc, ref: ref}
	if !self.register(ref.key, func() { sp.Close() }, nil) {
		sp.Close()
		return nil, listenErr(errDisconnecting)
	}
	self.announce(req)
	return sp, nil
}

// ask sends the queryServer request Node's net.js would send for the same listen call and waits for
// the primary's reply.
func ask(network, address string) (*wireMsg, string, *wireReply, error) {
	req, tuple, err := queryFor(network, address)
	if err != nil {
		return nil, "", nil, err
	}
	rep, err := self.query(req, tuple)
	if err != nil {
		return nil, "", nil, err
	}
	return req, tuple, rep, nil
}

var errDisconnecting = errors.New("worker is disconnecting")

// leaving turns err into errDisconnecting when the primary asked this worker to leave.
func (s *processState) leaving(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return errDisconnecting
	}
	return err
}

// register records a new server under key, unless a disconnect already closed this worker's servers
// (it raced with the listen request): then it reports false and the caller closes the server.
func (s *processState) register(key string, closeShared func(), rr *rrListener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left {
		return false
	}
	if rr != nil {
		s.servers[key] = rr
	} else {
		s.shared[key] = closeShared
	}
	return true
}

// queryFor builds the queryServer request Node's net.js would send for the same listen call.
func queryFor(network, address string) (*wireMsg, string, error) {
	m := &wireMsg{Act: "queryServer", Data: rawNull}
	switch network {
	case "unix":
		p := address
		if !strings.HasPrefix(p, "@") {
			if abs, err := absPath(p); err == nil {
				p = abs
			}
		}
		m.Address, m.Port, m.AddressType = rawString(p), rawInt(-1), rawInt(-1)
		m.Backlog = rawInt(511)
	default:
		host, portStr, err := net.SplitHostPort(address)
		if err != nil {
			return nil, "", err
		}
		port, err := net.LookupPort(strings.TrimSuffix(network, "6"), portStr)
		if err != nil {
			return nil, "", err
		}
		udp := strings.HasPrefix(network, "udp")
		at := "4"
		if host == "" {
			m.Address = rawNull
			if network == "tcp6" || network == "udp6" {
				m.Address = rawString("::")
				at = "6"
			} else if network == "tcp4" || network == "udp4" || udp {
				m.Address = rawString("0.0.0.0")
			}
		} else {
			ip := net.ParseIP(host)
			if ip == nil {
				ips, err := net.LookupIP(host)
				if err != nil || len(ips) == 0 {
					return nil, "", fmt.Errorf("lookup %s: %w", host, err)
				}
				ip = ips[0]
				for _, cand := range ips { // prefer the family the network asks for, IPv4 otherwise
					if (cand.To4() != nil) != (network == "tcp6" || network == "udp6") {
						ip = cand
						break
					}
				}
			}
			if ip.To4() == nil {
				at = "6"
			}
			m.Address = rawString(ip.String())
			if !udp {
				m.Flags = rawInt(0)
			}
		}
		m.Port = rawInt(port)
		if udp {
			m.AddressType = rawString("udp" + at)
			m.FD = rawInt(-1)
			m.Flags = rawInt(0)
		} else {
			m.AddressType = rawInt(map[string]int{"4": 4, "6": 6}[at])
			m.Backlog = rawInt(511)
		}
	}
	tuple := jsString(m.Address) + ":" + jsString(m.Port) + ":" + jsString(m.AddressType) + ":" + jsString(m.FD)
	return m, tuple, nil
}

func absPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return wd + "/" + p, nil
}

// query sends queryServer and waits for the primary's answer.
func (s *processState) query(req *wireMsg, tuple string) (*wireReply, error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	s.mu.Lock()
	set := s.indexes[tuple]
	if set == nil {
		set = &indexSet{used: make(map[int]struct{})}
		s.indexes[tuple] = set
	}
	idx := set.next
	set.next++
	set.used[idx] = struct{}{}
	s.mu.Unlock()
	req.Index = &idx
	ch, err := s.sendCluster(req, true)
	if err != nil {
		s.release("", tuple, idx)
		return nil, s.leaving(err)
	}
	rep, ok := <-ch
	if !ok {
		s.release("", tuple, idx)
		return nil, s.leaving(errors.New("IPC channel closed"))
	}
	if n, ok := rawInt64(rep.m.Errno); ok && n != 0 {
		if rep.fd >= 0 {
			unix.Close(rep.fd)
		}
		s.release("", tuple, idx)
		return nil, os.NewSyscallError("bind", syscall.Errno(-n))
	}
	return rep, nil
}

// announce sends 'listening', which is the queryServer request again.
func (s *processState) announce(req *wireMsg) {
	m := *req
	m.Act = "listening"
	s.sendCluster(&m, false)
}

// release forgets a listen index and, with a key, tells the primary the server closed.
func (s *processState) release(key, tuple string, idx int) {
	s.mu.Lock()
	if set := s.indexes[tuple]; set != nil {
		delete(set.used, idx)
		if len(set.used) == 0 {
			delete(s.indexes, tuple)
		}
	}
	if key != "" {
		delete(s.servers, key)
		delete(s.shared, key)
	}
	s.mu.Unlock()
	if key != "" && s.ch != nil {
		s.sendCluster(&wireMsg{Act: "close", Key: key}, false)
	}
}

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

// rrListener yields the connections the primary hands to this worker.
type rrListener struct {
	key, tuple, network string
	index               int
	addr                net.Addr

	mu     sync.Mutex
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

type sharedListener struct {
	net.Listener
	ref *shareRef
}

func (l *sharedListener) Close() error { return l.ref.close(l.Listener) }

type sharedPacketConn struct {
	net.PacketConn
	ref *shareRef
}

func (c *sharedPacketConn) Close() error { return c.ref.close(c.PacketConn) }
