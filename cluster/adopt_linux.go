package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

// adoptSyncKey is the handle key of an adopted worker's first round trip: a newconn for a socket no
// worker has, which Node's child.js and this package's worker both refuse at once, closing the
// descriptor, with {"ack":seq,"accepted":false}.
const adoptSyncKey = "corral:adopt-sync"

// ListenerFiles returns a duplicate (close-on-exec) of each listening socket the Primary holds,
// keyed by Node's handle key, for a supervisor to keep across its own restart and give to its
// successor's AdoptListener: the round-robin sockets and the shared ones (PolicyNone, UDP). The
// caller owns the files. A duplicate is the same socket: while it is open, connections queue in the
// socket's backlog even if this process dies. Close and Shutdown of the Primary (and a round-robin
// socket released when its last worker leaves, without HoldListeners) shut a round-robin socket down
// (shutdown(2)), which ends listening for every duplicate too: a supervisor that hands over to a
// successor exits without closing its Primary.
func (p *Primary) ListenerFiles() (map[string]*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	files := make(map[string]*os.File, len(p.handles))
	for key, h := range p.handles {
		nfd, err := unix.FcntlInt(uintptr(h.sockFD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cluster: duplicate listener %q: %w", key, err)
		}
		files[key] = os.NewFile(uintptr(nfd), "listener "+key)
	}
	return files, nil
}

// ChannelFile returns a duplicate (close-on-exec) of the primary's end of w's IPC channel, for a
// supervisor to keep across its own restart; the caller owns it. While it is open the worker sees no
// end of file when this process dies, so it keeps running (a worker exits when its channel closes).
// Nothing must read from it while this Primary runs: the bytes would be lost to the Primary. Nor
// does the worker see the end of file when this Primary closes the channel (Kill), as long as the
// duplicate is open: close it once the worker is gone for good. It fails with an error wrapping
// ErrNotConnected once the channel has closed.
func (w *Worker) ChannelFile() (*os.File, error) {
	f, err := w.ch.File()
	if err != nil {
		return nil, w.sendErr("channel file of", err)
	}
	return f, nil
}

// AdoptListener makes f, a listening socket kept from an earlier primary (ListenerFiles), the
// socket for key, as if a worker had asked for it: a round-robin socket, or a shared one for a
// datagram socket and, with PolicyNone, for a stream socket. A round-robin socket adopted this way
// stays open without workers (Settings.HoldListeners semantics), so connections wait in its backlog
// until a worker takes them. Call it before adopting the workers that use it (AdoptSpec.Keys); a
// worker forked later that listens on the same address joins it. The Primary takes ownership of f,
// and closes it if AdoptListener fails: when key already has a socket, when the Primary is closed
// (ErrPrimaryClosed), or when f is not a listening stream socket or an IP datagram socket.
func (p *Primary) AdoptListener(key string, f *os.File) error {
	fail := func(err error) error { return fmt.Errorf("cluster: adopt listener %q: %w", key, err) }
	if f == nil {
		return fail(errors.New("no file"))
	}
	defer f.Close() // the net package works on duplicates
	info, err := socketInfo(f)
	if err != nil {
		return fail(err)
	}
	var c interface {
		syscall.Conn
		Close() error
	}
	var ln net.Listener
	typ := "net.Native"
	switch {
	case info.typ == unix.SOCK_STREAM && info.listening:
		if ln, err = net.FileListener(f); err != nil {
			return fail(err)
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // the path is not ours to remove
		}
		c = ln.(interface {
			syscall.Conn
			Close() error
		})
	case info.typ == unix.SOCK_DGRAM && (info.domain == unix.AF_INET || info.domain == unix.AF_INET6):
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return fail(err)
		}
		c = pc.(*net.UDPConn)
		typ = "dgram.Native"
	default:
		return fail(errors.New("not a listening stream socket nor a UDP socket"))
	}
	if _, err := p.pollLoop(); err != nil { // rrHandleOn registers the socket with it
		c.Close()
		return fail(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		err = ErrPrimaryClosed
	case p.handles[key] != nil:
		err = errors.New("the key has a socket already")
	}
	if err != nil {
		c.Close()
		return fail(err)
	}
	var h handle
	if ln != nil && p.policy != PolicyNone {
		rr, err := rrHandleOn(p, key, ln)
		if err != nil {
			return fail(err)
		}
		rr.adopted = true
		h = rr
	} else {
		sh, err := sharedHandleOn(&sharedHandle{p: p, key: key, typ: typ, workers: make(map[*Worker]struct{})}, c)
		if err != nil {
			return fail(err)
		}
		h = sh
	}
	p.handles[key] = h
	return nil
}

type sockInfo struct {
	domain, typ int
	listening   bool
}

// socketInfo reads a socket's domain, type and listening state without touching its flags
// (File.Fd would make it blocking for every process that shares it).
func socketInfo(f *os.File) (sockInfo, error) {
	var info sockInfo
	rc, err := f.SyscallConn()
	if err != nil {
		return info, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var acc int
		if info.typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		if info.domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			return
		}
		acc, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		info.listening = acc != 0
	}); err != nil {
		return info, err
	}
	if errors.Is(serr, unix.ENOTSOCK) {
		return info, errors.New("not a socket")
	}
	return info, serr
}

