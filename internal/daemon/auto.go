package daemon

import (
	"context"
	"github.com/corralhq/corral/internal/events"
	"slices"
	"sort"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// autoRestartTimeout bounds one automatic replacement of an instance (cron_restart, watch),
// including the wait for a user operation on the instance to finish.
const autoRestartTimeout = time.Minute

// armed reports whether a's automatic restarts (cron_restart, watch) should be active: the app
// is live and at least one of its instances was not stopped by the user. The caller holds m.mu.
func (m *Manager) armed(a *app) bool {
	if m.closed || m.shuttingDown || m.apps[a.spec.Name] != a {
		return false
	}
	return slices.ContainsFunc(a.instances, func(in *instance) bool { return !in.deleted && !in.userStopped })
}

// syncAutomation starts, replaces or stops a's cron_restart schedule and file watcher so that
// they follow its current definition while it is armed (see armed). It is cheap when nothing
// changed. The caller holds m.mu.
func (m *Manager) syncAutomation(a *app) {
	on := m.armed(a)
	m.syncCron(a, on)
	m.syncWatch(a, on)
}

// stopAutomation stops a's cron_restart schedule and file watcher. The caller holds m.mu.
func (m *Manager) stopAutomation(a *app) {
	m.syncCron(a, false)
	m.syncWatch(a, false)
}

// tryAutoRestart replaces, one after the other, the instances of a that the user did not stop:
// online instances of cluster and listen apps are reloaded without downtime, the others (fork
// apps, instances that are not online) restarted. reason becomes a note on each instance. It
// does nothing and returns busy=true while another automatic restart of a is in progress.
func (m *Manager) tryAutoRestart(a *app, reason string) (busy bool) {
	m.mu.Lock()
	if a.autoBusy {
		m.mu.Unlock()
		return true
	}
	if m.shuttingDown || m.apps[a.spec.Name] != a {
		m.mu.Unlock()
		return false
	}
	a.autoBusy = true
	ins := slices.Clone(a.instances)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		a.autoBusy = false
		m.mu.Unlock()
	}()
	sort.Slice(ins, func(i, j int) bool { return ins[i].st.PMID < ins[j].st.PMID })
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(context.Background(), autoRestartTimeout)
		m.autoReplace(ctx, in, reason)
		cancel()
	}
	return false
}

// autoReplace reloads or restarts one instance for tryAutoRestart, under its operation lock.
func (m *Manager) autoReplace(ctx context.Context, in *instance, reason string) {
	if err := in.lock(ctx); err != nil {
		m.log.Warn("automatic restart skipped", "pm_id", in.st.PMID, "reason", reason, "err", err)
		return
	}
	defer in.unlock()
	m.mu.Lock()
	if in.deleted || in.userStopped || m.shuttingDown {
		m.mu.Unlock()
		return
	}
	reload := in.app.res.mode != modeFork && in.st.Status == StatusOnline
	m.log.Info("automatic restart", "pm_id", in.st.PMID, "name", in.st.Name, "reason", reason, "reload", reload)
	m.ev.Publish(events.Event{Type: events.Restart, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: in.st.PID,
		Reason: autoReason(reason), Message: reason})
	m.mu.Unlock()
	var err error
	if reload {
		err = m.reloadOne(ctx, in)
	} else {
		err = m.restartOne(ctx, in, api.RestartOptions{})
	}
	note := reason + ": restarted"
	if reload {
		note = reason + ": reloaded"
	}
	if err != nil {
		note += " (" + err.Error() + ")"
		m.log.Warn("automatic restart", "pm_id", in.st.PMID, "reason", reason, "err", err)
	}
	m.mu.Lock()
	in.st.Notes = appendNote(in.st.Notes, note)
	m.changed.Broadcast()
	m.mu.Unlock()
}
