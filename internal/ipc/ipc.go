// Package ipc implements one end of Node.js's IPC channel: JSON lines over a Unix stream socket, with
// file descriptors passed by SCM_RIGHTS inside NODE_HANDLE messages and gated by NODE_HANDLE_ACK.
//
// It is the transport under the public cluster package and under the daemon's fork mode (where a Node
// app's process.send('ready') and the 'shutdown' message travel). The wire format is described in
// shared/docs/node-cluster-protocol.md; the rules that matter here are:
//
//   - one JSON value per line, no length limit in Node (this package caps a line at Options.MaxLine);
//   - an object whose "cmd" is a string longer than 5 bytes starting with "NODE_" is internal;
//   - an fd travels alone on the sendmsg that carries its NODE_HANDLE line, and the sender writes nothing
//     else (but ACK/NACK) until the receiver answers NODE_HANDLE_ACK or NODE_HANDLE_NACK.
//
// # Goroutines and callbacks
//
// A Channel has a writer goroutine, and a reader goroutine unless Options.ExternalRead is set; then
// "the reader" is whichever goroutine of the owner calls ReadOnce (in the cluster package, the
// Primary's poll loop). The callbacks run on those two goroutines only:
//
//   - OnMessage, and a handle's onReply with nil or ErrNACK (the peer answered): on the reader, one
//     at a time, in the order the lines arrived. On a channel with its own reader goroutine, a
//     received handle reaches OnMessage only once its NODE_HANDLE_ACK has been written (the reader
//     waits for the writer), so that the peer never takes a handle this process may already have
//     used for undelivered; if the channel closes first, the fd is closed and not delivered.
//   - A handle's onReply with ErrClosed, the ErrClosed result of a SendWait whose message never went
//     out, then OnClose: on the writer goroutine, once the channel has closed and the last OnMessage
//     has returned. No OnMessage runs after OnClose has begun; Done is closed after OnClose returns.
//
// The rule that makes a Channel safe to use under locks: it never runs a callback on the goroutine of
// a caller of Send, SendRaw, SendHandle, SendWait, Close or CloseAfterFlush, not even when a write
// fails at once because the peer died (EPIPE, ECONNRESET): the failure only marks the channel closed,
// and the writer goroutine, which holds no caller's locks, runs the callbacks. So those methods may be
// called while holding a lock that a callback takes (the cluster package sends while holding
// Primary.mu), and a callback may call any method of its Channel.
//
// Send, SendRaw and SendHandle make one non-blocking write on the caller's goroutine when nothing is
// queued ahead of the message (the hot path of a round-robin hand-off: no writer wake-up); what does
// not go out at once is left to the writer. A nil error from them means "queued", not "delivered".
//
// Locks: Channel.mu guards the send state and is a leaf (nothing that takes another lock, and no
// callback, runs under it). Channel.readMu is held by the reader across a read and the OnMessage and
// onReply calls it makes, and by the writer for a moment when the channel closes, so that OnClose
// follows the last OnMessage; hence ReadOnce must not be called while holding a lock that OnMessage
// takes.
//
// The package works on Linux; elsewhere Pair and FromFD return ErrNotSupported.
package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultMaxLine is the longest message line accepted when Options.MaxLine is zero. A peer that sends a
// longer line is treated as broken and the channel is closed.
const DefaultMaxLine = 64 << 20

// maxQueuedFDs bounds the fds received but not yet claimed by a NODE_HANDLE line.
const maxQueuedFDs = 64

var (
	// ErrClosed is returned by sends on a closed channel and reported to handle callbacks whose
	// message was not acknowledged before the channel closed.
	ErrClosed = errors.New("ipc: channel closed")
	// ErrNACK is reported to a handle callback when the peer answered NODE_HANDLE_NACK (no fd arrived).
	ErrNACK = errors.New("ipc: peer did not receive the handle (NODE_HANDLE_NACK)")
	// ErrNotSupported is returned by Pair and FromFD on systems other than Linux.
	ErrNotSupported = errors.New("ipc: Node IPC channels are only supported on Linux")
)

// Message is one message received on the channel.
type Message struct {
	// Raw is the JSON value as received. For a message that carried a handle it is the inner "msg".
	Raw json.RawMessage
	// Internal reports whether Raw is an internal Node message (see IsInternal); Cmd is then its cmd.
	Internal bool
	Cmd      string
	// FD is the descriptor received with a NODE_HANDLE message, or -1. The receiver owns it and must
	// close it.
	FD int
	// HandleType is the NODE_HANDLE "type" ("net.Native", "dgram.Native", ...) when FD >= 0.
	HandleType string
}

