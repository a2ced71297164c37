package daemon

import (
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/events"
)

// userRestarts records a user's restart of each of ins (reason "user"), before it happens.
// The caller does not hold m.mu.
func (m *Manager) userRestarts(ins []*instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range ins {
		if in.deleted {
			continue
		}
		m.ev.Publish(events.Event{Type: events.Restart, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: in.st.PID, Reason: "user"})
	}
}

// autoReason is the event reason of an automatic restart: "cron" or "watch" (the full reason,
// with the cron expression or the changed file, goes in the event's message).
func autoReason(reason string) string {
	switch {
	case strings.HasPrefix(reason, "cron"):
		return "cron"
	case strings.HasPrefix(reason, "watch"):
		return "watch"
	}
	return reason
}

// reloadStep records a step of an instance's reload. The caller holds m.mu.
func (m *Manager) reloadStep(in *instance, pid int, format string, args ...any) {
	m.ev.Publish(events.Event{Type: events.Reload, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: pid,
		Message: fmt.Sprintf(format, args...)})
}

// mib renders a byte count in MiB for event messages.
func mib(n uint64) string {
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
