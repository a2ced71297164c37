package keeper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Error is an error answered by the keeper.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrStoreFull) and the like match on the code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errors the keeper answers, for errors.Is.
var (
	ErrBadName      = &Error{Code: codeBadName, Msg: codeText[codeBadName]}
	ErrStoreFull    = &Error{Code: codeStoreFull, Msg: codeText[codeStoreFull]}
	ErrBusy         = &Error{Code: codeBusy, Msg: codeText[codeBusy]}
	ErrNotDaemon    = &Error{Code: codeNotDaemon, Msg: codeText[codeNotDaemon]}
	ErrReadOnly     = &Error{Code: codeReadOnly, Msg: codeText[codeReadOnly]}
	ErrExec         = &Error{Code: codeExec, Msg: codeText[codeExec]}
	ErrUpdateFailed = &Error{Code: codeUpdateFailed, Msg: codeText[codeUpdateFailed]}
	// ErrNoKeeper is returned by DialEnv and OnKeeperDeath in a process the keeper did not start.
	ErrNoKeeper = errors.New("keeper: not started by a keeper ($" + EnvSocket + " unset)")
)

// Client talks to the keeper. Its methods may be called from several goroutines; they are
// serialised on one connection, so a parked Exits(wait) call blocks the others: give it a Client
// of its own. After a context expires mid-call the Client is closed (the reply's place in the
// stream is unknown) and every later call fails.
type Client struct {
	mu     sync.Mutex
	c      *net.UnixConn
	broken error
	buf    []byte
	oob    []byte
}

// Dial connects to the keeper socket at path.
func Dial(path string) (*Client, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("keeper: dial: %w", err)
	}
	return &Client{c: c, buf: make([]byte, 2*maxRecord), oob: make([]byte, unix.CmsgSpace(4*fetchPage))}, nil
}

// DialEnv connects to the keeper that started this process ($CORRAL_KEEPER_SOCK).
func DialEnv() (*Client, error) {
	path := os.Getenv(EnvSocket)
	if path == "" {
		return nil, ErrNoKeeper
	}
	return Dial(path)
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// roundTrip sends one request (with fds) and reads its reply; received fds are the caller's.
func (c *Client) roundTrip(ctx context.Context, h header, payload []byte, fds []int) (header, []byte, []int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return header{}, nil, nil, c.broken
	}
	dl, _ := ctx.Deadline()
	c.c.SetDeadline(dl)
	expired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)); close(expired) })
	defer func() {
		if !stop() { // it ran, or runs: let it finish before the next call sets its deadline
			<-expired
		}
	}()
	fail := func(err error) (header, []byte, []int, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.broken = fmt.Errorf("connection unusable after an earlier error: %w", err)
		c.c.Close()
		return header{}, nil, nil, err
	}
	msg := make([]byte, hdrLen+len(payload))
	putHeader(msg, h)
	copy(msg[hdrLen:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(msg, oob, nil); err != nil {
		return fail(err)
	}
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.buf, c.oob)
	if err != nil {
		return fail(err)
	}
	var got []int
	if oobn > 0 {
		cms, err := unix.ParseSocketControlMessage(c.oob[:oobn])
		if err != nil {
			return fail(err)
		}
		for _, cm := range cms {
			if rights, err := unix.ParseUnixRights(&cm); err == nil {
				got = append(got, rights...)
			}
		}
	}
	rh, ok := getHeader(c.buf[:n])
	if !ok || n == 0 || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || (rh.op != h.op|opReply && rh.op != opErr) {
		closeAll(got)
		return fail(errors.New("malformed reply"))
	}
	p := append([]byte(nil), c.buf[hdrLen:n]...)
	if rh.op == opErr {
		closeAll(got)
		return rh, nil, nil, &Error{Code: int(rh.n), Msg: string(p)}
	}
	return rh, p, got, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Ping returns the keeper's status.
func (c *Client) Ping(ctx context.Context) (Status, error) {
	_, p, fds, err := c.roundTrip(ctx, header{op: opPing}, nil, nil)
	if err != nil {
		return Status{}, fmt.Errorf("keeper: ping: %w", err)
	}
	closeAll(fds)
	s, ok := getStatus(p)
	if !ok {
		return s, errors.New("keeper: malformed PING reply")
	}
	return s, nil
}

// Store hands a duplicate of f's descriptor to the keeper under name, replacing what was stored
// under that name. f may be an *os.File, a *net.TCPListener, a *net.UnixConn...: anything with a
// descriptor. The caller keeps its own descriptor; the two share one open file description (its
// offset and flags such as O_NONBLOCK).
func (c *Client) Store(ctx context.Context, name string, f syscall.Conn) error {
	if !validName([]byte(name)) {
		return ErrBadName
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("keeper: store %s: %w", name, err)
	}
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		_, _, _, rerr = c.roundTrip(ctx, header{op: opStore}, []byte(name), []int{int(fd)})
	}); err != nil {
		return fmt.Errorf("keeper: store %s: %w", name, err)
	}
	if rerr != nil {
		return fmt.Errorf("keeper: store %s: %w", name, rerr)
	}
	return nil
}

