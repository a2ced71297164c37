package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// forkFallbackNote is the note Reload adds for apps that cannot be reloaded without downtime.
const forkFallbackNote = "fork mode without a shared socket: reload fell back to restart"

// Reload replaces the targeted instances one at a time without downtime: the replacement (same
// pm_id, restart_time+1) starts while the old process serves; once it is ready (see the package
// doc) the old one is stopped gracefully. A replacement that exits or is not ready in
// listen_timeout is killed, the old process keeps serving and Reload stops with an error naming
// the instance. Fork apps without sockets, and instances that are not online, are restarted
// instead (with a note for fork apps, in the notes returned and the instance's Notes). With
// opts.Overrides the apps are redefined and restarted (see restartWithOverrides).
func (m *Manager) Reload(ctx context.Context, targets []string, opts api.RestartOptions) ([]api.Proc, []string, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, nil, err
	}
	if err := m.refuseAfterShutdown(); err != nil {
		return nil, nil, err
	}
	m.userAction("reload", ins)
	if opts.Overrides != nil {
		return m.restartWithOverrides(ctx, ins, opts, "reload")
	}
	var notes []string
	noted := map[*app]bool{}
	undo := map[*app]*envUndo{} // a failed reload puts the environment back (health.go)
	for _, in := range ins {
		if err := in.lock(ctx); err != nil {
			return m.list(ins), notes, err
		}
		m.mu.Lock()
		a := in.app
		mode, status, deleted := a.res.mode, in.st.Status, in.deleted
		var prevEnv map[string]string
		if (opts.UpdateEnv || opts.AppEnv != nil) && !deleted {
			if undo[a] == nil {
				undo[a] = &envUndo{env: a.spec.Env, shell: a.spec.ShellEnv}
			}
			prevEnv = in.st.Env
			m.updateEnv(in, opts)
		}
		m.mu.Unlock()
		switch {
		case deleted:
			err = nil
		case mode == modeFork:
			if !noted[a] {
				notes = append(notes, fmt.Sprintf("%s: %s", a.spec.Name, forkFallbackNote))
			}
			noted[a] = true
			err = m.restartOne(ctx, in, api.RestartOptions{})
			if err == nil {
				m.mu.Lock()
				in.st.Notes = appendNote(in.st.Notes, forkFallbackNote)
				m.mu.Unlock()
			}
		case status != StatusOnline:
			err = m.restartOne(ctx, in, api.RestartOptions{})
		default:
			err = m.reloadOne(ctx, in)
			if err != nil && prevEnv != nil {
				m.undoEnv(in, undo[a], prevEnv)
			}
			if err == nil && undo[a] != nil {
				undo[a].kept = true
			}
		}
		in.unlock()
		if err != nil {
			return m.list(ins), notes, err
		}
	}
	err = m.waitStarted(ins)
	return m.list(ins), notes, err
}

// reloadSettle is how long a listen-mode replacement without wait_ready must stay up before it
// counts as ready (capped by listen_timeout).
const reloadSettle = 300 * time.Millisecond

// settled returns a channel closed once r has been running for d (never, if it exits first).
func settled(r *run, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		t := time.NewTimer(time.Until(r.startedAt.Add(d)))
		defer t.Stop()
		select {
		case <-t.C:
			close(ch)
		case <-r.done:
		}
	}()
	return ch
}