// Options configures a Channel.
type Options struct {
	// OnMessage is called for every message but the channel's own NODE_HANDLE_ACK/NACK, one at a
	// time, on the reader (the channel's reader goroutine, or the caller of ReadOnce). It must not
	// block for long: it holds up every later message.
	OnMessage func(Message)
	// OnClose is called once when the channel is closed by either side, on the channel's writer
	// goroutine, after the last OnMessage and the last handle callback; err is nil on a clean EOF, a
	// local Close or CloseAfterFlush. It must not wait for Done, which is closed after it returns.
	OnClose func(err error)
	// Logger receives protocol errors (garbage from the peer). Nil discards them.
	Logger *slog.Logger
	// MaxLine caps a message line in bytes; 0 means DefaultMaxLine.
	MaxLine int
	// ExternalRead leaves reading to the caller, who polls FD and calls ReadOnce when it is
	// readable, instead of a goroutine per channel.
	ExternalRead bool
	// MidStream says that the stream may begin inside a line: the socket was read before by another
	// process (a supervisor that died and left it to its successor). The first line is then delivered
	// only if it is a JSON object or array, which the tail of a valid line never is (a tail starting
	// outside a string leaves the enclosing brackets unbalanced; one starting inside a string has an
	// odd number of quotes); anything else, such as a number or a string that may be the end of a
	// longer one, is dropped with a warning. Later lines are handled as usual.
	MidStream bool
	// PeekCluster, if set, sees every NODE_CLUSTER line (one that begins {"cmd":"NODE_CLUSTER",)
	// before it is copied and checked, on the reader, where OnMessage would be called. line aliases
	// the read buffer and is valid only during the call. Returning true consumes the line: OnMessage
	// is not called for it. It lets the owner handle the lines it recognises exactly (a round-robin
	// primary's {accepted} replies, one per connection) without a copy or a JSON decoder.
	PeekCluster func(line []byte) bool
}

// HandleReplier is told what became of a handle sent with SendHandleTo, as SendHandle's onReply is.
// A pointer type implementing it costs no allocation per handle, unlike a closure.
type HandleReplier interface{ HandleReply(err error) }

type outMsg struct {
	line    []byte // JSON without the trailing newline
	fd      int    // -1: none
	onReply func(error)
	replier HandleReplier // instead of onReply (SendHandleTo)
	written chan error    // SendWait: told once the message is on the wire
	// rawBytes: line is the unsent tail of a message, newline included, whose fd (if any) is gone.
	rawBytes bool
}

func (m *outMsg) hasReply() bool { return m.onReply != nil || m.replier != nil }

// reply tells the sender of a handle what became of it.
func (m *outMsg) reply(err error) {
	switch {
	case m.replier != nil:
		m.replier.HandleReply(err)
	case m.onReply != nil:
		m.onReply(err)
	}
}

// Channel is one end of a Node IPC channel. Its methods are safe for concurrent use. See the package
// documentation for the goroutines its callbacks run on.
type Channel struct {
	conn *net.UnixConn // nil with Options.ExternalRead: see rawFD
	opts Options
	log  *slog.Logger
	raw  syscall.RawConn
	fd   int
	// rawFD: the channel owns fd itself, outside Go's network poller (Options.ExternalRead). A socket
	// in the runtime's poller wakes one of its threads on every readiness change (the peer's write,
	// and its read freeing buffer space), for nobody: the owner polls fd itself. fd is closed by
	// finish, after OnClose, and never before (fdClosed, guarded by mu), so that no read or write
	// can reach a reused number.
	rawFD    bool
	fdClosed bool

	// mu guards the send state. It is a leaf lock: under it the channel makes no call that takes
	// another lock and runs no callback. cond (on mu) is what the writer goroutine waits on.
	mu       sync.Mutex
	cond     *sync.Cond
	ctrl     [][]byte        // ACK/NACK: bypass the handle gate
	ctrlDone []chan struct{} // sendCtrlWait: closed once the ctrl lines queued with them are written
	queue    []outMsg
	awaiting *outMsg // handle message written, reply not yet received; &awaitSlot when set
	// awaitSlot holds the handle awaiting its reply, so that no handle costs an allocation. It is
	// written only while awaiting is nil, under mu; whoever clears awaiting copies what it needs.
	awaitSlot outMsg
	// fastLine and fastOOB are the scratch buffers of a sender's fast-path write (enqueue), used only
	// by the sender that set writing.
	fastLine []byte
	fastOOB  [3]uint64 // unix.CmsgSpace(4) bytes, aligned: one SCM_RIGHTS fd
	closed   bool      // set once, by fail; the writer then runs the close callbacks (finish)
	closeErr error
	closing  chan struct{} // closed by fail, with closed set
	flushing bool          // CloseAfterFlush: close once everything queued is written
	writing  bool          // a write is in progress (writer goroutine or a sender's fast path)

	// readMu is held by the reader across one read and the callbacks it makes, and by finish while it
	// ends reading, so that OnClose comes after the last OnMessage. It guards readDone and rd.
	readMu   sync.Mutex
	readDone bool    // finish ran: no more reads, no more OnMessage
	rd       *reader // ExternalRead: the receive state ReadOnce uses

	done chan struct{} // closed at the end of finish, after OnClose

	// bunFraming is set by the reader once the peer sent a line starting with InternalMark (Bun's
	// framing of internal messages); from then on internal lines this channel sends carry the mark too.
	bunFraming atomic.Bool
	// handleAlone: a handle is written only once the peer has read everything before it (see
	// SetHandleAlone).
	handleAlone atomic.Bool
}

// handleAloneWait bounds how long the writer waits for the peer to read what precedes a handle
// (SetHandleAlone) before it sends the handle anyway.
const handleAloneWait = 2 * time.Second

// SetHandleAlone makes the channel write a handle (NODE_HANDLE with its fd) only when the peer has read
// every byte written before it, so that the fd arrives in a read that begins with its own line. Deno
// (2.9) attaches a received fd to the first message of the read that brought it: when a NODE_HANDLE
// line follows other unread lines, Deno gives the fd to the first of them and neither ACKs nor NACKs
// the handle, and the channel stays gated for ever. Node keeps the fd for the next NODE_HANDLE line
// and needs none of this. It costs an ioctl per handle, and a wait while the peer is behind.
func (c *Channel) SetHandleAlone() { c.handleAlone.Store(true) }

