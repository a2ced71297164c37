// Package events is the daemon's event feed: what happened to which process and when, kept in a
// bounded history and delivered live to subscribers (`corral events`, the monit TUI, the web
// dashboard). It is what a person reads after an incident.
//
// # Concurrency
//
// A Bus is safe for concurrent use. Publish never blocks and never calls out: it takes the Bus's
// own leaf lock (taken after any lock of the caller's, for example the daemon's Manager.mu),
// appends to the history ring and does a non-blocking send to each subscriber. A subscriber that
// falls more than its buffer behind is dropped: its channel is closed and Subscription.Lagged
// reports it, so a slow reader never slows the daemon or grows its memory.
package events

import (
	"sync"
	"time"
)

// Type names what happened. The set grows with the daemon; readers must accept types they do not
// know.
type Type string

// The event types the daemon publishes.
const (
	// Status: an instance's status changed (From → To).
	Status Type = "status"
	// Exit: a process ended (Code, Signal, Uptime, Stderr: its last stderr lines).
	Exit Type = "exit"
	// Restart: the daemon starts an instance again (Reason: crash, memory, cron, watch, user, …).
	Restart Type = "restart"
	// SpawnFailed: a process could not be started (Message: the error).
	SpawnFailed Type = "spawn_failed"
	// App: an app was started, redefined, scaled or deleted (Reason says which).
	App Type = "app"
	// Reload: a step of a reload (Message).
	Reload Type = "reload"
	// Drain: an instance drained its connections before stopping (Message, Data).
	Drain Type = "drain"
	// Daemon: the daemon started, adopted processes, or is shutting down.
	Daemon Type = "daemon"
	// Health: an online instance's readiness probe failed failure_threshold times in a row (To
	// "not ready") or passed again (To "ready"); Message is the probe's output.
	Health Type = "health"
)

// Event is one entry of the feed. Zero-valued fields are omitted on the wire.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    Type      `json:"type"`
	App     string    `json:"app,omitempty"`
	PMID    *int      `json:"pm_id,omitempty"`
	PID     int       `json:"pid,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Code    *int      `json:"exit_code,omitempty"`
	Signal  string    `json:"signal,omitempty"`
	Uptime  int64     `json:"uptime_ms,omitempty"`
	Message string    `json:"message,omitempty"`
	Stderr  []string  `json:"stderr,omitempty"`
	// Data holds type-specific figures (for example a drain's connection counts).
	Data map[string]int64 `json:"data,omitempty"`
}

// ID returns a pointer to id, for Event.PMID.
func ID(id int) *int { return &id }

// DefaultHistory is how many events a Bus keeps when NewBus is given 0.
const DefaultHistory = 2000

// subscriberBuffer is how far a subscriber may fall behind before it is dropped.
const subscriberBuffer = 1024

// Bus keeps the last events and fans new ones out to subscribers.
type Bus struct {
	mu   sync.Mutex
	ring []Event // history, oldest at head once full; grows up to max as events come
	max  int
	head int
	seq  uint64
	subs map[*Subscription]struct{}
	now  func() time.Time
}

// NewBus returns a Bus that keeps the last history events (DefaultHistory when history <= 0).
func NewBus(history int) *Bus {
	if history <= 0 {
		history = DefaultHistory
	}
	// The ring grows as events come (an idle daemon does not hold history's worth of empty events).
	return &Bus{max: history, subs: map[*Subscription]struct{}{}, now: time.Now}
}

// Publish stamps e with the next sequence number and the current time (unless e.Time is set),
// records it and delivers it to every subscriber. It never blocks.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	if len(b.ring) < b.max {
		b.ring = append(b.ring, e)
	} else {
		b.ring[b.head] = e
		b.head = (b.head + 1) % len(b.ring)
	}
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			s.lagged = true
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// History returns the recorded events with a sequence number above since, oldest first, at most
// max of the newest (all when max <= 0).
func (b *Bus) History(since uint64, max int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.historyLocked(since, max)
}

func (b *Bus) historyLocked(since uint64, max int) []Event {
	n := len(b.ring)
	out := make([]Event, 0, n)
	for i := 0; i < n; i++ {
		e := b.ring[(b.head+i)%n]
		if e.Seq > since {
			out = append(out, e)
		}
	}
	if max > 0 && len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// Subscription is a live feed from a Bus.
type Subscription struct {
	b      *Bus
	ch     chan Event
	lagged bool // guarded by b.mu
}

// Subscribe returns the recorded events after since (at most backlog of the newest; none when
// backlog is 0, all when it is negative) and a subscription to every later event, with no gap
// and no duplicate between the two.
func (b *Bus) Subscribe(since uint64, backlog int) ([]Event, *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var past []Event
	if backlog != 0 {
		past = b.historyLocked(since, backlog)
	}
	s := &Subscription{b: b, ch: make(chan Event, subscriberBuffer)}
	b.subs[s] = struct{}{}
	return past, s
}

// C delivers the events published after Subscribe. It is closed by Close, or when the subscriber
// fell too far behind (see Lagged).
func (s *Subscription) C() <-chan Event { return s.ch }

// Lagged reports whether the subscription was dropped for falling behind.
func (s *Subscription) Lagged() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.lagged
}

// Close ends the subscription and closes C (if the Bus has not already).
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if _, ok := s.b.subs[s]; ok {
		delete(s.b.subs, s)
		close(s.ch)
	}
}
