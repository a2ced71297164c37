package cluster

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

// handle is one listening socket shared by the workers that asked for the same key. Its state is
// guarded by Primary.mu; every method but those of the poll loop (acceptOne) is called with it held.
type handle interface {
	// add registers w and queues the reply to its queryServer; called with p.mu held.
	add(w *Worker, req *wireMsg)
	// remove drops w; it reports whether w was the last worker. Called with p.mu held.
	remove(w *Worker) bool
	// join makes w, an adopted worker that already uses the socket, a member without telling it
	// anything; called with p.mu held.
	join(w *Worker)
	// member reports whether w uses the socket; called with p.mu held.
	member(w *Worker) bool
	// sockFD is the socket's descriptor, valid while the handle is in p.handles.
	sockFD() int
	// keepOpen reports whether the handle outlives its last worker; hold is Settings.HoldListeners.
	keepOpen(hold bool) bool
	// close releases the socket; called with p.mu held, as the handle leaves p.handles.
	close()
	setData(json.RawMessage)
}

// queryServer answers a worker's request for a listening socket (Node's primary queryServer).
func (p *Primary) queryServer(w *Worker, m *wireMsg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.exitedAfterDisconnect || !w.connected || p.closed {
		return // as Node: a worker on its way out gets no reply
	}
	key := handleKey(m)
	h, ok := p.handles[key]
	if !ok {
		var err error
		h, err = p.newHandle(key, m)
		if err != nil {
			p.logger().Warn("cluster: listen for worker failed", "worker", w.ID, "key", key, "err", err)
			ack := m.Seq
			reply := &wireMsg{Cmd: "NODE_CLUSTER", Errno: rawInt(-errnoOf(err)), Key: key, Ack: &ack, Data: rawNull, Seq: p.nextSeq()}
			if rawIsNull(m.Data) {
				reply.Data = rawNull
			} else {
				reply.Data = m.Data
			}
			_ = w.ch.Send(reply)
			return
		}
		p.handles[key] = h
	}
	if !rawIsNull(m.Data) {
		h.setData(m.Data)
	}
	h.add(w, m)
}

func errnoOf(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return int(syscall.EINVAL)
}

// listenSpec turns a queryServer request into a Go network and address.
func listenSpec(m *wireMsg) (network, address string, err error) {
	if n, ok := rawInt64(m.FD); ok && n >= 0 {
		return "", "", syscall.EINVAL // listen({fd}) in a worker: the fd is the worker's, not ours
	}
	at := jsString(m.AddressType)
	host := ""
	if !rawIsNull(m.Address) {
		host = jsString(m.Address)
	}
	port, _ := rawInt64(m.Port)
	switch at {
	case "-1":
		return "unix", host, nil
	case "4", "6", "udp4", "udp6":
		network = map[string]string{"4": "tcp4", "6": "tcp6", "udp4": "udp4", "udp6": "udp6"}[at]
		if host == "" && (at == "4" || at == "6") {
			network = "tcp" // Node binds "::" (dual stack) when no host was given
		}
		return network, net.JoinHostPort(host, strconv.FormatInt(port, 10)), nil
	}
	return "", "", syscall.EINVAL
}

func (p *Primary) newHandle(key string, m *wireMsg) (handle, error) {
	network, address, err := listenSpec(m)
	if err != nil {
		return nil, err
	}
	udp := network == "udp4" || network == "udp6"
	if udp || p.policy == PolicyNone {
		return newSharedHandle(p, key, network, address)
	}
	return newRRHandle(p, key, network, address)
}

// dupFD duplicates the descriptor of c (close-on-exec) without touching its O_NONBLOCK flag, unlike
// File().Fd(), which would turn the socket blocking for every process sharing it.
func dupFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return nfd, derr
}

// sharedHandle passes its socket to every worker (SCHED_NONE, and UDP always).
type sharedHandle struct {
	p       *Primary
	key     string
	typ     string
	closer  interface{ Close() error }
	fd      int
	data    json.RawMessage
	workers map[*Worker]struct{}
}