// reloadOne replaces in's online process. The caller holds in's operation lock.
func (m *Manager) reloadOne(ctx context.Context, in *instance) error {
	m.mu.Lock()
	switch {
	case m.shuttingDown:
		m.mu.Unlock()
		return ErrShuttingDown
	case in.deleted:
		m.mu.Unlock()
		return fmt.Errorf("reload %s (pm_id %d): the instance was deleted", in.st.Name, in.st.PMID)
	}
	r, err := m.spawn(in, true)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("reload %s: instance %d (pm_id %d): %w; the old process keeps serving",
			in.st.Name, in.st.Instance, in.st.PMID, err)
	}
	in.next = r
	oldPID := in.st.PID
	m.reloadStep(in, oldPID, "starting a replacement; pid %d keeps serving", oldPID)
	m.mu.Unlock()

	failure := awaitReady(ctx, r)
	if failure != "" {
		m.mu.Lock()
		m.requestStop(r)
		m.mu.Unlock()
		<-r.finished
		m.mu.Lock()
		defer m.mu.Unlock()
		in.next = nil
		keeps := fmt.Sprintf("the old process (pid %d) keeps serving", oldPID)
		if in.run == nil && !in.deleted && !m.shuttingDown {
			// The old process died meanwhile: nothing serves; start afresh.
			keeps = "the old process died meanwhile and is restarted"
			in.st.Restarts++
			_ = m.launch(in)
		}
		msg := fmt.Sprintf("reload %s: instance %d (pm_id %d): the replacement (pid %d) %s; %s",
			in.st.Name, in.st.Instance, in.st.PMID, r.pid, failure, keeps)
		m.reloadStep(in, r.pid, "failed: the replacement %s; %s", failure, keeps)
		in.st.Notes = appendNote(in.st.Notes, msg)
		return errors.New(msg)
	}

	m.mu.Lock()
	old := in.run
	in.next = nil
	m.adopt(in, r)
	m.writePidFile(in, r.pid)
	in.st.Restarts++
	in.st.CreatedAt = time.Now()
	if in.st.Status == StatusLaunching {
		m.setStatus(in, StatusOnline)
	}
	if old != nil {
		m.requestStop(old)
		m.reloadStep(in, r.pid, "replacement pid %d ready; stopping the old pid %d", r.pid, old.pid)
	}
	m.mu.Unlock()
	if old != nil {
		select {
		case <-old.finished:
		case <-ctx.Done():
			return fmt.Errorf("reload %s (pm_id %d): waiting for the old process: %w", in.st.Name, in.st.PMID, ctx.Err())
		}
	}
	m.mu.Lock()
	m.reloadStep(in, r.pid, "done: pid %d serves", r.pid)
	m.mu.Unlock()
	return nil
}

// awaitReady waits until the reload's replacement r is ready (see the package doc) and returns
// "", or says why it is given up: it could not be started, exited, was not ready within
// listen_timeout, or ctx ended.
func awaitReady(ctx context.Context, r *run) string {
	// A cluster worker is forked on a goroutine (forkWorker); what "ready" means is known after.
	fork := time.NewTimer(r.listenTimeout)
	defer fork.Stop()
	select {
	case <-r.forked:
	case <-fork.C:
		return fmt.Sprintf("was not started within listen_timeout %v", r.listenTimeout)
	case <-ctx.Done():
		return "was abandoned: " + ctx.Err().Error()
	}
	if r.startErr != nil {
		return r.exitDescription()
	}
	var ready <-chan struct{} = r.sig.ready
	what := `the "ready" message`
	limit := r.listenTimeout
	switch {
	case r.health != nil && r.health.ready != nil:
		ready, what, limit = r.health.ready, "readiness probe", r.health.limit
	case r.waitReady && r.worker == nil && r.ch == nil:
		// wait_ready without an IPC channel: nothing can say "ready"; like PM2, listen_timeout
		// makes it ready anyway — if it is still up by then.
		ready, what = settled(r, r.listenTimeout), fmt.Sprintf("up for listen_timeout %v (no IPC channel)", r.listenTimeout)
		limit = r.listenTimeout + time.Second
	case r.waitReady:
	case r.mode == modeCluster:
		ready, what = r.worker.Listening(), "listening"
	default:
		d := min(r.listenTimeout, reloadSettle)
		ready, what = settled(r, d), fmt.Sprintf("up for %v", d)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	failure := ""
	select {
	case <-ready:
		select {
		case <-r.done:
			failure = r.exitDescription() + " right after it was ready"
		default:
		}
	case <-r.done:
		failure = r.exitDescription() + " before it was ready (" + what + ")"
		if note := r.readinessNote(); note != "" {
			failure += ": " + note
		}
	case <-timer.C:
		failure = fmt.Sprintf("was not ready (%s) within listen_timeout %v", what, r.listenTimeout)
		if note := r.readinessNote(); note != "" {
			failure = fmt.Sprintf("was not ready within %v: %s", limit, note)
		}
	case <-ctx.Done():
		failure = "was abandoned: " + ctx.Err().Error()
	}
	return failure
}
