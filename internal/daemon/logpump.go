package daemon

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/fdloop"
	"github.com/corralhq/corral/internal/logs"
	"golang.org/x/sys/unix"
)

// The log pump of a pipe kept in the keeper (keepPipes). A plain read-then-write pump loses what
// it has read but not yet written when the daemon is SIGKILLed. This one peeks first: tee(2)
// copies what the pipe holds into a private pipe without consuming it, the complete lines of that
// copy are written to the log files (and subscribers), and only then are exactly those bytes
// consumed from the app's pipe. A daemon killed between the write and the consume leaves those
// bytes in the pipe, so the next daemon writes them again: a SIGKILL duplicates at most one chunk
// (teeChunk, 64 KiB) per stream and loses nothing. A partial last line is not consumed: it waits in
// the pipe for its newline (or for the writers to close it, or for MaxLine bytes), so it is never
// held in memory where a SIGKILL would lose it. A hand-over (keeperLink.quiesce) stops a pump
// between two chunks: nothing lost, nothing duplicated.

// teeChunk bounds one peek: the capacity of the private pipes.
const teeChunk = 64 << 10

// teeBufs pools the teeChunk buffers of the pumps: a pump holds one only while its pipe has data
// (within teeOnce), so idle pipes pin no memory however many processes there are.
var teeBufs = sync.Pool{New: func() any { b := make([]byte, teeChunk); return &b }}

// teePipes is a pool of private pipes for the peeks; each is empty when in the pool.
var teePipes = make(chan [2]int, 8)

func getTeePipe() ([2]int, error) {
	select {
	case p := <-teePipes:
		return p, nil
	default:
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return p, err
	}
	return p, nil
}

func putTeePipe(p [2]int, ok bool) {
	if ok {
		select {
		case teePipes <- p:
			return
		default:
		}
	}
	unix.Close(p[0])
	unix.Close(p[1])
}

// startKeptPump starts the pump of a kept pipe. The caller holds m.mu.
//
// The pump holds no goroutine while its pipe is idle: the pipe is watched by the shared poll loop
// (internal/fdloop), whose callback wakes the pump's Notifier, which runs keptPump.step on a
// goroutine of its own until the pipe is empty (or holds only a partial line) again. A partial
// line's delay is a timer that wakes the same Notifier. step runs under the pump's mu, one run at
// a time; the pump's state is owned by whoever holds mu.
func (m *Manager) startKeptPump(src *os.File, w *logs.LineWriter, name string) {
	kp := m.kp
	p := &keptPump{m: m, src: src, fd: fdOf(src), w: w, name: name}
	p.n.Fn = p.step
	kp.mu.Lock()
	kp.pumps[src] = struct{}{}
	kp.mu.Unlock()
	m.keptPumps.add(p)
	kp.pumpWG.Add(1)
	m.bg.Add(1) // until the pump ends (end), as a goroutine of the Manager
	p.mu.Lock()
	watch, err := fdloop.Default.Add(p.fd, p.n.Notify)
	if err != nil {
		// No epoll (or no descriptor left for it): the pump waits on a goroutine of its own.
		p.mu.Unlock()
		go func() {
			eof := m.pumpKept(src, w)
			p.mu.Lock()
			p.ended = true
			p.mu.Unlock()
			p.finish(eof)
		}()
		return
	}
	p.watch = watch
	p.mu.Unlock()
	p.n.Notify() // what the pipe held before it was watched
}

// keptPump is the state of the pump of one kept pipe (see startKeptPump), guarded by mu.
type keptPump struct {
	m     *Manager
	src   *os.File
	fd    int
	w     *logs.LineWriter
	name  string
	n     fdloop.Notifier
	mu    sync.Mutex
	watch *fdloop.Watch
	timer *time.Timer // a partial line's delay, nil when none is pending
	// partialSince is when the pipe was first seen holding a partial line; after
	// logs.DefaultPartialDelay it is written out and consumed (flush), as PM2 writes output as it
	// comes.
	partialSince time.Time
	ended        bool
}