// peerBehind reports whether the channel waits for the peer to read before it may write a handle.
func (c *Channel) peerBehind() bool {
	return c.handleAlone.Load() && c.fd >= 0 && unreadByPeer(c.fd) > 0
}

// InternalMark is the byte Bun puts in front of an internal message (NODE_CLUSTER, NODE_HANDLE,
// NODE_HANDLE_ACK, ...) in json serialization: Bun classifies a line as internal by that byte, not by its
// cmd, and treats an unmarked NODE_CLUSTER line as a user message. Node never sends it. A Channel strips
// it from every line it reads, and once the peer has used it, marks the internal lines it sends (see
// BunFraming).
const InternalMark = 0x02

// BunFraming reports whether the peer has shown it frames internal messages as Bun does.
func (c *Channel) BunFraming() bool { return c.bunFraming.Load() }

// SetBunFraming makes the channel mark the internal lines it sends with InternalMark from now on, for a
// peer known to be Bun before it has sent anything.
func (c *Channel) SetBunFraming() { c.bunFraming.Store(true) }

// internalPrefix is how every internal line this package sends begins (cmd is always the first key).
var internalPrefix = []byte(`{"cmd":"NODE_`)

// bunHandleLine turns a NODE_HANDLE line made by HandleLine into what Bun reads with an fd: the inner
// message itself, marked internal, with "$hasHandle":true. Bun does not unwrap NODE_HANDLE: it takes the
// fd that came with a marked line for that line's message. A line of another shape is only marked.
func bunHandleLine(line []byte) []byte {
	i := bytes.Index(line, msgKey)
	if !bytes.HasPrefix(line, handlePrefix) || i < 0 || len(line) < i+len(msgKey)+2 || line[i+len(msgKey)] != '{' || line[len(line)-1] != '}' {
		return append([]byte{InternalMark}, line...)
	}
	inner := line[i+len(msgKey) : len(line)-1]
	out := make([]byte, 0, len(inner)+len(hasHandle)+2)
	out = append(out, InternalMark, '{')
	out = append(out, hasHandle...)
	if len(inner) > 2 {
		out = append(out, ',')
	}
	return append(out, inner[1:]...)
}

var (
	handlePrefix = []byte(`{"cmd":"NODE_HANDLE","type":`)
	msgKey       = []byte(`,"msg":`)
	hasHandle    = []byte(`"$hasHandle":true`)
)

// mark returns line with InternalMark in front when the peer uses Bun's framing and line is internal.
func (c *Channel) mark(line []byte) []byte {
	if !c.bunFraming.Load() || !bytes.HasPrefix(line, internalPrefix) {
		return line
	}
	return append([]byte{InternalMark}, line...)
}

// New starts a Channel on conn. The channel owns conn from now on.
func New(conn *net.UnixConn, opts Options) *Channel {
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	c := &Channel{conn: conn, opts: opts, log: lg, done: make(chan struct{}), closing: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	c.raw, _ = conn.SyscallConn()
	c.fd = -1
	if opts.ExternalRead {
		c.takeFD()
	} else if c.raw != nil {
		c.raw.Control(func(fd uintptr) { c.fd = int(fd) })
	}
	go c.writeLoop()
	if opts.ExternalRead {
		c.rd = newReader(opts.MidStream)
	} else {
		go c.readLoop()
	}
	return c
}

// takeFD moves the socket out of Go's network poller (Options.ExternalRead): a duplicate of conn's
// descriptor (sharing its non-blocking mode) becomes the channel's, and conn is closed. If that
// fails the channel keeps conn, which works the same, with the poller's idle wake-ups.
func (c *Channel) takeFD() {
	if c.raw == nil {
		return
	}
	nfd := -1
	var derr error
	if err := c.raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if derr == nil && !isNonblock(nfd) {
			derr = unix.SetNonblock(nfd, true)
		}
	}); err != nil || derr != nil {
		if nfd >= 0 {
			unix.Close(nfd)
		}
		c.raw.Control(func(fd uintptr) { c.fd = int(fd) })
		return
	}
	c.conn.Close()
	c.conn, c.raw, c.fd, c.rawFD = nil, nil, nfd, true
}

func isNonblock(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// Done is closed when the channel has closed and its close callbacks (OnClose last) have returned.
func (c *Channel) Done() <-chan struct{} { return c.done }

// Send queues a JSON-encoded message. It never blocks on the peer.
func (c *Channel) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ipc: encode message: %w", err)
	}
	return c.SendRaw(b)
}

// SendWait sends a JSON-encoded message and waits until it has been written to the socket (after any
// handle ahead of it was acknowledged), so that a process may exit right after it returns. It returns
// ErrClosed if the channel closed before the message went out. The message always goes through the
// writer goroutine.
func (c *Channel) SendWait(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ipc: encode message: %w", err)
	}
	done := make(chan error, 1)
	if err := c.enqueue(outMsg{line: b, fd: -1, written: done}); err != nil {
		return err
	}
	return <-done
}

// SendRaw queues an already encoded JSON value (without the trailing newline).
func (c *Channel) SendRaw(line []byte) error {
	if bytes.IndexByte(line, '\n') >= 0 || len(line) == 0 {
		return errors.New("ipc: a message must be one non-empty line of JSON")
	}
	return c.enqueue(outMsg{line: line, fd: -1})
}

