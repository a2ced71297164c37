package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/events"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// exited applies the end of r to its instance. The caller holds m.mu.
func (m *Manager) exited(r *run) {
	in := r.in
	switch {
	case in.deleted:
		return
	case r == in.next:
		return // a reload's replacement: the reload handles it
	case r != in.run:
		return // a retired process (reload) or a stale one
	}
	in.run = nil
	in.st.PID, in.st.PGID = 0, 0
	in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = -1, -1, -1
	in.cpu, in.mem = 0, 0
	in.st.ExitCode = r.exitCode
	in.st.ExitSignal = ""
	if r.exitSig != 0 {
		in.st.ExitCode = 128 + int(r.exitSig)
		in.st.ExitSignal = unix.SignalName(r.exitSig)
	}
	if err := os.Remove(in.st.PidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("remove pid file", "path", in.st.PidFile, "err", err)
	}
	ev := events.Event{Type: events.Exit, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: r.pid,
		Code: events.ID(in.st.ExitCode), Signal: in.st.ExitSignal, Uptime: time.Since(r.startedAt).Milliseconds(),
		Reason: exitReason(in)}
	if tail := in.errTail.take(); ev.Reason != "stopped" {
		ev.Stderr = tail
	}
	m.ev.Publish(ev)
	switch {
	case in.st.Status == StatusStopping:
		m.setStatus(in, StatusStopped)
	case in.next != nil:
		m.setStatus(in, StatusLaunching) // the reload's replacement takes over when ready
	default:
		m.restartPolicy(in, r)
	}
	m.log.Info("process exited", "pm_id", in.st.PMID, "name", in.st.Name, "pid", r.pid,
		"exit_code", in.st.ExitCode, "signal", in.st.ExitSignal, "uptime", time.Since(r.startedAt).Round(time.Millisecond),
		"status", string(in.st.Status))
	m.releaseIdle(in.app)
}

// startFailed applies a process that could not be started (a cluster worker whose fork failed,
// see forkWorker) to its instance: errored with the error as a note, or stopped when a stop was
// asked meanwhile. A reload's replacement is left to reloadOne. The caller holds m.mu.
func (m *Manager) startFailed(r *run) {
	in := r.in
	if in.deleted || r != in.run {
		return
	}
	in.run = nil
	in.st.PID, in.st.PGID = 0, 0
	in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = -1, -1, -1
	if in.st.Status == StatusStopping {
		m.setStatus(in, StatusStopped)
	} else if transientSpawn(r.startErr) && !m.shuttingDown {
		m.retrySpawn(in, r.startErr) // publishes its own spawn_failed event
		m.releaseIdle(in.app)
		return
	} else {
		in.spawnRetries = 0
		in.startErr = r.startErr
		in.st.Notes = appendNote(in.st.Notes, r.startErr.Error())
		m.setStatus(in, StatusErrored)
	}
	m.ev.Publish(events.Event{Type: events.SpawnFailed, App: in.st.Name, PMID: events.ID(in.st.PMID),
		Message: r.startErr.Error()})
	m.log.Warn("process could not be started", "pm_id", in.st.PMID, "name", in.st.Name, "err", r.startErr)
	m.releaseIdle(in.app)
}

// addrInUseNote is the note of an instance that keeps exiting right after printing EADDRINUSE: the
// usual cause is several fork-mode instances of one app listening on the same port.
const addrInUseNote = "exits with EADDRINUSE (its port is taken, often by another instance of the app): use cluster mode (-i N with a Node, Bun or Deno script) or --listen to share one port"

// isAddrInUse reports whether an output line says a listen failed with EADDRINUSE (Node, Bun and Deno
// print the code; Go, Python and others the strerror text).
func isAddrInUse(line []byte) bool {
	return bytes.Contains(line, []byte("EADDRINUSE")) || bytes.Contains(line, []byte("ddress already in use"))
}

// Restart policy constants (PM2's).
const (
	expBackoffMax   = 15 * time.Second // cap of exp_backoff_restart_delay
	expBackoffReset = 30 * time.Second // uptime after which the backoff starts over
	expBackoffRatio = 1.5
)

// restartPolicy decides what happens after an unrequested exit: stopped (autorestart off, a
// stop_exit_code, the daemon shutting down), errored (max_restarts consecutive unstable
// restarts) or waiting restart (then launching after restart_delay or the backoff delay).
// The caller holds m.mu.
func (m *Manager) restartPolicy(in *instance, r *run) {
	spec := in.app.spec
	if m.shuttingDown || !spec.AutorestartOn() {
		m.setStatus(in, StatusStopped)
		return
	}
	if r.exitSig == 0 {
		for _, c := range spec.StopExitCodes {
			if c == r.exitCode {
				m.setStatus(in, StatusStopped)
				return
			}
		}
	}
	uptime := time.Since(r.startedAt)
	if uptime < ms(spec.MinUptime) {
		in.st.UnstableRestarts++
		if in.addrInUse.Load() {
			in.st.Notes = appendNote(slices.DeleteFunc(in.st.Notes, func(n string) bool { return n == addrInUseNote }), addrInUseNote)
		}
	} else {
		in.st.UnstableRestarts = 0
		in.addrInUse.Store(false)
	}
	if in.st.UnstableRestarts >= spec.MaxRestarts {
		in.st.Notes = appendNote(in.st.Notes, fmt.Sprintf("errored: %d consecutive restarts within min_uptime (%dms) of their start (max_restarts %d)",
			in.st.UnstableRestarts, spec.MinUptime, spec.MaxRestarts))
		m.setStatus(in, StatusErrored)
		return
	}
	delay := ms(spec.RestartDelay)
	if spec.ExpBackoffRestartDelay > 0 {
		prev := ms(in.st.PrevRestartDelay)
		if prev == 0 || uptime >= expBackoffReset {
			delay = ms(spec.ExpBackoffRestartDelay)
		} else {
			delay = min(time.Duration(float64(prev)*expBackoffRatio), expBackoffMax)
		}
		in.st.PrevRestartDelay = delay.Milliseconds()
	}
	m.setStatus(in, StatusWaitingRestart)
	m.ev.Publish(events.Event{Type: events.Restart, App: in.st.Name, PMID: events.ID(in.st.PMID), Reason: "crash",
		Message: fmt.Sprintf("restart in %s", delay)})
	if delay <= 0 {
		// No delay (PM2's default: restart at once): the new process is started here, on the
		// goroutine that handled the exit, rather than by a timer's goroutine that would first have
		// to be scheduled and take m.mu again (bench/crash.sh: crash -> serving).
		m.relaunch(in)
		return
	}
	in.timerGen++
	gen := in.timerGen
	in.timer = time.AfterFunc(delay, func() { m.restartDue(in, gen) })
}