// step moves the complete lines the pipe holds into the line writer until the pipe is empty or
// holds only a partial line, and ends the pump at the end of the stream, on an error or at the
// hand-over (kp.quiesce, checked between two chunks). It runs on the Notifier's goroutine.
func (p *keptPump) step() {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	m := p.m
	flush := !p.partialSince.IsZero() && time.Since(p.partialSince) >= logs.DefaultPartialDelay
	for {
		if m.kp.quiesce.Load() {
			p.endLocked(false)
			return
		}
		done, eof, partial, err := teeOnce(p.fd, p.w, flush)
		flush = false
		switch {
		case err != nil:
			m.log.Warn("log pipe", "err", err)
			p.endLocked(true)
			return
		case eof:
			p.endLocked(true)
			return
		case done:
			p.clearPartial() // wrote something: a partial line left counts from now
			continue
		case partial:
			if p.partialSince.IsZero() {
				p.partialSince = time.Now()
			}
			wait := time.Until(p.partialSince.Add(logs.DefaultPartialDelay))
			if wait <= 0 {
				flush = true
				continue
			}
			if p.timer == nil {
				p.timer = time.AfterFunc(wait, p.n.Notify)
			}
		default: // empty: wait for the pipe
			p.clearPartial()
		}
		p.mu.Unlock()
		return
	}
}

// clearPartial forgets a partial line's delay. The caller holds p.mu.
func (p *keptPump) clearPartial() {
	p.partialSince = time.Time{}
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// endLocked ends the pump: its pipe is no longer watched, its line writer and its end of the
// pipe are closed and, at the end of the stream (eof), the keeper's copy is dropped. The caller
// holds p.mu, which endLocked releases.
func (p *keptPump) endLocked(eof bool) {
	p.ended = true
	if p.watch != nil {
		p.watch.Remove()
	}
	p.clearPartial()
	p.mu.Unlock()
	p.finish(eof)
}

// finish is what an ended pump does after it stopped watching its pipe.
func (p *keptPump) finish(eof bool) {
	m, kp := p.m, p.m.kp
	kp.mu.Lock()
	delete(kp.pumps, p.src)
	kp.mu.Unlock()
	m.keptPumps.remove(p)
	p.w.Close()
	p.src.Close()
	if eof {
		kp.remove(p.name) // drained and every writer gone: nothing left to keep
	}
	kp.pumpWG.Done()
	m.bg.Done()
}

// pumpSet is the Manager's kept pumps, woken at the hand-over. Its lock is a leaf.
type pumpSet struct {
	mu sync.Mutex
	m  map[*keptPump]struct{}
}

func (s *pumpSet) add(p *keptPump) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*keptPump]struct{}{}
	}
	s.m[p] = struct{}{}
	s.mu.Unlock()
}

func (s *pumpSet) remove(p *keptPump) {
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}

// errQuiesce ends a pump for the hand-over.
var errQuiesce = errors.New("hand-over")

// pumpKept moves complete lines from src into w until every writer has closed the pipe (it then
// returns true) or the hand-over stops it (false). It blocks its goroutine on the pipe: the
// pump of a kept pipe when the poll loop cannot watch it (startKeptPump).
func (m *Manager) pumpKept(src *os.File, w *logs.LineWriter) bool {
	rc, err := src.SyscallConn()
	if err != nil {
		m.log.Warn("log pipe", "err", err)
		return true
	}
	// partialSince is when the pipe was first seen holding a partial line; after
	// logs.DefaultPartialDelay it is written out and consumed (flush), as PM2 writes output as it
	// comes. Only then is a read deadline set, to wake the wait for the pipe.
	var partialSince time.Time
	for {
		if m.kp.quiesce.Load() {
			return false
		}
		flush := false
		if !partialSince.IsZero() {
			flush = time.Since(partialSince) >= logs.DefaultPartialDelay
			deadline := partialSince.Add(logs.DefaultPartialDelay)
			if flush {
				deadline = time.Time{} // a passed deadline would fail the read before the flush
			}
			_ = src.SetReadDeadline(deadline)
			if m.kp.quiesce.Load() {
				return false // the hand-over's wake-up may have been overwritten
			}
		}
		var eof, partial bool
		var perr error
		err := rc.Read(func(fd uintptr) bool {
			if m.kp.quiesce.Load() {
				perr = errQuiesce
				return true
			}
			done, end, part, err := teeOnce(int(fd), w, flush)
			flush = false
			eof, partial, perr = end, part, err
			if part && partialSince.IsZero() {
				return true // set the deadline first
			}
			return done
		})
		switch {
		case partial && partialSince.IsZero():
			partialSince = time.Now()
		case !partial && !partialSince.IsZero():
			partialSince = time.Time{}
			if !m.kp.quiesce.Load() {
				_ = src.SetReadDeadline(time.Time{})
			}
		}
		switch {
		case m.kp.quiesce.Load():
			return false
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			continue // a partial line's delay is over (or a hand-over that did not happen)
		case err != nil:
			m.log.Warn("log pipe", "err", err)
			return true
		case perr != nil:
			m.log.Warn("log pipe", "err", perr)
			return true
		case eof:
			return true
		}
	}
}

