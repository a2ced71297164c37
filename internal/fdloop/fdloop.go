// Package fdloop watches many file descriptors for readiness from one goroutine, so that a
// daemon with many idle pipes (two log pipes per supervised process) does not park one goroutine,
// with its stack, per descriptor.
//
// A Loop owns a private epoll set and one goroutine that waits on it. That goroutine holds no OS
// thread: the epoll descriptor is itself pollable, and the goroutine parks in the runtime's poller
// on it like any network read. Descriptors are added edge-triggered (EPOLLIN|EPOLLRDHUP|EPOLLET):
// their callback runs, on the loop's goroutine, each time new data arrives or the last writer
// hangs up, as with the runtime's own poller. A callback must not block: it hands the work to a
// goroutine of its owner's (see Notifier) and returns.
//
// The loop runs only while something is watched: Add starts it, and the Remove of the last watch
// closes the epoll set, which ends the goroutine. Events already fetched for a watch that has been
// removed are dropped: each watch has its own id, which is the event's data (not the descriptor's
// number, which the kernel may reuse once the owner closes it).
package fdloop

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Loop is a set of watched descriptors. The zero Loop is ready to use. Its lock is a leaf: no
// callback runs under it.
type Loop struct {
	mu      sync.Mutex
	ep      *os.File // the epoll set, nil while nothing is watched
	epfd    int
	watches map[uint32]func()
	next    uint32
}

// Default is the loop the daemon's pumps share.
var Default = &Loop{}

// Watch is one watched descriptor, returned by Add.
type Watch struct {
	l  *Loop
	id uint32
	fd int
	ep *os.File // the epoll set fd was added to
}

// Add watches fd (a pipe or a pidfd: anything epoll takes) and calls fn on the loop's goroutine
// each time it turns readable or hangs up. fd stays the caller's: it must call Remove before it
// closes fd. fn must return quickly and must not call into the Loop.
func (l *Loop) Add(fd int, fn func()) (*Watch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ep == nil {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("fdloop: epoll_create: %w", err)
		}
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			return nil, fmt.Errorf("fdloop: epoll set: %w", err)
		}
		ep := os.NewFile(uintptr(epfd), "epoll")
		rc, err := ep.SyscallConn()
		if err != nil {
			ep.Close()
			return nil, fmt.Errorf("fdloop: epoll set: %w", err)
		}
		l.ep, l.epfd, l.watches = ep, epfd, map[uint32]func(){}
		go l.run(rc, epfd)
	}
	l.next++
	id := l.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(id)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		if ep := l.idleLocked(); ep != nil {
			defer ep.Close() // after mu (see Remove)
		}
		return nil, fmt.Errorf("fdloop: watch fd %d: %w", fd, err)
	}
	l.watches[id] = fn
	return &Watch{l: l, id: id, fd: fd, ep: l.ep}, nil
}

// Remove stops watching: once it has returned, the watch's callback is not called again (one
// that is running may still be finishing). The descriptor may then be closed. Remove of a removed
// watch does nothing.
func (w *Watch) Remove() {
	l := w.l
	l.mu.Lock()
	if _, ok := l.watches[w.id]; !ok || l.ep != w.ep {
		l.mu.Unlock()
		return
	}
	delete(l.watches, w.id)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	ep := l.idleLocked()
	l.mu.Unlock()
	if ep != nil {
		// Not under mu: Close waits for the loop's read in progress, whose callback takes mu.
		// It wakes and ends run.
		ep.Close()
	}
}

// idleLocked forgets the epoll set when nothing is watched and returns it for the caller to
// close once it has released mu (nil when something is watched).
func (l *Loop) idleLocked() *os.File {
	if len(l.watches) != 0 || l.ep == nil {
		return nil
	}
	ep := l.ep
	l.ep, l.epfd, l.watches = nil, -1, nil
	return ep
}

// run waits for events on the epoll set epfd and calls the watches' callbacks, until the set is
// closed.
func (l *Loop) run(rc interface {
	Read(func(uintptr) bool) error
}, epfd int) {
	events := make([]unix.EpollEvent, 32)
	var fns []func()
	for {
		err := rc.Read(func(uintptr) bool {
			n, err := unix.EpollWait(epfd, events, 0)
			if err != nil || n <= 0 {
				return false // nothing ready: park until the set is readable
			}
			fns = fns[:0]
			l.mu.Lock()
			for _, ev := range events[:n] {
				if fn, ok := l.watches[uint32(ev.Fd)]; ok && l.epfd == epfd {
					fns = append(fns, fn)
				}
			}
			l.mu.Unlock()
			for _, fn := range fns {
				fn()
			}
			clear(fns)
			return true // and look again before parking: more may be ready
		})
		if err != nil {
			return // the set was closed (Remove of the last watch)
		}
	}
}

// Notifier runs a function on a goroutine of its own, one run at a time, for wake-ups that may
// come from several places at once (a Loop callback, a timer): a wake-up while the function runs
// makes it run once more after, and none is lost; an idle Notifier holds no goroutine. The zero
// Notifier is ready; set Fn before the first Notify.
type Notifier struct {
	Fn    func()
	Go    func(func()) // starts the goroutine; nil: the go statement
	state atomic.Int32 // 0 idle, 1 running, 2 running and woken again
}

// Notify runs n.Fn soon (now on a new goroutine if it is idle, else again after its current run).
func (n *Notifier) Notify() {
	for {
		switch s := n.state.Load(); s {
		case 0:
			if n.state.CompareAndSwap(0, 1) {
				if n.Go != nil {
					n.Go(n.loop)
				} else {
					go n.loop()
				}
				return
			}
		case 1:
			if n.state.CompareAndSwap(1, 2) {
				return
			}
		default:
			return
		}
	}
}

func (n *Notifier) loop() {
	for {
		n.Fn()
		if n.state.CompareAndSwap(1, 0) {
			return
		}
		n.state.Store(1) // woken meanwhile: once more
	}
}
