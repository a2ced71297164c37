package daemon

import (
	"time"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/robfig/cron/v3"
)

// cronJob is the cron_restart schedule of one app: a timer set for the next activation.
type cronJob struct {
	expr    string
	sched   cron.Schedule
	timer   *time.Timer // nil when the schedule has no next activation
	stopped bool        // guarded by m.mu, like the rest
}

// syncCron starts, replaces or stops a's cron_restart schedule: it runs while on is true and the
// app has an expression ("" and "0" disable it). The caller holds m.mu.
func (m *Manager) syncCron(a *app, on bool) {
	expr := a.spec.CronRestart
	if expr == "0" {
		expr = ""
	}
	if job := a.cron; job != nil && (!on || job.expr != expr) {
		job.stopped = true
		if job.timer != nil {
			job.timer.Stop()
		}
		a.cron = nil
		m.log.Debug("cron_restart removed", "app", a.spec.Name, "cron", job.expr)
	}
	if !on || expr == "" || a.cron != nil {
		return
	}
	sched, err := appspec.ParseCron(expr) // validated by Start already
	if err != nil || sched == nil {
		m.log.Warn("cron_restart not scheduled", "app", a.spec.Name, "err", err)
		return
	}
	job := &cronJob{expr: expr, sched: sched}
	a.cron = job
	m.scheduleCron(a, job, time.Now())
	m.log.Debug("cron_restart scheduled", "app", a.spec.Name, "cron", expr)
}

// scheduleCron sets job's timer for its first activation after `after`. The caller holds m.mu.
func (m *Manager) scheduleCron(a *app, job *cronJob, after time.Time) {
	next := job.sched.Next(after)
	if next.IsZero() {
		job.timer = nil // the schedule never fires again
		return
	}
	job.timer = time.AfterFunc(time.Until(next), func() { m.cronFire(a, job, next) })
}

// cronFire runs when job is due: it sets the next activation and restarts the app (reloading
// cluster and listen instances), unless the previous activation is still at work.
func (m *Manager) cronFire(a *app, job *cronJob, due time.Time) {
	m.mu.Lock()
	if job.stopped || a.cron != job || m.closed {
		m.mu.Unlock()
		return
	}
	// Never before due, even if the wall clock stepped back: no activation runs twice.
	after := time.Now()
	if after.Before(due) {
		after = due
	}
	m.scheduleCron(a, job, after)
	m.bg.Add(1)
	m.mu.Unlock()
	defer m.bg.Done()
	if busy := m.tryAutoRestart(a, "cron_restart "+job.expr); busy {
		m.log.Info("cron_restart skipped: the previous automatic restart is still running", "app", a.spec.Name)
	}
}