// SendHandle queues msg wrapped in a NODE_HANDLE of the given type, with fd attached. The caller keeps
// ownership of fd and must keep it open until onReply runs: with nil once the peer acknowledged it or
// ErrNACK if the peer got no fd (both on the reader), or ErrClosed if the channel closed first (on the
// writer goroutine, also when the write itself failed). onReply never runs on the caller's goroutine,
// so the caller may hold a lock that onReply takes; it must not block.
func (c *Channel) SendHandle(msg any, handleType string, fd int, onReply func(error)) error {
	inner, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("ipc: encode message: %w", err)
	}
	return c.SendHandleLine(HandleLine(inner, handleType), fd, onReply)
}

// HandleLine is the NODE_HANDLE line that SendHandle sends for a message already encoded as inner,
// for a sender that prepares it ahead of time (SendHandleLine).
func HandleLine(inner json.RawMessage, handleType string) []byte {
	typ, _ := json.Marshal(handleType)
	line := make([]byte, 0, len(inner)+len(typ)+40)
	line = append(line, `{"cmd":"NODE_HANDLE","type":`...)
	line = append(line, typ...)
	line = append(line, `,"msg":`...)
	line = append(line, inner...)
	return append(line, '}')
}

// SendHandleLine is SendHandle with the line made by HandleLine: nothing is encoded on the way.
func (c *Channel) SendHandleLine(line []byte, fd int, onReply func(error)) error {
	if onReply == nil {
		onReply = func(error) {}
	}
	return c.enqueue(outMsg{line: line, fd: fd, onReply: onReply})
}

// SendHandleTo is SendHandleLine with r told the outcome (r.HandleReply, on the goroutines and with
// the arguments SendHandle's onReply would get). r must not be nil.
func (c *Channel) SendHandleTo(line []byte, fd int, r HandleReplier) error {
	return c.enqueue(outMsg{line: line, fd: fd, replier: r})
}

