package daemon

import (
	"fmt"
	"maps"
	"path/filepath"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/drain"
	"github.com/corralhq/corral/internal/events"
)

// The connection drain (internal/drain): a Node app started with it answers the requests on its
// open connections with Connection: close when asked to stop, instead of closing idle keep-alive
// connections under a client that is about to use them, and reports what it did on its IPC
// channel. Here: when an app gets it, the environment that loads it, the stop sequence of a
// cluster worker that has it, and the report.

// drainState holds the installed script (written once per daemon, lazily).
type drainState struct {
	once sync.Once
	path string
	err  error
}

var drainInstalls sync.Map // home -> *drainState

// drainScript returns the path of drain.js under the daemon's state dir, writing it on first use.
func (m *Manager) drainScript() (string, error) {
	v, _ := drainInstalls.LoadOrStore(m.cfg.Home, &drainState{})
	s := v.(*drainState)
	s.once.Do(func() { s.path, s.err = drain.Install(filepath.Join(m.cfg.Home, drain.Dir)) })
	return s.path, s.err
}

// drainOn reports whether instances of a get the drain: Node apps, unless drain is false, in
// cluster mode, with listen, or in fork mode with PORT in their environment (a server of their
// own). Not for apps run as another user: the script lives in the owner-only state dir.
func drainOn(a *app) bool {
	spec := a.spec
	if spec.Drain != nil && !*spec.Drain {
		return false
	}
	if !nodeInterpreter(a.res.interpreter) || a.res.cred != nil {
		return false
	}
	switch a.res.mode {
	case modeCluster, modeListen:
		return true
	}
	_, port := spec.RunEnv()["PORT"]
	return port || (spec.Drain != nil && *spec.Drain)
}

// drainTimeout is the app's drain_timeout, or three quarters of kill_timeout.
func drainTimeout(spec appspec.App) time.Duration {
	if spec.DrainTimeout > 0 {
		return ms(spec.DrainTimeout)
	}
	return drain.DefaultTimeout(ms(spec.KillTimeout))
}

// drainEnv returns env with the variables that load the drain, when a's instances get it (env
// itself otherwise). The caller holds m.mu.
func (m *Manager) drainEnv(a *app, env map[string]string) map[string]string {
	if !drainOn(a) {
		return env
	}
	path, err := m.drainScript()
	if err != nil {
		m.log.Warn("connection drain not loaded", "app", a.spec.Name, "err", err)
		return env
	}
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, drain.Env(path, env, drain.Config{
		Timeout: drainTimeout(a.spec), Idle: -1,
	}))
	return out
}

// drainEnvList is drainEnv for an exec.Cmd environment: the extra KEY=value pairs.
func (m *Manager) drainEnvList(a *app, env map[string]string) []string {
	if !drainOn(a) {
		return nil
	}
	full := m.drainEnv(a, env)
	var extra []string
	for _, k := range []string{"NODE_OPTIONS", "CORRAL_DRAIN"} {
		if v, ok := full[k]; ok {
			extra = append(extra, k+"="+v)
		}
	}
	return extra
}

// noteDrainMessage records a drain report among a process's IPC messages (the primary's event
// goroutine or a fork channel's reader: no m.mu). It reports whether raw was one.
func noteDrainMessage(sig *signals, raw []byte) bool {
	rep, ok := drain.ParseReport(raw)
	if ok {
		sig.markDrained(rep)
	}
	return ok
}

// watchDrain publishes r's drain report, if it sends one, and records it in the instance.
func (m *Manager) watchDrain(r *run) {
	<-r.forked
	if r.startErr != nil {
		return
	}
	sig := r.sig
	select {
	case <-sig.drainedCh():
	case <-r.done:
		// A process that exits right after its report (no handler of its own: the signal's default
		// action) may be reaped before the report is read.
		t := time.NewTimer(500 * time.Millisecond)
		defer t.Stop()
		select {
		case <-sig.drainedCh():
		case <-t.C:
			return
		}
	}
	rep := sig.drainReport()
	m.mu.Lock()
	defer m.mu.Unlock()
	in := r.in
	in.st.LastDrain = &api.DrainReport{Drained: rep.Drained, Cut: rep.Cut, Ms: rep.Ms, PID: r.pid, At: time.Now()}
	m.ev.Publish(events.Event{
		Type: events.Drain, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: r.pid,
		Message: fmt.Sprintf("%d connections drained, %d cut at the timeout, in %d ms", rep.Drained, rep.Cut, rep.Ms),
		Data:    map[string]int64{"drained": rep.Drained, "cut": rep.Cut, "ms": rep.Ms},
	})
	m.changed.Broadcast()
}

// drainSignals is the part of signals the drain uses (process.go holds the struct): the report is
// written once, before ch is closed, and read only after.
type drainSignals struct {
	chOnce sync.Once
	ch     chan struct{}
	once   sync.Once
	report drain.Report
}

func (s *signals) drainedCh() chan struct{} {
	s.d.chOnce.Do(func() { s.d.ch = make(chan struct{}) })
	return s.d.ch
}

func (s *signals) markDrained(rep drain.Report) {
	ch := s.drainedCh()
	s.d.once.Do(func() {
		s.d.report = rep
		close(ch)
	})
}

// drainReport returns the report; call it once drainedCh is closed.
func (s *signals) drainReport() drain.Report { return s.d.report }

// askStopDrained stops a cluster worker that has the drain: the stop request (the "shutdown"
// message, already sent when sent is set, or the kill signal) goes first, while the worker is
// still connected, so that its drain closes its servers (the primary routes it no more
// connections and gives back those in flight) and then runs the app's own handler; the worker is
// disconnected once it reports the drain done (or after drain_timeout and a margin), which ends a
// worker whose handler did not exit. Without a server the drain is not armed: the signal acts as
// it would without it.
func (m *Manager) askStopDrained(r *run, sent bool) {
	if !sent {
		m.stopSignal(r)
	}
	t := time.NewTimer(r.drainTimeout + 500*time.Millisecond)
	defer t.Stop()
	select {
	case <-r.done:
		return
	case <-r.sig.drainedCh():
	case <-t.C:
	}
	if err := r.worker.Disconnect(); err != nil {
		m.log.Debug("disconnect worker", "pid", r.pid, "err", err)
	}
}
