package cluster

import (
	"errors"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollLoop runs the round-robin hot path of a Primary on one goroutine: accepting on its listening
// sockets and reading its workers' channels, driven by a level-triggered epoll set. A connection then
// costs the same system calls as in Node's primary (accept4, sendmsg, recvmsg, close) and no hand-off
// between goroutines. The loop calls each handler with no lock held.
type pollLoop struct {
	epfd, wake int // wake: an eventfd that interrupts epoll_wait to stop

	// mu guards the table below; a leaf lock (add and remove are called under Primary.mu).
	mu       sync.Mutex
	handlers map[int32]*pollEntry
	stopping bool // the Primary closed: stop once nothing is registered
	running  bool

	done chan struct{} // closed when the loop goroutine has ended and closed its descriptors
}

type pollEntry struct{ fn func() }

// yieldEvery is how often the loop goroutine passes through the scheduler (see run): well within the
// runtime's 10 ms preemption period.
const yieldEvery = 5 * time.Millisecond

func newPollLoop() (*pollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	l := &pollLoop{epfd: epfd, wake: wake, handlers: make(map[int32]*pollEntry), running: true, done: make(chan struct{})}
	go l.run()
	return l, nil
}

// add calls fn on the loop goroutine whenever fd is readable, until remove.
func (l *pollLoop) add(fd int, fn func()) (*pollEntry, error) { return l.register(fd, fn, true) }

// addIdle registers fn for fd like add, but does not watch fd yet: see watch.
func (l *pollLoop) addIdle(fd int, fn func()) (*pollEntry, error) { return l.register(fd, fn, false) }

func (l *pollLoop) register(fd int, fn func(), watch bool) (*pollEntry, error) {
	e := &pollEntry{fn: fn}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return nil, errors.New("cluster: poll loop stopped")
	}
	l.handlers[int32(fd)] = e
	if !watch {
		return e, nil
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		delete(l.handlers, int32(fd))
		return nil, err
	}
	return e, nil
}

// watch starts (on) or stops calling e's handler when fd is readable; fd stays registered. Stopping
// takes fd out of the epoll set rather than clearing its events, so that not even a hang-up (a
// listening socket shut down through another descriptor) wakes the loop for it. An event already
// collected by epoll_wait may still call the handler once after watch(false).
func (l *pollLoop) watch(fd int, e *pollEntry, on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e == nil || l.handlers[int32(fd)] != e {
		return nil
	}
	if on {
		return epollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	return epollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, &unix.EpollEvent{})
}

// remove stops watching fd if it is still registered as e (the number may have been reused). Call it
// before closing fd, or right after when the close happened elsewhere.
func (l *pollLoop) remove(fd int, e *pollEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e == nil || l.handlers[int32(fd)] != e {
		return
	}
	delete(l.handlers, int32(fd))
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil) // ENOENT when unwatched, EBADF when closed already
	if l.stopping && len(l.handlers) == 0 {
		l.signal()
	}
}

// stop ends the loop once nothing is registered any more; if nothing is, it waits until the loop has
// released its descriptors. Call it without locks the handlers take.
func (l *pollLoop) stop() {
	l.mu.Lock()
	l.stopping = true
	idle := len(l.handlers) == 0
	if idle {
		l.signal()
	}
	l.mu.Unlock()
	if idle {
		<-l.done
	}
}

// wait returns once the loop goroutine has ended (after stop, when nothing is registered).
func (l *pollLoop) wait() { <-l.done }

func (l *pollLoop) signal() {
	var one = [8]byte{1}
	unix.Write(l.wake, one[:])
}

func (l *pollLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 128)
	yielded := time.Now()
	for {
		// A goroutine that only ever leaves the CPU in system calls never passes through the
		// scheduler, and after 10 ms the runtime's monitor (sysmon) takes it for a runaway: it takes
		// its processor away in the middle of epoll_wait, and then polls every 20 µs for a
		// millisecond or more. Yielding now and then keeps it quiet.
		if time.Since(yielded) > yieldEvery {
			runtime.Gosched()
			yielded = time.Now()
		}
		// Blocked in epoll_wait. (Parking in Go's network poller on the epoll descriptor instead,
		// with zero-timeout epoll_waits, was measured: it costs more CPU per connection, the
		// scheduler's search for work on every wake-up.)
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			break
		}
		for i := 0; i < n; i++ {
			fd := events[i].Fd
			if fd == int32(l.wake) {
				var buf [8]byte
				unix.Read(l.wake, buf[:])
				l.mu.Lock()
				done := l.stopping && len(l.handlers) == 0
				if done {
					l.running = false
				}
				l.mu.Unlock()
				if done {
					l.closeFDs()
					return
				}
				continue
			}
			l.mu.Lock()
			e := l.handlers[fd]
			l.mu.Unlock()
			if e != nil {
				e.fn()
			}
		}
	}
	l.mu.Lock()
	l.running = false
	l.mu.Unlock()
}

// closeFDs releases the loop's descriptors, on the loop goroutine as it ends.
func (l *pollLoop) closeFDs() {
	unix.Close(l.epfd)
	unix.Close(l.wake)
}

// accept4 accepts a connection, non-blocking and close-on-exec, without asking for the peer's address
// (unix.Accept4 decodes it, which costs a getsockopt per connection). The socket is non-blocking, so
// the raw system call never blocks the thread.
func accept4(lfd int) (int, error) {
	fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// socketpair returns a connected pair of close-on-exec Unix stream sockets.
func socketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

// isNonblock reports whether fd is in non-blocking mode.
func isNonblock(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// The system calls of the hand-off path that cannot block (on non-blocking descriptors) are made raw:
// without the scheduler's system-call bookkeeping, which costs more than some of the calls and wakes
// its monitor thread (sysmon) when it sleeps. Only epoll_wait, which blocks, goes through it.

// epollCtl is unix.EpollCtl, raw.
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// closeFD closes a connection's descriptor, raw: without SO_LINGER, close never blocks.
func closeFD(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