func newSharedHandle(p *Primary, key, network, address string) (*sharedHandle, error) {
	h := &sharedHandle{p: p, key: key, typ: "net.Native", workers: make(map[*Worker]struct{})}
	var c interface {
		syscall.Conn
		Close() error
	}
	switch network {
	case "udp4", "udp6":
		pc, err := net.ListenPacket(network, address)
		if err != nil {
			return nil, err
		}
		c = pc.(*net.UDPConn)
		h.typ = "dgram.Native"
	default:
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		c = ln.(interface {
			syscall.Conn
			Close() error
		})
	}
	return sharedHandleOn(h, c)
}

// sharedHandleOn completes h around c, which it owns from now on (it is closed on failure).
func sharedHandleOn(h *sharedHandle, c interface {
	syscall.Conn
	Close() error
}) (*sharedHandle, error) {
	fd, err := dupFD(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	h.closer, h.fd = c, fd
	return h, nil
}

func (h *sharedHandle) setData(d json.RawMessage) {
	if h.data == nil {
		h.data = d
	}
}

func (h *sharedHandle) add(w *Worker, req *wireMsg) {
	h.workers[w] = struct{}{}
	ack := req.Seq
	data := h.data
	if data == nil {
		data = rawNull
	}
	msg := &wireMsg{Cmd: "NODE_CLUSTER", Errno: json.RawMessage("0"), Key: h.key, Ack: &ack, Data: data, Seq: h.p.nextSeq()}
	if err := w.ch.SendHandle(msg, h.typ, h.fd, nil); err != nil {
		h.p.logger().Debug("cluster: send shared handle", "worker", w.ID, "err", err)
	}
}

func (h *sharedHandle) remove(w *Worker) bool {
	if _, ok := h.workers[w]; !ok {
		return false
	}
	delete(h.workers, w)
	return len(h.workers) == 0
}

func (h *sharedHandle) keepOpen(bool) bool { return false }

func (h *sharedHandle) join(w *Worker) { h.workers[w] = struct{}{} }

func (h *sharedHandle) member(w *Worker) bool {
	_, ok := h.workers[w]
	return ok
}

func (h *sharedHandle) sockFD() int { return h.fd }

func (h *sharedHandle) close() {
	unix.Close(h.fd)
	h.closer.Close()
}

// rrHandle is a listening socket owned by the primary, whose connections go to workers in turn.
type rrHandle struct {
	p   *Primary
	key string
	// fd is the listening socket, outside Go's network poller (a socket in the runtime's poller
	// wakes one of its threads on every connection, for nobody: the poll loop accepts on fd).
	fd int
	// unlink: the path of a Unix socket this handle bound, removed when it closes.
	unlink   string
	entry    *pollEntry
	sockname *sockname
	data     json.RawMessage
	// lineHead and lineTail enclose the seq in every newconn's NODE_HANDLE line (newconnLine).
	lineHead, lineTail []byte

	adopted bool // AdoptListener: the socket comes from an earlier primary and outlives its workers

	// Guarded by p.mu.
	all   map[*Worker]struct{}
	free  []*Worker
	queue []int // connections given back (NACK, refused, worker gone) waiting for a free worker
	busy  map[*Worker]*handoff
	// sticky holds, with Settings.Sticky, the connections waiting for the worker their client is bound
	// to (sticky.go).
	sticky  map[*Worker][]stickyConn
	stickyN int // connections in sticky, kept with it (bounded by maxStickyWaiting, see armLocked)
	// armed: the poll loop watches the socket. It is, exactly while a worker is free and the Primary
	// is not quiesced: the primary accepts a connection only when it can hand it over at once, and
	// otherwise leaves it in the kernel's backlog, where it survives the primary's death.
	armed  bool
	closed bool
}

// handoff is the one connection in flight to a worker. It is also what the channel tells of the
// NODE_HANDLE's fate (HandleReply) and what the worker's {accepted} reply finds (Worker.handoffs):
// one allocation per connection.
type handoff struct {
	h     *rrHandle
	w     *Worker
	fd    int
	seq   int64
	acked bool // NODE_HANDLE_ACK arrived: the worker has the fd
	probe bool // Worker.Dial's connection: never given to another worker (giveBackLocked)
}

// HandleReply is ipc.HandleReplier: see rrHandle.onHandleReply.
func (ho *handoff) HandleReply(err error) { ho.h.onHandleReply(ho.w, ho, err) }

func newRRHandle(p *Primary, key, network, address string) (*rrHandle, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	unlink := ""
	if ul, ok := ln.(*net.UnixListener); ok {
		unlink = ul.Addr().String()
	}
	h, err := rrHandleOn(p, key, ln)
	if err == nil {
		h.unlink = unlink
	}
	return h, err
}

// rrHandleOn makes a round-robin handle of ln, which it owns from now on: it keeps a duplicate of
// its socket and closes ln (which takes it out of Go's network poller; a Unix socket's file stays).
// Called with p.mu held, once the poll loop exists.
func rrHandleOn(p *Primary, key string, ln net.Listener) (*rrHandle, error) {
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	fd, err := dupFD(ln.(syscall.Conn))
	if err == nil && !isNonblock(fd) {
		err = unix.SetNonblock(fd, true)
	}
	addr := ln.Addr()
	ln.Close()
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, err
	}
	h := &rrHandle{p: p, key: key, fd: fd, all: make(map[*Worker]struct{}), busy: make(map[*Worker]*handoff)}
	if ta, ok := addr.(*net.TCPAddr); ok {
		fam := "IPv4"
		if ta.IP.To4() == nil {
			fam = "IPv6"
		}
		ip := ta.IP.String()
		h.sockname = &sockname{Address: ip, Family: rawString(fam), Port: ta.Port}
	}
	// The poll loop exists: a worker asked for this socket, or AdoptListener started the loop. The
	// socket is watched once a worker is free (armLocked).
	if h.entry, err = p.loop.addIdle(fd, h.acceptOne); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return h, nil
}