func (c *Channel) enqueue(m outMsg) error {
	if m.fd >= 0 && c.bunFraming.Load() {
		m.line = bunHandleLine(m.line)
	} else {
		m.line = c.mark(m.line)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.writing || c.awaiting != nil || len(c.queue) > 0 || len(c.ctrl) > 0 || c.raw == nil && !c.rawFD || m.written != nil || m.fd >= 0 && c.peerBehind() {
		c.queue = append(c.queue, m)
		c.cond.Signal()
		c.mu.Unlock()
		return nil
	}
	// Fast path: nothing ahead of m, so try one non-blocking write on the caller's goroutine, which
	// saves waking the writer (the round-robin hand-off path). Whatever does not fit goes to the writer.
	c.writing = true
	if m.fd >= 0 {
		c.awaitSlot = m
		c.awaiting = &c.awaitSlot
	}
	c.mu.Unlock()
	n, err := c.tryWrite(&m)
	c.mu.Lock()
	c.writing = false
	switch {
	case err != nil:
	case n == 0: // nothing went out (EAGAIN): the writer sends the whole message, fd included
		if m.fd >= 0 && c.awaiting == &c.awaitSlot {
			c.awaiting = nil
		}
		c.queue = append([]outMsg{m}, c.queue...)
	case n < len(m.line)+1: // the fd went with the first byte; the rest follows without it
		full := append(append(make([]byte, 0, len(m.line)+1), m.line...), '\n')
		c.queue = append([]outMsg{{line: full[n:], fd: -1, rawBytes: true}}, c.queue...)
	}
	if c.closed {
		c.cond.Signal() // the writer may be waiting in finish for this write to end
	} else {
		c.kickLocked()
	}
	c.mu.Unlock()
	if err != nil {
		// Only mark the channel closed: m (its onReply, if it carries a handle) and everything queued
		// are settled by the writer goroutine, never here, where the caller may hold locks.
		c.fail(fmt.Errorf("ipc: write: %w", err))
	}
	return nil
}

// tryWrite makes one non-blocking attempt to write m (its fd with the first byte) and reports how
// many bytes went out; EAGAIN is not an error.
func (c *Channel) tryWrite(m *outMsg) (int, error) {
	line := append(append(c.fastLine[:0], m.line...), '\n')
	if cap(line) <= 4<<10 {
		c.fastLine = line // kept for the next message; a rare long one is not
	}
	var oob []byte
	if m.fd >= 0 {
		oob = rights(unsafe.Slice((*byte)(unsafe.Pointer(&c.fastOOB[0])), len(c.fastOOB)*8), m.fd)
	}
	var n int
	var werr error
	if c.rawFD { // open: the caller set writing, and finish closes fd only once no write is in progress
		n, werr = sendmsgNB(c.fd, line, oob, sendFlags)
	} else if err := c.writeRaw(line, oob, &n, &werr); err != nil {
		return 0, err
	}
	if werr == unix.EAGAIN || werr == unix.EINTR {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// writeRaw is one sendmsg through conn's RawConn (a channel that could not take its fd).
func (c *Channel) writeRaw(line, oob []byte, n *int, werr *error) error {
	var wn int
	var we error
	err := c.raw.Write(func(fd uintptr) bool {
		wn, we = unix.SendmsgN(int(fd), line, oob, nil, sendFlags)
		return true
	})
	*n, *werr = wn, we
	return err
}

func (c *Channel) sendCtrl(line string) {
	c.mu.Lock()
	if !c.closed {
		c.ctrl = append(c.ctrl, c.mark([]byte(line)))
		c.cond.Signal()
	}
	c.mu.Unlock()
}

// sendCtrlWait queues an ACK/NACK line like sendCtrl and waits until the writer has put it on the
// wire; it reports false if the channel closed first (the line may or may not have gone out).
func (c *Channel) sendCtrlWait(line string) bool {
	b := c.mark([]byte(line))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	// Fast path: nothing being written, no line begun and no ACK/NACK waiting: write it here, on the
	// reader, instead of waking the writer and waiting for it (two goroutine switches per handle).
	if !c.writing && len(c.ctrl) == 0 && !(len(c.queue) > 0 && c.queue[0].rawBytes) && (c.raw != nil || c.rawFD) {
		c.writing = true
		c.mu.Unlock()
		n, err := c.tryWrite(&outMsg{line: b, fd: -1})
		c.mu.Lock()
		c.writing = false
		if c.closed {
			c.cond.Signal() // the writer may be waiting in finish for this write to end
		}
		if err != nil {
			c.mu.Unlock()
			c.fail(fmt.Errorf("ipc: write: %w", err))
			return false
		}
		if n == len(b)+1 {
			c.kickLocked()
			c.mu.Unlock()
			return true
		}
		// Nothing (EAGAIN) or part of it went out: the writer sends the rest, first of all (its
		// newline is added as to every ACK/NACK), and we wait for it below.
		b = b[n:]
		c.ctrl = append([][]byte{b}, c.ctrl...)
		done := make(chan struct{})
		c.ctrlDone = append(c.ctrlDone, done)
		c.cond.Signal()
		c.mu.Unlock()
		select {
		case <-done:
			return true
		case <-c.closing:
			return false
		}
	}
	done := make(chan struct{})
	c.ctrl = append(c.ctrl, b)
	c.ctrlDone = append(c.ctrlDone, done)
	c.cond.Signal()
	c.mu.Unlock()
	select {
	case <-done:
		return true
	case <-c.closing:
		return false
	}
}

// kickLocked wakes the writer when it has something to do: waking it for nothing costs a futex
// round trip on every hand-off.
func (c *Channel) kickLocked() {
	if len(c.queue) > 0 || len(c.ctrl) > 0 || c.flushing {
		c.cond.Signal()
	}
}

// CloseAfterFlush closes the channel once every message queued so far has been written (and a handle
// in flight acknowledged). Messages sent after it are still written if they are queued in time. It
// returns at once; the close callbacks run on the writer goroutine.
func (c *Channel) CloseAfterFlush() {
	c.mu.Lock()
	c.flushing = true
	c.cond.Signal()
	c.mu.Unlock()
}

// Close closes the channel. Queued messages that were not written are dropped. It returns at once:
// the handle callbacks (with ErrClosed) and OnClose run on the writer goroutine; wait for Done to know
// they have.
func (c *Channel) Close() error {
	c.fail(nil)
	return nil
}

// CloseRead stops receiving without losing what the peer has written already: the reader still
// delivers every message queued in the socket (a NODE_HANDLE_ACK among them), then sees end of file
// and the channel closes as on the peer's EOF. Close, in contrast, drops unread messages; a handle
// whose ACK is dropped that way is reported ErrClosed although the peer has it. Use CloseRead when
// the peer is gone (or leaving) but may still hold the channel open, such as a dead process whose
// child inherited it. It returns at once.
func (c *Channel) CloseRead() error {
	if c.rawFD {
		c.mu.Lock()
		var serr error
		if !c.fdClosed {
			serr = unix.Shutdown(c.fd, unix.SHUT_RD)
		}
		c.mu.Unlock()
		if serr != nil {
			c.fail(nil)
		}
		return nil
	}
	if c.raw == nil {
		return c.Close()
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RD) }); err != nil {
		return nil // closed already
	}
	if serr != nil {
		c.fail(nil)
	}
	return nil
}

// fail marks the channel closed with err (nil: a clean close) and closes the socket, which ends a
// blocked read or write. It runs no callback, so any goroutine may call it, holding any lock; the
// writer goroutine sees closed and runs finish. Only the first call counts.
func (c *Channel) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeErr = err
	close(c.closing)
	c.cond.Signal()
	c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
	// A raw fd stays open until finish: the writer, waiting for room in poll(2), sees closing within
	// rawPollWait; the owner stops polling fd in OnClose.
}

// finish runs on the writer goroutine once the channel is closed: it ends reading (waiting for an
// OnMessage in progress), waits for a sender's fast-path write to end, and then runs the close
// callbacks: ErrClosed to the handle awaiting its ACK and to everything still queued, OnClose, and
// finally closes done.
func (c *Channel) finish() {
	c.readMu.Lock()
	c.readDone = true
	if c.rd != nil {
		c.rd.closeFDs() // fds received but never claimed by a NODE_HANDLE line
	}
	c.readMu.Unlock()

	c.mu.Lock()
	for c.writing {
		c.cond.Wait()
	}
	err := c.closeErr
	var awaiting outMsg
	hadAwaiting := c.awaiting != nil
	if hadAwaiting {
		awaiting = *c.awaiting
	}
	pending := c.queue
	c.queue, c.ctrl, c.ctrlDone, c.awaiting = nil, nil, nil, nil
	c.mu.Unlock()
	if hadAwaiting {
		awaiting.reply(ErrClosed)
	}
	for _, m := range pending {
		if m.hasReply() {
			m.reply(ErrClosed)
		}
		if m.written != nil {
			m.written <- ErrClosed
		}
	}
	if c.opts.OnClose != nil {
		c.opts.OnClose(err)
	}
	if c.rawFD {
		c.mu.Lock()
		c.fdClosed = true
		unix.Close(c.fd)
		c.mu.Unlock()
	}
	close(c.done)
}

