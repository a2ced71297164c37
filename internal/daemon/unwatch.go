package daemon

import (
	"context"

	"github.com/corralhq/corral/internal/api"
)

// Unwatch turns file watching off for good for every app that has an instance among the targets
// (PM2's `stop --watch`): the definition loses its watch paths and the watcher stops; nothing is
// restarted. `restart --watch` turns it on again.
func (m *Manager) Unwatch(ctx context.Context, targets []string) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	done := map[*app]bool{}
	for _, in := range ins {
		a := in.app
		if done[a] || in.deleted {
			continue
		}
		done[a] = true
		a.spec.Watch = nil
		m.syncAutomation(a)
	}
	m.dirty()
	return m.procList(ins), nil
}