// Adopt rebuilds a Worker around a process this Primary did not start, after an earlier primary
// died (spec says what it knew). The worker is in Workers at once. Events: no 'fork' or 'online';
// 'message', 'listening', 'disconnect' and 'exit' as for a forked worker, the exit status coming
// from spec.Status. Worker.Process is valid (signals only); Send, Disconnect, Kill, ChannelFile and
// HandleKeys work; Stdout and Stderr are nil. Shutdown and Close treat it as a forked worker.
//
// The channel may begin inside a line the earlier primary had partly read; that tail is dropped
// (ipc.Options.MidStream). Replies to the earlier primary's messages that are still on their way
// (NODE_HANDLE_ACK, {"ack":seq,"accepted":...}) are ignored: the worker is given no connection
// before it has answered a first round trip of this Primary, a newconn for a socket it does not
// have, which it refuses at once; everything it wrote before that answer has then been read. A
// connection the earlier primary handed over is the worker's, whether or not its ACK was seen.
//
// The exit is detected with a pidfd (pidfd_open(2)) in the poll loop. Adopt fails, closing
// spec.Channel, if the process does not exist or has exited already (an error wrapping
// os.ErrProcessDone), if the channel is not a connected Unix stream socket, if the ID is in use or
// not positive, if a key has no socket (AdoptListener comes first), or once the Primary is closed
// (ErrPrimaryClosed). Adopting raises the ID of later forks above spec.ID.
func (p *Primary) Adopt(spec AdoptSpec) (*Worker, error) {
	id := spec.ID
	fail := func(err error) (*Worker, error) {
		return nil, fmt.Errorf("cluster: adopt worker %d (pid %d): %w", id, spec.Pid, err)
	}
	if spec.Channel == nil {
		return fail(errors.New("no channel"))
	}
	conn, err := adoptChannel(spec.Channel)
	if err != nil {
		return fail(err)
	}
	if id <= 0 || spec.Pid <= 0 {
		conn.Close()
		return fail(errors.New("the ID and the pid must be positive"))
	}
	pidfd, err := unix.PidfdOpen(spec.Pid, 0)
	if err != nil {
		conn.Close()
		if errors.Is(err, unix.ESRCH) {
			return fail(fmt.Errorf("no such process: %w", os.ErrProcessDone))
		}
		return fail(fmt.Errorf("pidfd_open: %w", err))
	}
	if n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 0); err == nil && n > 0 {
		unix.Close(pidfd)
		conn.Close()
		return fail(fmt.Errorf("the process has exited: %w", os.ErrProcessDone))
	}
	proc, err := os.FindProcess(spec.Pid) // a pidfd-backed handle: its signals never reach a reused pid
	if err != nil {
		unix.Close(pidfd)
		conn.Close()
		return fail(err)
	}
	loop, err := p.pollLoop()
	if err != nil {
		proc.Release()
		unix.Close(pidfd)
		conn.Close()
		return fail(err)
	}
	w := &Worker{ID: id, Process: proc, p: p, done: make(chan struct{}), exited: make(chan struct{}),
		listening: make(chan struct{}), callbacks: make(map[int64]func(*wireMsg)), handoffs: make(map[int64]*handoff), state: stateOnline,
		pid: spec.Pid, pidfd: pidfd, gone: make(chan struct{}), status: spec.Status, syncing: true}
	if spec.Listening {
		w.state = stateListening
		w.listenOnce.Do(func() { close(w.listening) })
	}
	w.ch = ipc.New(conn, ipc.Options{
		OnMessage:    w.onMessage,
		OnClose:      func(error) { p.onChannelClosed(w) },
		Logger:       p.logger().With("worker", id),
		ExternalRead: true,
		MidStream:    true,
		PeekCluster:  w.peekCluster,
	})
	// What ForkWith learns as the worker starts (Bun marks its internal lines) or decides from the
	// program (handles sent alone), an adopted worker gets from the Primary's program: its first
	// message from this Primary, the sync round trip, must already be framed for it.
	if !knownToTakeCoalescedHandles(p.settings.Exec) {
		w.ch.SetHandleAlone()
	}
	if isBun(p.settings.Exec) {
		w.ch.SetBunFraming()
	}
	p.mu.Lock()
	err = p.adoptLocked(w, loop, spec.Keys)
	p.mu.Unlock()
	if err != nil {
		w.ch.Close()
		<-w.ch.Done() // its close callback finds the worker never connected
		unix.Close(pidfd)
		proc.Release() // its pidfd; a Process handed out is released when it is garbage
		return fail(err)
	}
	go p.waitAdopted(w)
	return w, nil
}