// writeLoop writes queued messages in order, holding back everything but ACK/NACK while a handle is
// awaiting its acknowledgement, and coalescing plain messages into one write. Once the channel is
// closed it runs the close callbacks (finish) and ends.
func (c *Channel) writeLoop() {
	defer c.finish()
	var buf []byte
	var batch []outMsg
	var ctrlDone []chan struct{}
	for {
		c.mu.Lock()
		for !c.closed && (c.writing || len(c.ctrl) == 0 && (c.queue0Gated() || len(c.queue) == 0)) {
			if c.flushing && !c.writing && c.awaiting == nil && len(c.queue) == 0 {
				c.mu.Unlock()
				c.fail(nil)
				return
			}
			c.cond.Wait()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		buf = buf[:0]
		batch = batch[:0]
		// The tail of a fast-path write goes first, even before ACK/NACK: a line once started must be
		// finished before any other byte, or an ACK would land inside it.
		if len(c.queue) > 0 && c.queue[0].rawBytes {
			buf = append(buf, c.queue[0].line...)
			c.queue = c.queue[1:]
		}
		for _, l := range c.ctrl {
			buf = append(append(buf, l...), '\n')
		}
		c.ctrl = c.ctrl[:0]
		ctrlDone = append(ctrlDone[:0], c.ctrlDone...)
		clear(c.ctrlDone)
		c.ctrlDone = c.ctrlDone[:0]
		var handle *outMsg
		if c.awaiting == nil {
			n := 0
			for n < len(c.queue) && len(buf) < 64<<10 {
				m := c.queue[n]
				if m.fd >= 0 {
					if len(buf) == 0 { // a handle goes alone on its sendmsg
						c.awaitSlot = m
						handle = &c.awaitSlot
						c.awaiting = handle
						n++
					}
					break
				}
				buf = append(append(buf, m.line...), '\n')
				if m.written != nil {
					batch = append(batch, m)
				}
				n++
			}
			c.queue = c.queue[n:]
		}
		c.writing = true
		c.mu.Unlock()

		var err error
		if handle != nil {
			c.waitPeerRead()
			err = c.writeHandle(handle)
		} else if len(buf) > 0 {
			err = c.write(buf, nil)
		}
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
		for _, m := range batch {
			m.written <- err
		}
		if err == nil {
			for _, d := range ctrlDone {
				close(d)
			}
		}
		clear(ctrlDone)
		if err != nil {
			c.fail(fmt.Errorf("ipc: write: %w", err))
			return
		}
	}
}

// queue0Gated reports whether the queue's head must wait for a handle acknowledgement. A fast-path
// tail never waits: it belongs to the message already on the wire.
func (c *Channel) queue0Gated() bool {
	return c.awaiting != nil && !(len(c.queue) > 0 && c.queue[0].rawBytes)
}

// waitPeerRead waits, on the writer goroutine, until the peer has read everything written so far
// (SetHandleAlone), the channel closes, or handleAloneWait has passed.
func (c *Channel) waitPeerRead() {
	if !c.handleAlone.Load() {
		return
	}
	deadline := time.Now().Add(handleAloneWait)
	for pause := 20 * time.Microsecond; c.peerBehind(); pause = min(2*pause, 5*time.Millisecond) {
		if time.Now().After(deadline) {
			c.log.Warn("ipc: peer has not read the channel for " + handleAloneWait.String() + "; sending a handle anyway")
			return
		}
		select {
		case <-c.closing:
			return
		case <-time.After(pause):
		}
	}
}

func (c *Channel) writeHandle(m *outMsg) error {
	line := append(m.line[:len(m.line):len(m.line)], '\n')
	return c.write(line, unix.UnixRights(m.fd))
}

// write writes all of b, on the writer goroutine, with oob (an fd) on its first byte; the rest goes
// without ancillary data.
func (c *Channel) write(b, oob []byte) error {
	if !c.rawFD {
		if oob == nil {
			_, err := c.conn.Write(b)
			return err
		}
		n, _, err := c.conn.WriteMsgUnix(b, oob, nil)
		if err == nil && n < len(b) {
			_, err = c.conn.Write(b[n:])
		}
		return err
	}
	for len(b) > 0 {
		n, err := unix.SendmsgN(c.fd, b, oob, nil, sendFlags)
		switch err {
		case nil:
			b, oob = b[n:], nil
		case unix.EINTR:
		case unix.EAGAIN:
			if err := c.waitWritable(); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// rawPollWait bounds one poll(2) of the writer on a raw fd, so that it sees the channel close.
const rawPollWait = 50 // ms

// waitWritable waits until the raw fd has room, or the channel closes (net.ErrClosed).
func (c *Channel) waitWritable() error {
	for {
		select {
		case <-c.closing:
			return net.ErrClosed
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, rawPollWait)
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 {
			return nil // writable, or an error the next sendmsg reports
		}
	}
}

// reader is the receive state of a channel: bytes of an unfinished line and fds not yet claimed.
type reader struct {
	buf, oob, pending []byte
	fds               []int
	midStream         bool // Options.MidStream, until the first line has been seen
	// The message header and vector of recvmsg (sys_linux.go), kept here so that a read allocates
	// nothing.
	msg unix.Msghdr
	iov unix.Iovec
}

func newReader(midStream bool) *reader {
	return &reader{buf: make([]byte, 64<<10), oob: make([]byte, unix.CmsgSpace(maxQueuedFDs*4)), midStream: midStream}
}

func (r *reader) closeFDs() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}

// readLoop is the reader goroutine of a channel without Options.ExternalRead. It blocks in recvmsg
// holding readMu; closing the socket (fail) ends the read, so finish never waits long for it.
func (c *Channel) readLoop() {
	r := newReader(c.opts.MidStream)
	defer r.closeFDs()
	for {
		c.readMu.Lock()
		if c.readDone {
			c.readMu.Unlock()
			return
		}
		n, oobn, _, _, err := c.conn.ReadMsgUnix(r.buf, r.oob) // MSG_CMSG_CLOEXEC on Linux
		ok := c.feed(r, n, oobn, err)
		c.readMu.Unlock()
		if !ok {
			return
		}
	}
}

// ReadOnce reads what the socket has (one non-blocking recvmsg) and dispatches it, for a channel made
// with Options.ExternalRead whose owner polls the socket (see FD). OnMessage runs on the caller's
// goroutine, so the caller must not hold a lock that OnMessage takes. It reports false once the
// channel is closed. It must not be called concurrently with itself.
func (c *Channel) ReadOnce() bool {
	if c.rd == nil || c.raw == nil && !c.rawFD {
		return false
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readDone {
		return false
	}
	var n, oobn int
	var rerr, err error
	if c.rawFD { // open: finish closes fd only after setting readDone under readMu
		n, oobn, rerr = recvmsg(c.fd, c.rd, recvFlags)
	} else {
		n, oobn, rerr, err = c.readRaw()
	}
	switch {
	case err != nil: // closed under us
		rerr, n, oobn = net.ErrClosed, 0, 0
	case rerr == unix.EAGAIN || rerr == unix.EINTR:
		return true
	case rerr == nil && n == 0 && oobn == 0:
		rerr = io.EOF
	}
	if !c.feed(c.rd, n, oobn, rerr) {
		c.rd.closeFDs()
		return false
	}
	return true
}

// readRaw is one recvmsg through conn's RawConn (a channel that could not take its fd).
func (c *Channel) readRaw() (n, oobn int, rerr, err error) {
	err = c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), c.rd.buf, c.rd.oob, recvFlags)
		return true // one attempt: the owner waits for readiness, not us
	})
	return
}