// restartDue relaunches an instance whose restart delay is over, unless something else
// happened to it meanwhile.
func (m *Manager) restartDue(in *instance, gen int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.deleted || in.timerGen != gen || in.st.Status != StatusWaitingRestart || m.shuttingDown {
		return
	}
	in.timer = nil
	m.relaunch(in)
}

// relaunch starts an instance in waiting restart again, as a restart (restart_time+1). The caller
// holds m.mu.
func (m *Manager) relaunch(in *instance) {
	in.st.Restarts++
	if err := m.launch(in); err != nil {
		m.log.Warn("restart failed", "pm_id", in.st.PMID, "name", in.st.Name, "err", err)
	}
}

// cancelTimer stops a pending restart. The caller holds m.mu.
func (in *instance) cancelTimer() {
	in.timerGen++
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
}

// launch starts the instance's process and moves it to launching, or to errored when the
// process cannot be started. The caller holds m.mu.
func (m *Manager) launch(in *instance) error {
	in.cancelTimer()
	in.startErr = nil
	if !m.setStatus(in, StatusLaunching) {
		return fmt.Errorf("pm_id %d: cannot launch from status %q", in.st.PMID, in.st.Status)
	}
	if in.userStopped {
		in.userStopped = false
		m.syncAutomation(in.app)
	}
	r, err := m.spawn(in, false)
	if err != nil && transientSpawn(err) && !m.shuttingDown {
		m.retrySpawn(in, err) // supervision goes on: the instance is tried again
		return nil
	}
	if err != nil {
		in.spawnRetries = 0
		m.ev.Publish(events.Event{Type: events.SpawnFailed, App: in.st.Name, PMID: events.ID(in.st.PMID), Message: err.Error()})
		in.st.Notes = appendNote(in.st.Notes, err.Error())
		m.setStatus(in, StatusErrored)
		m.releaseIdle(in.app)
		return err
	}
	if r.pid != 0 { // a cluster worker is forked later: see forkWorker
		in.spawnRetries = 0
	}
	m.adopt(in, r)
	return nil
}

// adopt makes r the instance's current process. The caller holds m.mu.
func (m *Manager) adopt(in *instance, r *run) {
	in.run = r
	in.st.PID, in.st.PGID = r.pid, r.pid
	in.st.StartedAt = r.startedAt
	in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = r.stdoutFD, r.stderrFD, r.ipcFD
	in.cpu, in.mem = 0, 0
	m.changed.Broadcast()
}

// releaseIdle closes the cluster primary of an app none of whose instances is running any more,
// so that its sockets do not hold connections nobody will serve. The caller holds m.mu.
func (m *Manager) releaseIdle(a *app) {
	if a.primary == nil {
		return
	}
	for _, in := range a.instances {
		if in.st.Status.running() || in.next != nil || in.run != nil {
			return
		}
	}
	m.retirePrimary(a)
}

// retirePrimary detaches a's cluster primary and closes it on a goroutine: Primary.Close takes
// the primary's lock, which m.mu must not wait for. a.released is replaced by a channel closed
// once this and every earlier retired primary of a have closed; the app's next worker is forked
// only after that (it may bind the same addresses), and Stop and Delete wait for it, without
// m.mu, before they return. The caller holds m.mu.
func (m *Manager) retirePrimary(a *app) {
	p := a.primary
	if p == nil {
		return
	}
	a.primary = nil
	m.dropClusterListeners(a)
	prev, done := a.released, make(chan struct{})
	a.released = done
	name := a.spec.Name
	m.bg.Go(func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		if err := p.Close(); err != nil {
			m.log.Warn("close cluster primary", "app", name, "err", err)
		}
	})
}

// waitReleased waits, without m.mu, until the cluster primaries retired so far by the apps of
// ins have closed their sockets, or ctx ends.
func (m *Manager) waitReleased(ctx context.Context, ins []*instance) error {
	m.mu.Lock()
	var chans []<-chan struct{}
	seen := map[*app]bool{}
	for _, in := range ins {
		if a := in.app; !seen[a] && a.released != nil {
			seen[a] = true
			chans = append(chans, a.released)
		}
	}
	m.mu.Unlock()
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the cluster primary to close its sockets: %w", ctx.Err())
		}
	}
	return nil
}

// exitReason says, for the event feed, why a process that just ended ended: asked to stop, replaced
// by a reload, or on its own (a crash, or an exit the app chose). The caller holds m.mu.
func exitReason(in *instance) string {
	switch {
	case in.st.Status == StatusStopping:
		return "stopped"
	case in.next != nil:
		return "reload"
	default:
		return "unexpected"
	}
}