// teeOnce peeks at what the pipe fd holds, writes its complete lines to w and consumes them. It
// reports done=false when the caller should wait for the pipe to become readable again (empty, or
// only a partial line so far: partial), eof at the end of the stream. With flush a partial line is
// written out (logs.LineWriter.FlushPartial) and consumed too.
func teeOnce(fd int, w *logs.LineWriter, flush bool) (done, eof, partial bool, err error) {
	p, err := getTeePipe()
	if err != nil {
		return true, false, false, err
	}
	var n64 int64
	for {
		n64, err = unix.Tee(fd, p[1], teeChunk, unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.EAGAIN:
		putTeePipe(p, true)
		return false, false, false, nil
	case err != nil:
		putTeePipe(p, true)
		return true, false, false, err
	case n64 == 0:
		putTeePipe(p, true)
		return true, true, false, nil
	}
	n := int(n64)
	bp := teeBufs.Get().(*[]byte)
	defer teeBufs.Put(bp)
	buf := *bp
	if err := readFull(p[0], buf[:n]); err != nil {
		putTeePipe(p, false)
		return true, false, false, err
	}
	putTeePipe(p, true)
	data := buf[:n]
	cut := bytes.LastIndexByte(data, '\n') + 1
	flushed := false
	if cut == 0 {
		if n < logs.DefaultMaxLine && !hungUp(fd) && !flush {
			return false, false, true, nil // a partial line: wait for more
		}
		// A line longer than MaxLine, the last one of a closed stream, or a partial line
		// whose delay is over.
		cut, flushed = n, flush
	}
	_, _ = w.Write(data[:cut]) // fails only after Close
	if flushed {
		w.FlushPartial()
	}
	if err := readFull(fd, buf[:cut]); err != nil {
		return true, false, false, err
	}
	return true, false, false, nil
}

// readFull reads exactly len(b) bytes that are known to be in the pipe fd.
func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			// Cannot happen: the bytes were there and only this pump reads the pipe. Wait for
			// the pipe (bounded) rather than spin, in case another reader appeared.
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
			continue
		case err != nil:
			return err
		case n == 0:
			return errors.New("log pipe: unexpected end of data")
		}
		b = b[n:]
	}
	return nil
}

// hungUp reports whether every writer of the pipe fd has closed it.
func hungUp(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n > 0 && pfd[0].Revents&unix.POLLHUP != 0
}

// quiescePumps stops every pump of a kept pipe at its next chunk boundary and waits (bounded)
// until they have returned. The pipes stay in the keeper.
func (m *Manager) quiescePumps(timeout time.Duration) bool {
	kp := m.kp
	kp.quiesce.Store(true)
	kp.mu.Lock()
	for f := range kp.pumps {
		_ = f.SetReadDeadline(time.Now()) // wakes a pump waiting for the pipe (pumpKept)
	}
	kp.mu.Unlock()
	m.keptPumps.mu.Lock()
	for p := range m.keptPumps.m {
		p.n.Notify() // a pump on the poll loop stops at its next step
	}
	m.keptPumps.mu.Unlock()
	done := make(chan struct{})
	go func() {
		kp.pumpWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// copyLines is the pump of a pipe without a keeper: it copies src into w until every writer has
// closed the pipe. Like the kept pump it holds a teeBufs buffer only while the pipe has data
// (io.Copy would pin 32 KiB per pipe for the process's life).
func copyLines(src *os.File, w io.Writer) {
	rc, err := src.SyscallConn()
	if err != nil {
		_, _ = io.Copy(w, src)
		return
	}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			bp := teeBufs.Get().(*[]byte)
			defer teeBufs.Put(bp)
			for {
				n, rerr = unix.Read(int(fd), *bp)
				if rerr == unix.EINTR {
					continue
				}
				if rerr == unix.EAGAIN {
					return false // wait for the pipe without a buffer
				}
				if n > 0 {
					_, _ = w.Write((*bp)[:n])
				}
				return true
			}
		})
		if err != nil || rerr != nil || n == 0 {
			return
		}
	}
}