// FD returns the socket's descriptor, for an owner that polls it (Options.ExternalRead). It stays
// valid until the channel closes.
func (c *Channel) FD() int { return c.fd }

// File returns a duplicate of the channel's socket, close-on-exec, for a process that must keep the
// channel open across its own restart; the caller owns it. It shares the socket (and its open file
// description, O_NONBLOCK included): whoever reads from it takes bytes from this channel. It returns
// ErrClosed once the channel is closed.
func (c *Channel) File() (*os.File, error) {
	nfd := -1
	var derr error
	c.mu.Lock()
	closed := c.closed
	if c.rawFD && !closed {
		nfd, derr = unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	c.mu.Unlock()
	if closed || c.raw == nil && !c.rawFD {
		return nil, ErrClosed
	}
	if c.rawFD {
		if derr != nil {
			return nil, fmt.Errorf("ipc: duplicate channel socket: %w", derr)
		}
		return os.NewFile(uintptr(nfd), "ipc"), nil
	}
	if err := c.raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, ErrClosed // closed meanwhile
	}
	if derr != nil {
		return nil, fmt.Errorf("ipc: duplicate channel socket: %w", derr)
	}
	return os.NewFile(uintptr(nfd), "ipc"), nil
}

// feed processes the result of one read; it reports false once the channel is closed.
func (c *Channel) feed(r *reader, n, oobn int, err error) bool {
	if oobn > 0 {
		r.fds = c.appendFDs(r.fds, r.oob[:oobn])
	}
	if n > 0 {
		data := r.buf[:n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			var line []byte
			if len(r.pending) > 0 {
				line = append(r.pending, data[:i]...)
				r.pending = r.pending[:0]
			} else {
				line = data[:i]
			}
			if r.midStream {
				r.midStream = false
				if !objectOrArray(line) {
					c.log.Warn("ipc: first line may be the tail of a message read by an earlier reader; dropped", "bytes", len(line))
					data = data[i+1:]
					continue
				}
			}
			r.fds = c.dispatch(line, r.fds)
			data = data[i+1:]
		}
		if len(r.pending)+len(data) > c.opts.MaxLine {
			c.log.Warn("ipc: message line too long; closing channel", "limit", c.opts.MaxLine)
			c.fail(fmt.Errorf("ipc: message longer than %d bytes", c.opts.MaxLine))
			return false
		}
		r.pending = append(r.pending, data...)
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			err = nil
		} else {
			err = fmt.Errorf("ipc: read: %w", err)
		}
		if len(r.pending) > 0 {
			c.log.Warn("ipc: channel closed in the middle of a message", "bytes", len(r.pending))
		}
		c.fail(err)
		return false
	}
	return true
}

// objectOrArray reports whether line starts, after blanks, like a JSON object or array.
func objectOrArray(line []byte) bool {
	line = bytes.TrimLeft(line, " \t\r")
	return len(line) > 0 && (line[0] == '{' || line[0] == '[')
}

func (c *Channel) appendFDs(fds []int, oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		c.log.Warn("ipc: bad control message", "err", err)
		return fds
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range got {
			if len(fds) >= maxQueuedFDs {
				c.log.Warn("ipc: too many unclaimed fds from peer; closing one")
				unix.Close(fd)
				continue
			}
			fds = append(fds, fd)
		}
	}
	return fds
}

var (
	ackLine       = []byte(`{"cmd":"NODE_HANDLE_ACK"}`)
	clusterPrefix = []byte(`{"cmd":"NODE_CLUSTER",`)
)

