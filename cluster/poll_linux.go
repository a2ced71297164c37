package cluster

import (
	"errors"
	"sync"

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
		return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
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
	for {
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
					unix.Close(l.epfd)
					unix.Close(l.wake)
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
