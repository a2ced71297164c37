package cluster

import (
	"encoding/json"
	"os"
	"sync"
)

var (
	defaultMu      sync.Mutex
	defaultPrimary *Primary
)

// Default returns the Primary the package-level functions act on, created on first use with the
// settings last given to SetupPrimary.
func Default() *Primary {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultPrimary == nil {
		defaultPrimary = NewPrimary(Settings{})
	}
	return defaultPrimary
}

// SetupPrimary sets how the default Primary starts workers: Node's cluster.setupPrimary. As in Node,
// the settings apply to workers forked afterwards; handlers already registered stay.
func SetupPrimary(s Settings) {
	p := Default()
	p.mu.Lock()
	p.settings = s
	p.policy = s.SchedulingPolicy.resolve()
	p.mu.Unlock()
	if s.Logger != nil {
		p.setLogger(s.Logger)
	}
}

// Fork starts a worker of the default Primary: Node's cluster.fork(env).
func Fork(env map[string]string) (*Worker, error) { return Default().Fork(env) }

// Workers returns the default Primary's live workers keyed by ID: Node's cluster.workers.
func Workers() map[int]*Worker { return Default().Workers() }

// OnFork registers a 'fork' handler on the default Primary.
//
// Threading: as Primary.OnFork: handlers run one at a time, in event order, on the default
// Primary's event goroutine, under no lock; they must not call Shutdown.
func OnFork(f func(*Worker)) { Default().OnFork(f) }

// OnOnline registers an 'online' handler on the default Primary.
//
// Threading: as Primary.OnFork: on the default Primary's event goroutine, in event order.
func OnOnline(f func(*Worker)) { Default().OnOnline(f) }

// OnListening registers a 'listening' handler on the default Primary.
//
// Threading: as Primary.OnFork: on the default Primary's event goroutine, in event order.
func OnListening(f func(*Worker, Address)) { Default().OnListening(f) }

// OnMessage registers a 'message' handler on the default Primary.
//
// Threading: as Primary.OnFork: on the default Primary's event goroutine, in event order.
func OnMessage(f func(*Worker, json.RawMessage)) { Default().OnMessage(f) }

// OnDisconnect registers a 'disconnect' handler on the default Primary.
//
// Threading: as Primary.OnFork: on the default Primary's event goroutine, in event order.
func OnDisconnect(f func(*Worker)) { Default().OnDisconnect(f) }

// OnExit registers an 'exit' handler on the default Primary.
//
// Threading: as Primary.OnFork: on the default Primary's event goroutine, in event order.
func OnExit(f func(w *Worker, code int, sig os.Signal)) { Default().OnExit(f) }