// envelope is the part of a message this package looks at.
type envelope struct {
	Cmd  json.RawMessage `json:"cmd"`
	Type string          `json:"type"`
	Msg  json.RawMessage `json:"msg"`
}

// Classify reports whether raw is an internal Node message and its cmd. Invalid JSON is an error.
func Classify(raw []byte) (internal bool, cmd string, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false, "", errors.New("empty message")
	}
	if raw[0] != '{' {
		if !json.Valid(raw) {
			return false, "", errors.New("invalid JSON")
		}
		return false, "", nil
	}
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return false, "", err
	}
	return cmdInternal(e.Cmd)
}

func cmdInternal(rawCmd json.RawMessage) (bool, string, error) {
	if len(rawCmd) == 0 || rawCmd[0] != '"' {
		return false, "", nil
	}
	var cmd string
	if err := json.Unmarshal(rawCmd, &cmd); err != nil {
		return false, "", err
	}
	return len(cmd) > 5 && cmd[:5] == "NODE_", cmd, nil
}

// dispatch handles one complete line and returns the fd queue left.
func (c *Channel) dispatch(line []byte, fds []int) []int {
	if len(line) > 0 && line[0] == InternalMark {
		line = line[1:]
		if !c.bunFraming.Load() {
			c.bunFraming.Store(true)
		}
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		c.log.Warn("ipc: empty message line from peer; ignored")
		return fds
	}
	// The hot paths of every hand-off, without the JSON decoder (nor the envelope, which escapes).
	switch {
	case bytes.Equal(line, ackLine):
		c.handleReply(true)
		return fds
	case bytes.HasPrefix(line, clusterPrefix) && c.opts.PeekCluster != nil && c.opts.PeekCluster(line):
		return fds
	}
	return c.dispatchDecoded(line, fds)
}

// dispatchDecoded is dispatch for a line that needs the JSON decoder.
func (c *Channel) dispatchDecoded(line []byte, fds []int) []int {
	var e envelope
	switch {
	case bytes.HasPrefix(line, clusterPrefix) && json.Valid(line):
		// A NODE_CLUSTER message (cmd is Node's first key): its receiver decodes it in full anyway.
		c.deliver(Message{Raw: append(json.RawMessage(nil), line...), Internal: true, Cmd: "NODE_CLUSTER", FD: -1})
		return fds
	case line[0] == '{':
		if err := json.Unmarshal(line, &e); err != nil {
			c.log.Warn("ipc: malformed message from peer; ignored", "err", err, "bytes", len(line))
			return fds
		}
	case !json.Valid(line):
		c.log.Warn("ipc: malformed message from peer; ignored", "bytes", len(line))
		return fds
	}
	internal, cmd, err := cmdInternal(e.Cmd)
	if err != nil {
		c.log.Warn("ipc: malformed cmd; ignored", "err", err)
		return fds
	}
	switch {
	case internal && (cmd == "NODE_HANDLE_ACK" || cmd == "NODE_HANDLE_NACK"):
		c.handleReply(cmd == "NODE_HANDLE_ACK")
		return fds
	case internal && cmd == "NODE_HANDLE":
		if len(fds) == 0 {
			c.sendCtrl(`{"cmd":"NODE_HANDLE_NACK"}`)
			c.log.Warn("ipc: NODE_HANDLE without a file descriptor; answered NACK")
			return fds
		}
		fd := fds[0]
		fds = fds[1:]
		if c.opts.ExternalRead {
			c.sendCtrl(`{"cmd":"NODE_HANDLE_ACK"}`)
		} else if !c.sendCtrlWait(`{"cmd":"NODE_HANDLE_ACK"}`) {
			// The ACK may not have reached the peer, which then takes the handle for undelivered and
			// gives it to someone else (a round-robin primary hands the connection to another worker):
			// it is not ours to use.
			unix.Close(fd)
			return fds
		}
		innerInternal, innerCmd, _ := Classify(e.Msg)
		if len(e.Msg) == 0 {
			e.Msg = json.RawMessage("null")
		}
		c.deliver(Message{Raw: e.Msg, Internal: innerInternal, Cmd: innerCmd, FD: fd, HandleType: e.Type})
		return fds
	}
	// Copy: line aliases the read buffer.
	c.deliver(Message{Raw: append(json.RawMessage(nil), line...), Internal: internal, Cmd: cmd, FD: -1})
	return fds
}

// handleReply settles the handle awaiting its ACK (ack) or NACK, on the reader.
func (c *Channel) handleReply(ack bool) {
	c.mu.Lock()
	var m outMsg
	had := c.awaiting != nil
	if had {
		m = *c.awaiting // the slot may be reused as soon as mu is released
	}
	c.awaiting = nil
	c.kickLocked()
	c.mu.Unlock()
	switch {
	case !had && ack:
		c.log.Warn("ipc: unexpected NODE_HANDLE_ACK from peer; ignored")
	case !had:
		c.log.Warn("ipc: unexpected NODE_HANDLE_NACK from peer; ignored")
	case ack:
		m.reply(nil)
	default:
		m.reply(ErrNACK)
	}
}

// rights writes into buf (at least unix.CmsgSpace(4) bytes) an SCM_RIGHTS message carrying fd and
// returns it: unix.UnixRights without the allocation.
func rights(buf []byte, fd int) []byte {
	n := unix.CmsgSpace(4)
	b := buf[:n]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = int32(fd)
	return b
}

func (c *Channel) deliver(m Message) {
	if c.opts.OnMessage != nil {
		c.opts.OnMessage(m)
	} else if m.FD >= 0 {
		unix.Close(m.FD)
	}
}