// Remove drops (and the keeper closes) the fd stored under name; it reports whether there was one.
func (c *Client) Remove(ctx context.Context, name string) (bool, error) {
	if !validName([]byte(name)) {
		return false, ErrBadName
	}
	h, _, fds, err := c.roundTrip(ctx, header{op: opRemove}, []byte(name), nil)
	closeAll(fds)
	if err != nil {
		return false, fmt.Errorf("keeper: remove %s: %w", name, err)
	}
	return h.arg == 1, nil
}

// Entry is a stored fd as fetched: a new descriptor (close-on-exec) for the same open file.
type Entry struct {
	Name string
	File *os.File
}

// FetchAll returns every stored fd. The keeper keeps its own copies: fetching is not removing.
// The snapshot is consistent if nobody stores or removes meanwhile (the daemon is the only
// writer, and it fetches before it stores anything).
func (c *Client) FetchAll(ctx context.Context) ([]Entry, error) {
	var out []Entry
	fail := func(err error) ([]Entry, error) {
		for _, e := range out {
			e.File.Close()
		}
		return nil, fmt.Errorf("keeper: fetch: %w", err)
	}
	for start := uint64(0); ; {
		h, p, fds, err := c.roundTrip(ctx, header{op: opFetch, arg: start}, nil, nil)
		if err != nil {
			return fail(err)
		}
		names, ok := decodeNames(p, int(h.n))
		if !ok || len(fds) != len(names) || h.arg != start+uint64(len(names)) {
			closeAll(fds)
			return fail(errors.New("malformed FETCH reply"))
		}
		for i, n := range names {
			out = append(out, Entry{Name: n, File: os.NewFile(uintptr(fds[i]), n)})
		}
		if h.flags&flagMore == 0 {
			return out, nil
		}
		start = h.arg
	}
}

// ExitBatch is one answer to Exits.
type ExitBatch struct {
	Exits []Exit // in sequence order
	Lost  uint64 // records dropped since the keeper started because the table was full
	More  bool   // more records are waiting: call again with the last Seq
}

// Exits acknowledges every exit record with Seq <= ack (the keeper forgets them) and returns the
// next ones, at most 64. With wait it blocks, when there are none, until an app exits.
func (c *Client) Exits(ctx context.Context, ack uint64, wait bool) (ExitBatch, error) {
	h := header{op: opExits, arg: ack}
	if wait {
		h.flags = flagWait
	}
	rh, p, fds, err := c.roundTrip(ctx, h, nil, nil)
	closeAll(fds)
	if err != nil {
		return ExitBatch{}, fmt.Errorf("keeper: exits: %w", err)
	}
	ex, ok := decodeExits(p, int(rh.n))
	if !ok {
		return ExitBatch{}, errors.New("keeper: malformed EXITS reply")
	}
	return ExitBatch{Exits: ex, Lost: rh.arg, More: rh.flags&flagMore != 0}, nil
}

// Ready tells the keeper that this daemon has recovered and serves: it ends the start-up deadline,
// and completes an update. Only the process the keeper started may send it.
func (c *Client) Ready(ctx context.Context) error {
	_, _, fds, err := c.roundTrip(ctx, header{op: opReady}, nil, nil)
	closeAll(fds)
	if err != nil {
		return fmt.Errorf("keeper: ready: %w", err)
	}
	return nil
}

// Update replaces the daemon by argv (argv[0] an absolute path): the current daemon gets
// HandoverSignal and exits, argv starts and must send READY within readyTimeout (0: the keeper's
// Config.ReadyTimeout). It returns the new daemon's pid, or an error matching ErrUpdateFailed
// once the previous daemon has been started again. ctx must allow for the handover and the
// start-up.
func (c *Client) Update(ctx context.Context, argv []string, readyTimeout time.Duration) (int, error) {
	var b strings.Builder
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return 0, errors.New("keeper: update: NUL in an argument")
		}
		b.WriteString(a)
		b.WriteByte(0)
	}
	p := []byte(b.String())
	ms := uint64(readyTimeout / time.Millisecond)
	if !validArgv(p) || ms > maxUpdateTimeout {
		return 0, errors.New("keeper: update: argv[0] must be an absolute path; at most 64 arguments, 4 KiB, and a 10-minute timeout")
	}
	h, _, fds, err := c.roundTrip(ctx, header{op: opUpdate, arg: ms}, p, nil)
	closeAll(fds)
	if err != nil {
		return 0, fmt.Errorf("keeper: update: %w", err)
	}
	return int(h.arg), nil
}
