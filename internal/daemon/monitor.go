package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/procstat"
)

// sample refreshes CPU and memory of online instances every interval until Close, and applies
// max_memory_restart. Each tick reads one small /proc file per process of an online instance's
// tree (see procstat), outside the Manager's lock; nothing is read when nothing is online.
func (m *Manager) sample(interval time.Duration) {
	defer close(m.samplerDone)
	var s procstat.Sampler
	t := time.NewTicker(interval)
	defer t.Stop()
	type target struct {
		in  *instance
		r   *run
		pid int
	}
	var targets []target
	known := map[int]bool{}
	var settle *memSettler
	if m.cfg.TrimMemory {
		settle = newMemSettler()
	}
	for {
		select {
		case <-m.stopSampler:
			return
		case <-t.C:
		}
		now := time.Now()
		targets = targets[:0]
		m.mu.Lock()
		for _, in := range m.procs {
			if in.st.Status == StatusOnline && in.run != nil {
				targets = append(targets, target{in: in, r: in.run, pid: in.run.pid})
			}
		}
		m.mu.Unlock()

		seen := make(map[int]bool, len(targets))
		results := make([]procstat.Sample, len(targets))
		ok := make([]bool, len(targets))
		for i, tg := range targets {
			seen[tg.pid] = true
			smp, err := s.Sample(tg.pid)
			if err != nil {
				if !errors.Is(err, os.ErrProcessDone) {
					m.log.Debug("sample", "pid", tg.pid, "err", err)
				}
				continue
			}
			results[i], ok[i] = smp, true
		}
		for pid := range known {
			if !seen[pid] {
				s.Forget(pid)
				delete(known, pid)
			}
		}
		m.mu.Lock()
		for i, tg := range targets {
			known[tg.pid] = true
			if !ok[i] || tg.in.run != tg.r {
				continue
			}
			tg.in.cpu, tg.in.mem = results[i].CPU, results[i].Memory
			tg.in.hist.add(now, results[i].CPU, results[i].Memory)
			limit := tg.in.app.spec.MaxMemoryRestart
			if limit > 0 && int64(results[i].Memory) > limit && !tg.in.memRestart && !tg.in.deleted {
				tg.in.memRestart = true
				in, used := tg.in, results[i].Memory
				m.bg.Go(func() { m.memoryRestart(in, used, limit) })
			}
		}
		if len(targets) > 0 {
			m.changed.Broadcast()
		}
		m.refreshWaitingLocked()
		m.mu.Unlock()
		if settle != nil {
			released, trimmed, err := settle.tick(time.Now())
			if err != nil {
				m.log.Warn("trim pages", "err", err)
			} else if released || trimmed {
				m.log.Debug("memory settled", "released_heap", released, "trimmed_pages", trimmed)
			}
		}
	}
}

// memoryRestart replaces an instance that uses more memory than max_memory_restart: a reload
// for cluster and listen apps (no downtime), a restart otherwise, as PM2 does.
func (m *Manager) memoryRestart(in *instance, used uint64, limit int64) {
	defer func() {
		m.mu.Lock()
		in.memRestart = false
		m.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := in.lock(ctx); err != nil {
		return
	}
	defer in.unlock()
	m.mu.Lock()
	if in.deleted || in.st.Status != StatusOnline || m.shuttingDown {
		m.mu.Unlock()
		return
	}
	note := fmt.Sprintf("memory %d bytes over max_memory_restart %d: restarted", used, limit)
	m.log.Info("max_memory_restart", "pm_id", in.st.PMID, "name", in.st.Name, "memory", used, "limit", limit)
	mode := in.app.res.mode
	m.ev.Publish(events.Event{Type: events.Restart, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: in.st.PID,
		Reason: "memory", Message: fmt.Sprintf("%s over max_memory_restart %s", mib(used), mib(uint64(limit)))})
	m.mu.Unlock()
	var err error
	if mode == modeFork {
		err = m.restartOne(ctx, in, api.RestartOptions{})
	} else {
		err = m.reloadOne(ctx, in)
	}
	m.mu.Lock()
	if err != nil {
		note += " (" + err.Error() + ")"
	}
	in.st.Notes = appendNote(in.st.Notes, note)
	m.mu.Unlock()
}

// refreshWaitingLocked starts a read of each cluster primary's waiting connections (Primary.Waiting
// takes the primary's lock, so it runs on its own goroutine, one per app at a time) and records
// it in the app for List. The caller holds m.mu.
func (m *Manager) refreshWaitingLocked() {
	if m.closed {
		return
	}
	for _, a := range m.apps {
		p := a.primary
		if p == nil {
			a.waiting = 0
			continue
		}
		if a.waitingBusy {
			continue
		}
		a.waitingBusy = true
		m.bg.Go(func() {
			n := p.Waiting()
			m.mu.Lock()
			a.waitingBusy = false
			if a.primary == p {
				a.waiting = n
			}
			m.mu.Unlock()
		})
	}
}
