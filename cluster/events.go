package cluster

import (
	"encoding/json"
	"os"
	"sync"
)

// handlers are the user's event handlers of a Primary; guarded by Primary.mu.
type handlers struct {
	fork, online, disconnect []func(*Worker)
	listening                []func(*Worker, Address)
	message                  []func(*Worker, json.RawMessage)
	exit                     []func(*Worker, int, os.Signal)
}

// The threading rule shared by every On* method is written once, on OnFork, and referred to.

// OnFork registers f to run when a worker has been started (Node's 'fork').
//
// Threading: the handlers of all events of a Primary run one at a time, in the order the events
// happened, on the Primary's event goroutine, never under a lock of the package. A handler may call
// any method of the Primary or of a Worker (Fork included) except Shutdown, which waits for the
// handlers to return. A handler that blocks delays the events after it, but not the hand-off of
// connections or the reading of channels, which never wait for handlers.
func (p *Primary) OnFork(f func(*Worker)) {
	p.mu.Lock()
	p.handlers.fork = append(p.handlers.fork, f)
	p.mu.Unlock()
}

// OnOnline registers f to run when a worker reports it is running (Node's 'online').
//
// Threading: as for OnFork: on the event goroutine, one handler at a time, in event order.
func (p *Primary) OnOnline(f func(*Worker)) {
	p.mu.Lock()
	p.handlers.online = append(p.handlers.online, f)
	p.mu.Unlock()
}

// OnListening registers f to run when a worker is listening on an address (Node's 'listening').
// Worker.Listening is closed just before the first such event of a worker.
//
// Threading: as for OnFork: on the event goroutine, one handler at a time, in event order.
func (p *Primary) OnListening(f func(*Worker, Address)) {
	p.mu.Lock()
	p.handlers.listening = append(p.handlers.listening, f)
	p.mu.Unlock()
}

// OnMessage registers f to run for every user message a worker sends (Node's 'message'), in the
// order the worker sent them.
//
// Threading: as for OnFork: on the event goroutine, one handler at a time, in event order.
func (p *Primary) OnMessage(f func(*Worker, json.RawMessage)) {
	p.mu.Lock()
	p.handlers.message = append(p.handlers.message, f)
	p.mu.Unlock()
}

// OnDisconnect registers f to run when a worker's IPC channel has closed (Node's 'disconnect'). It
// comes before the worker's exit event.
//
// Threading: as for OnFork: on the event goroutine, one handler at a time, in event order.
func (p *Primary) OnDisconnect(f func(*Worker)) {
	p.mu.Lock()
	p.handlers.disconnect = append(p.handlers.disconnect, f)
	p.mu.Unlock()
}

// OnExit registers f to run when a worker process has exited (Node's 'exit'). code is the exit status
// and sig nil for a normal exit; for a worker killed by a signal, code is -1 and sig the signal.
// Worker.Done is closed just before the exit handlers run.
//
// Threading: as for OnFork: on the event goroutine, one handler at a time, in event order.
func (p *Primary) OnExit(f func(w *Worker, code int, sig os.Signal)) {
	p.mu.Lock()
	p.handlers.exit = append(p.handlers.exit, f)
	p.mu.Unlock()
}

// emit queues an event: f runs on the event goroutine with the handlers registered by then. It may
// be called from any goroutine, with p.mu held or not.
func (p *Primary) emit(f func(h *handlers)) {
	p.events.push(func() {
		p.mu.Lock()
		h := p.handlers
		p.mu.Unlock()
		f(&h)
	})
}

// eventQueue runs functions one at a time, in the order they were pushed, on a goroutine that exists
// only while there is something to run. It is how code that must not block (the poll loop, a
// channel's goroutines) hands work to user code: a Primary's event handlers, a worker's Messages
// channel. Its mu is a leaf lock; the functions run without it.
type eventQueue struct {
	mu      sync.Mutex
	q       []func()
	running bool
	idle    chan struct{} // closed when the running goroutine ends
}

// push queues f. It never blocks on f or on the functions ahead of it.
func (e *eventQueue) push(f func()) {
	e.mu.Lock()
	e.q = append(e.q, f)
	if !e.running {
		e.running = true
		e.idle = make(chan struct{})
		go e.run()
	}
	e.mu.Unlock()
}

func (e *eventQueue) run() {
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			close(e.idle)
			e.mu.Unlock()
			return
		}
		f := e.q[0]
		e.q[0] = nil
		e.q = e.q[1:]
		e.mu.Unlock()
		f()
	}
}

// wait returns once nothing is queued and no goroutine is running; functions pushed meanwhile are
// waited for too. It must not be called from a queued function.
func (e *eventQueue) wait() {
	for {
		e.mu.Lock()
		if !e.running {
			e.mu.Unlock()
			return
		}
		idle := e.idle
		e.mu.Unlock()
		<-idle
	}
}