// armLocked makes the poll loop watch the socket exactly while a connection accepted now could be
// handed over at once: a worker is free (then nothing is queued: pumpLocked ran) and the Primary is
// not quiesced. Otherwise new connections wait in the kernel's backlog. It costs a system call only
// when the answer changes. Called with p.mu held.
func (h *rrHandle) armLocked() {
	ready := len(h.free) > 0
	if h.p.settings.Sticky {
		// The worker is known only once the connection is accepted; beyond maxStickyWaiting waiting,
		// connections stay in the kernel's backlog (and survive the primary) like the others.
		ready = len(h.all) > 0 && h.stickyN < maxStickyWaiting
	}
	want := !h.closed && !h.p.quiesced && ready && h.entry != nil
	if want == h.armed {
		return
	}
	if err := h.p.loop.watch(h.fd, h.entry, want); err != nil {
		h.p.logger().Error("cluster: poll loop: watch listening socket", "key", h.key, "err", err)
		return
	}
	h.armed = want
}

// acceptOne accepts one connection and hands it to the first free worker, all under p.mu; the poll
// loop calls it, holding no lock, while the socket is readable and watched (a worker is free).
func (h *rrHandle) acceptOne() {
	p := h.p
	p.mu.Lock()
	if h.closed {
		p.mu.Unlock()
		return
	}
	if p.settings.Sticky && len(h.all) > 0 && !p.quiesced {
		nfd, key, aerr := accept4Client(h.fd)
		if aerr == nil {
			h.routeStickyLocked(nfd, key)
			h.pumpLocked()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		h.acceptFailed(aerr)
		return
	}
	if len(h.free) == 0 || p.quiesced { // the loop saw readiness just before the socket was unwatched
		h.armLocked()
		p.mu.Unlock()
		return
	}
	aerr := h.acceptFreeLocked()
	h.pumpLocked() // a send may have failed (the worker is leaving) and queued its connection
	p.mu.Unlock()
	if aerr != nil {
		h.acceptFailed(aerr)
	}
}

// acceptFreeLocked accepts connections and hands them over while a worker is free (then nothing is
// queued), until the backlog is empty (EAGAIN) or no worker is free: one wake-up of the poll loop
// serves as many connections as there are free workers. It returns the error that stopped it, nil
// if the workers ran out first. With p.mu held, on the poll loop; the caller ends with pumpLocked.
func (h *rrHandle) acceptFreeLocked() error {
	p := h.p
	for len(h.free) > 0 && !p.quiesced && !h.closed {
		seq := p.nextSeq() // lost if nothing is accepted: seqs need only be unique
		line := h.newconnLine(seq)
		nfd, aerr := accept4(h.fd) // non-blocking: h.fd stays open while p.mu is held and !h.closed
		if aerr != nil {
			return aerr
		}
		h.sendLineLocked(h.popFreeLocked(), nfd, seq, line)
	}
	return nil
}

// popFreeLocked takes the first free worker; the list keeps its array (no allocation per turn).
func (h *rrHandle) popFreeLocked() *Worker {
	w := h.free[0]
	n := copy(h.free, h.free[1:])
	h.free[n] = nil
	h.free = h.free[:n]
	return w
}

// acceptFailed deals with an accept error, without p.mu.
func (h *rrHandle) acceptFailed(aerr error) {
	p := h.p
	switch aerr {
	case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		p.logger().Warn("cluster: accept: out of resources; backing off", "key", h.key, "err", aerr)
		time.Sleep(10 * time.Millisecond) // level-triggered: the socket stays readable
	default:
		if !h.isClosed() {
			p.logger().Error("cluster: accept failed; listener stopped", "key", h.key, "err", aerr)
			p.loop.remove(h.fd, h.entry)
		}
	}
}

func (h *rrHandle) setData(d json.RawMessage) {
	if h.data == nil {
		h.data = d
	}
}

func (h *rrHandle) keepOpen(hold bool) bool { return hold || h.adopted }

// join adds w as a member; it is put on the free list by rejoinLocked, once its first round trip
// after adoption is done.
func (h *rrHandle) join(w *Worker) { h.all[w] = struct{}{} }

func (h *rrHandle) member(w *Worker) bool {
	_, ok := h.all[w]
	return ok
}

func (h *rrHandle) sockFD() int { return h.fd }

// eligibleLocked reports whether w may be on the free list: a connected member, not held out of
// rotation (Worker.Hold) and past an adopted worker's first round trip (Primary.Adopt).
func (h *rrHandle) eligibleLocked(w *Worker) bool {
	_, member := h.all[w]
	return member && w.connected && !w.held && !w.syncing
}

// rejoinLocked puts w, a member, on the free list if it is not busy: the end of an adopted worker's
// first round trip.
func (h *rrHandle) rejoinLocked(w *Worker) {
	if !h.eligibleLocked(w) || h.busy[w] != nil {
		return
	}
	for _, fw := range h.free {
		if fw == w {
			return
		}
	}
	h.free = append(h.free, w)
	h.pumpLocked()
}

func (h *rrHandle) isClosed() bool {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	return h.closed
}

// pumpLocked pairs queued connections with free workers, then watches the socket if a worker is
// still free. Every change to the free list ends with it.
func (h *rrHandle) pumpLocked() {
	if len(h.sticky) > 0 {
		h.pumpStickyLocked()
	}
	for len(h.queue) > 0 && len(h.free) > 0 {
		w := h.popFreeLocked()
		fd := h.queue[0]
		h.queue = h.queue[1:]
		h.sendLocked(w, fd)
	}
	h.armLocked()
	h.p.settledLocked()
}

// unsettledLocked counts the connections this handle holds that no worker has acknowledged yet:
// queued, or handed over without a NODE_HANDLE_ACK. They die with the primary.
func (h *rrHandle) unsettledLocked() int {
	n := len(h.queue) + h.stickyWaitingLocked()
	for _, ho := range h.busy {
		if !ho.acked {
			n++
		}
	}
	return n
}

// sendLocked hands fd to w. The write usually happens right here, on the poll loop, under p.mu: the
// ipc package allows that because it never runs a callback on the sender's goroutine. If the write
// fails (the worker died), onHandleReply learns it later on the channel's goroutine.
func (h *rrHandle) sendLocked(w *Worker, fd int) {
	seq := h.p.nextSeq()
	h.sendLineLocked(w, fd, seq, h.newconnLine(seq))
}

// newconnLine is the NODE_HANDLE line of the newconn with seq, encoded without reflection: acceptOne
// makes it before accept4, so that as little as possible happens between accept4 and sendmsg, the
// instants in which a connection dies with the primary.
func (h *rrHandle) newconnLine(seq int64) []byte {
	if h.lineHead == nil {
		// The line is HandleLine's, with the seq in the middle: encode it once with a marker seq.
		keyJSON, _ := json.Marshal(h.key)
		inner := append([]byte(`{"cmd":"NODE_CLUSTER","act":"newconn","key":`), keyJSON...)
		inner = append(inner, `,"seq":0}`...)
		full := ipc.HandleLine(inner, "net.Native")
		cut := len(full) - len(`0}}`)
		h.lineHead, h.lineTail = full[:cut:cut], full[cut+1:]
	}
	line := make([]byte, 0, len(h.lineHead)+20+len(h.lineTail))
	line = append(line, h.lineHead...)
	line = strconv.AppendInt(line, seq, 10)
	return append(line, h.lineTail...)
}

// sendLineLocked hands fd to w with line, the newconn with seq.
func (h *rrHandle) sendLineLocked(w *Worker, fd int, seq int64, line []byte) {
	h.sendHandoffLocked(w, &handoff{h: h, w: w, fd: fd, seq: seq}, line)
}

// sendHandoffLocked sends ho to w with line.
func (h *rrHandle) sendHandoffLocked(w *Worker, ho *handoff, line []byte) {
	// The write comes first; the bookkeeping after it cannot race the answer, which is handled under
	// p.mu, held here.
	err := w.ch.SendHandleTo(line, ho.fd, ho) // ho.HandleReply: onHandleReply
	if err != nil {
		// The channel is closed: the worker is leaving. Its connection goes to someone else.
		h.giveBackLocked(ho)
		return
	}
	h.busy[w] = ho
	w.bal.handedOff.Add(1)
	w.bal.inFlight.Add(1)
	w.handoffs[ho.seq] = ho // onAcceptedLocked, from Worker.peekCluster or Primary.onInternal
}

// onHandleReply runs when the worker answered NODE_HANDLE_ACK/NACK (on the poll loop) or the channel
// closed first (on the channel's writer goroutine); no lock is held.
func (h *rrHandle) onHandleReply(w *Worker, ho *handoff, err error) {
	p := h.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if h.busy[w] != ho {
		return
	}
	if err == nil {
		ho.acked = true
		p.settledLocked()
		return
	}
	// The fd never reached the worker: give the connection to someone else.
	delete(h.busy, w)
	w.bal.inFlight.Add(-1)
	if !ho.probe {
		w.bal.rerouted.Add(1)
	}
	delete(w.handoffs, ho.seq)
	h.giveBackLocked(ho)
	if h.eligibleLocked(w) && !errors.Is(err, ipc.ErrClosed) {
		h.free = append(h.free, w) // a NACK: the worker is still there
	}
	h.pumpLocked()
}

// onAcceptedLocked handles the worker's {ack, accepted} reply to a newconn, on the poll loop with
// p.mu held (the caller took ho out of w.handoffs). The worker is free again: if nothing is queued
// and the socket is unwatched (no worker was free), the connections waiting in the backlog are
// accepted for it at once (acceptFreeLocked), without waiting for the poll loop to report the
// listening socket, nor (under load) arming and disarming it.
func (h *rrHandle) onAcceptedLocked(w *Worker, ho *handoff, accepted bool) {
	if h.busy[w] != ho {
		return
	}
	delete(h.busy, w)
	w.bal.inFlight.Add(-1)
	if accepted {
		closeFD(ho.fd) // the worker holds the connection now
	} else {
		if !ho.probe {
			w.bal.refused.Add(1) // Node's maxConnections: another worker gets it
		}
		h.giveBackLocked(ho)
	}
	if h.eligibleLocked(w) {
		h.free = append(h.free, w)
	}
	if len(h.queue) == 0 && !h.armed && !h.p.settings.Sticky {
		// Unwatched, the socket had no free worker: connections may wait in its backlog. (Watched,
		// epoll reports them: accepting here would mostly cost an EAGAIN.) An error other than
		// EAGAIN is met again by the poll loop, which deals with it (acceptFailed): pumpLocked arms
		// the socket while a worker is free.
		_ = h.acceptFreeLocked()
	}
	h.pumpLocked()
}

// giveBackLocked requeues a connection the worker did not take, unless it was a Worker.Dial
// probe meant for that worker only, which is closed (the dialer sees EOF).
func (h *rrHandle) giveBackLocked(ho *handoff) {
	if ho.probe {
		unix.Close(ho.fd)
		return
	}
	h.requeueLocked(ho.fd)
}

func (h *rrHandle) requeueLocked(fd int) {
	if h.closed {
		unix.Close(fd)
		return
	}
	h.queue = append([]int{fd}, h.queue...)
}

func (h *rrHandle) add(w *Worker, req *wireMsg) {
	p := h.p
	ack := req.Seq
	data := h.data
	if data == nil {
		data = rawNull
	}
	reply := &wireMsg{Cmd: "NODE_CLUSTER", Errno: rawNull, Key: h.key, Ack: &ack, Data: data, Sockname: h.sockname, Seq: p.nextSeq()}
	// Queue the reply before any newconn can be queued for this worker.
	if err := w.ch.Send(reply); err != nil {
		return
	}
	if _, ok := h.all[w]; ok {
		return
	}
	h.all[w] = struct{}{}
	if h.eligibleLocked(w) { // an adopted worker joins the free list once its first round trip is done
		h.free = append(h.free, w)
		h.pumpLocked()
	}
}

func (h *rrHandle) remove(w *Worker) bool {
	// A connection in flight on an open channel (a Disconnect) is settled by the worker's answer:
	// accepted, or not accepted and given to another worker. On a closed channel nothing will answer.
	// This holds for a worker that is no longer a member too (Disconnect removed it first, then its
	// channel closed before the answer): without it, the primary would keep its copy for ever.
	h.settleClosedLocked(w)
	if _, ok := h.all[w]; !ok {
		return false
	}
	delete(h.all, w)
	for i, fw := range h.free {
		if fw == w {
			h.free = append(h.free[:i], h.free[i+1:]...)
			break
		}
	}
	h.rerouteStickyLocked(w)
	h.pumpLocked()
	return len(h.all) == 0
}

// settleClosedLocked settles the hand-off in flight to w once w's channel has closed.
func (h *rrHandle) settleClosedLocked(w *Worker) {
	if ho := h.busy[w]; ho != nil && !w.connected {
		delete(h.busy, w)
		w.bal.inFlight.Add(-1)
		delete(w.handoffs, ho.seq)
		if ho.acked {
			unix.Close(ho.fd) // the worker got it; whatever it did with it, our copy goes
		} else {
			if !ho.probe {
				w.bal.rerouted.Add(1)
			}
			h.giveBackLocked(ho) // never delivered: another worker serves it
		}
		h.pumpLocked()
	}
}

func (h *rrHandle) close() {
	h.closed = true
	h.armed = false
	q := h.queue
	h.queue = nil
	for _, sq := range h.sticky {
		for _, c := range sq {
			q = append(q, c.fd)
		}
	}
	h.sticky, h.stickyN = nil, 0
	// The hand-offs still in flight: the primary's copies go too. A connection the worker has (its
	// NODE_HANDLE arrived or is in its socket's buffer, which holds a reference of its own) lives on
	// with the worker; one it never gets is closed, where nothing would settle it any more once the
	// handle is gone from p.handles (remove is not called for it when the worker's channel closes).
	for w, ho := range h.busy {
		delete(h.busy, w)
		delete(w.handoffs, ho.seq)
		w.bal.inFlight.Add(-1)
		q = append(q, ho.fd)
	}
	// Stop listening now: until the socket stops listening (duplicates of it may live elsewhere,
	// ListenerFiles), a worker asking for the same port would get EADDRINUSE.
	unix.Shutdown(h.fd, unix.SHUT_RDWR)
	h.p.loop.remove(h.fd, h.entry)
	unix.Close(h.fd)
	if h.unlink != "" {
		os.Remove(h.unlink)
	}
	for _, fd := range q {
		unix.Close(fd)
	}
}
