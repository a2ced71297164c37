package daemon

import (
	"context"
	"slices"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
)

// Events implements api.EventSource: the recorded events req selects, then, with req.Follow,
// every new one until ctx is done. The feed is published under m.mu at each state change, exit,
// failed start and restart decision (see events.Bus for why that never blocks the Manager); this
// goroutine only forwards it.
func (m *Manager) Events(ctx context.Context, req api.EventsRequest) (<-chan events.Event, error) {
	backlog := req.Backlog
	if len(req.Apps) > 0 && backlog != 0 {
		backlog = -1 // filter the whole history, then keep the newest req.Backlog
	}
	past, sub := m.ev.Subscribe(req.Since, backlog)
	if backlog != req.Backlog {
		kept := past[:0]
		for _, e := range past {
			if api.FilterEvents(req, e) {
				kept = append(kept, e)
			}
		}
		if req.Backlog > 0 && len(kept) > req.Backlog {
			kept = kept[len(kept)-req.Backlog:]
		}
		past = kept
	}
	out := make(chan events.Event, 64)
	go func() {
		defer close(out)
		defer sub.Close()
		send := func(e events.Event) bool {
			if !api.FilterEvents(req, e) {
				return true
			}
			select {
			case out <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, e := range past {
			if !send(e) {
				return
			}
		}
		if !req.Follow {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.C():
				if !ok || !send(e) {
					return
				}
			}
		}
	}()
	return out, nil
}

// userAction records in the feed that a user asked for verb on the apps of ins (one event per
// app; the instances' own events follow as they change). The caller does not hold m.mu.
func (m *Manager) userAction(verb string, ins []*instance) {
	m.mu.Lock()
	var names []string
	for _, in := range ins {
		if !slices.Contains(names, in.st.Name) {
			names = append(names, in.st.Name)
		}
	}
	m.mu.Unlock()
	for _, n := range names {
		m.ev.Publish(events.Event{Type: events.App, App: n, Reason: verb})
	}
}