// adoptLocked registers w, checked, in the Primary, its handles and the poll loop, and starts its
// first round trip; with p.mu held.
func (p *Primary) adoptLocked(w *Worker, loop *pollLoop, keys []string) error {
	if p.closed {
		return ErrPrimaryClosed
	}
	if _, used := p.workers[w.ID]; used {
		return fmt.Errorf("worker ID %d is in use", w.ID)
	}
	hs := make([]handle, 0, len(keys))
	for _, k := range keys {
		h, ok := p.handles[k]
		if !ok {
			return fmt.Errorf("no socket for handle key %q (AdoptListener comes first)", k)
		}
		hs = append(hs, h)
	}
	entry, err := loop.add(w.ch.FD(), w.readChannel)
	if err != nil {
		return err
	}
	pidEntry, err := loop.add(w.pidfd, func() { p.onAdoptedExit(w) })
	if err != nil {
		loop.remove(w.ch.FD(), entry)
		return err
	}
	w.pollEntry, w.pidEntry = entry, pidEntry
	w.connected = true
	p.workers[w.ID] = w
	p.raiseNextID(int64(w.ID))
	p.waiters.Add(1)
	for _, h := range hs {
		h.join(w)
	}
	p.sendSyncLocked(w)
	return nil
}

// adoptChannel checks that f is a connected Unix stream socket and makes a connection of it; f is
// closed either way.
func adoptChannel(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	info, err := socketInfo(f)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if info.domain != unix.AF_UNIX || info.typ != unix.SOCK_STREAM || info.listening {
		return nil, errors.New("channel: not a connected Unix stream socket")
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("channel: not a Unix socket")
	}
	return uc, nil
}

// sendSyncLocked sends w the round trip that ends its syncing state: a newconn, with a fresh
// unconnected Unix socket as its handle, for a key no worker has. Whatever w wrote before its
// answer (the ACK and the accepted reply for a connection the earlier primary handed over) has been
// read when the answer arrives. The ACK of this handle may be taken for a stale one, and a stale
// NACK for its own; a NACK therefore sends another round trip, and only the answer to the latest
// counts. With p.mu held.
func (p *Primary) sendSyncLocked(w *Worker) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		// No descriptor to send: serve the worker at once; only a late ACK of the earlier primary's
		// last hand-off can then be taken for the ACK of this Primary's first.
		p.logger().Warn("cluster: adopted worker's first round trip skipped", "worker", w.ID, "err", err)
		p.syncedLocked(w)
		return
	}
	seq := p.nextSeq()
	w.syncSeq = seq
	w.callbacks[seq] = func(*wireMsg) {
		if w.syncing && w.syncSeq == seq {
			p.syncedLocked(w)
		}
	}
	msg := &wireMsg{Cmd: "NODE_CLUSTER", Act: "newconn", Key: adoptSyncKey, Seq: seq}
	if err := w.ch.SendHandle(msg, "net.Native", fd, func(err error) {
		unix.Close(fd)
		if !errors.Is(err, ipc.ErrNACK) {
			return
		}
		p.mu.Lock()
		if w.syncing && w.syncSeq == seq && w.connected {
			delete(w.callbacks, seq)
			p.sendSyncLocked(w)
		}
		p.mu.Unlock()
	}); err != nil {
		unix.Close(fd) // the channel has closed: the worker is leaving
		delete(w.callbacks, seq)
	}
}

// syncedLocked ends w's syncing state: it becomes a free worker of each round-robin socket it is a
// member of. With p.mu held.
func (p *Primary) syncedLocked(w *Worker) {
	w.syncing = false
	for _, h := range p.handles {
		if rr, ok := h.(*rrHandle); ok {
			rr.rejoinLocked(w)
		}
	}
}

// onAdoptedExit runs on the poll loop when w's pidfd becomes readable: the process has exited.
func (p *Primary) onAdoptedExit(w *Worker) {
	p.mu.Lock()
	e, loop := w.pidEntry, p.loop
	p.mu.Unlock()
	loop.remove(w.pidfd, e)
	unix.Close(w.pidfd)
	close(w.gone)
}

// waitAdopted is the waiter of an adopted worker (Primary.wait of a forked one): it waits for the
// exit, asks spec.Status how it ended, and reports it once the channel has closed too.
func (p *Primary) waitAdopted(w *Worker) {
	defer p.waiters.Done()
	<-w.gone
	code, sig := -1, os.Signal(nil)
	if w.status != nil {
		if c, s, ok := w.status(w.pid); ok {
			code, sig = c, s
		}
	}
	p.finishWorker(w, code, sig)
}
