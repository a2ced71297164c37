package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/procstat"
	"golang.org/x/sys/unix"
)

// stopOne stops in's process (and a pending reload replacement) and waits until it is reaped
// and its process group and tree are gone (clearTree). The caller holds in's operation lock, not
// m.mu. When ctx ends first the stop goes on in the background (kill_timeout still applies).
func (m *Manager) stopOne(ctx context.Context, in *instance) error {
	m.mu.Lock()
	var wait []*run
	switch in.st.Status {
	case StatusStopped:
	case StatusWaitingRestart, StatusErrored:
		in.cancelTimer()
		m.setStatus(in, StatusStopped)
		m.releaseIdle(in.app)
	default: // launching, online, stopping
		if in.next != nil {
			m.requestStop(in.next)
			wait = append(wait, in.next)
		}
		if r := in.run; r != nil {
			m.setStatus(in, StatusStopping)
			m.requestStop(r)
			wait = append(wait, r)
		} else {
			m.setStatus(in, StatusStopped)
		}
	}
	m.mu.Unlock()
	for _, r := range wait {
		select {
		case <-r.finished:
		case <-ctx.Done():
			return fmt.Errorf("stop %s (pm_id %d): %w", in.st.Name, in.st.PMID, ctx.Err())
		}
	}
	return nil
}

// stopAll stops instances in parallel; the caller holds their operation locks.
func (m *Manager) stopAll(ctx context.Context, ins []*instance) error {
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.stopOne(ctx, in)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// eachLocked runs f for every instance in parallel, each under its operation lock.
func (m *Manager) eachLocked(ctx context.Context, ins []*instance, f func(*instance) error) error {
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.lock(ctx); err != nil {
				errs[i] = err
				return
			}
			defer in.unlock()
			errs[i] = f(in)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops the targeted instances gracefully and waits until their processes are gone.
func (m *Manager) Stop(ctx context.Context, targets []string) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	// Stopped by the user: cron_restart and watch leave the instances alone (and stop when no
	// instance of the app is left running) until they are started again. The flag is set again
	// under the operation lock, after an automatic restart in progress has launched them.
	m.markUserStopped(ins)
	m.userAction("stop", ins)
	for _, wave := range m.stopWaves(ins) { // dependents first (depends_on, order.go)
		if err = m.eachLocked(ctx, wave, func(in *instance) error {
			m.markUserStopped([]*instance{in})
			return m.stopOne(ctx, in)
		}); err != nil {
			break
		}
	}
	if err == nil {
		err = m.waitReleased(ctx, ins)
	}
	return m.list(ins), err
}

// markUserStopped flags instances as stopped by the user and updates their apps' automation.
func (m *Manager) markUserStopped(ins []*instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	apps := map[*app]bool{}
	for _, in := range ins {
		in.userStopped = true
		apps[in.app] = true
	}
	for a := range apps {
		m.syncAutomation(a)
	}
}

// Delete stops the targeted instances and forgets them. An app whose last instance goes
// releases its sockets; pm_ids start from 0 again once no instance is left.
func (m *Manager) Delete(ctx context.Context, targets []string) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	m.userAction("delete", ins)
	err = m.eachLocked(ctx, ins, func(in *instance) error { return m.deleteOne(ctx, in) })
	if err == nil {
		err = m.waitReleased(ctx, ins)
	}
	return m.list(ins), err // deleted instances as they were last: stopped
}

// deleteOne stops in and forgets it (Delete, Scale down). The caller holds in's operation lock,
// not m.mu.
func (m *Manager) deleteOne(ctx context.Context, in *instance) error {
	if err := m.stopOne(ctx, in); err != nil {
		return err
	}
	m.mu.Lock()
	m.remove(in)
	m.mu.Unlock()
	return nil
}

// Shutdown stops every instance gracefully and in parallel, and keeps them from restarting.
// Afterwards the Manager refuses to start processes (ErrShuttingDown).
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.shuttingDown = true
	ins := m.sortedProcs()
	m.mu.Unlock()
	var errs []error
	for _, wave := range m.stopWaves(ins) { // dependents first (depends_on, order.go)
		errs = append(errs, m.eachLocked(ctx, wave, func(in *instance) error { return m.stopOne(ctx, in) }))
	}
	return errors.Join(errs...)
}

// requestStop records that r must stop and has askStop ask it, on a goroutine; the supervisor
// sends SIGKILL to the group and the rest of the tree after kill_timeout. The caller holds m.mu,
// which is why the asking is not done here: Worker.Disconnect takes the cluster primary's lock,
// and an IPC write may wait for the channel's writer, neither of which m.mu may wait for.
func (m *Manager) requestStop(r *run) {
	r.stopOnce.Do(func() {
		r.stopAt = time.Now()
		close(r.stopReq)
		m.bg.Go(func() { m.askStop(r) })
		m.startSupervise(r)
	})
}

// askStop asks r to stop, once it has been started: the "shutdown" message when
// shutdown_with_message is set and the process has an IPC channel, otherwise the kill signal to
// its whole process group and every other process of its tree (stopSignal).
//
// A cluster worker is first disconnected (Node's worker.disconnect(): the primary routes it no
// more connections, and the worker closes its servers once their requests are done, then its
// channel); the kill signal follows when the channel has closed, or after half of kill_timeout.
// This is what makes a reload lose no request even for apps without a signal handler.
func (m *Manager) askStop(r *run) {
	<-r.forked
	if r.startErr != nil {
		return
	}
	sent := false
	if r.shutdownWithMessage {
		if err := r.send("shutdown"); err == nil {
			sent = true
		} else {
			m.log.Debug("shutdown message not sent; using the kill signal", "pid", r.pid, "err", err)
		}
	}
	switch {
	case r.worker != nil && r.drain:
		m.askStopDrained(r, sent)
	case r.worker != nil:
		if err := r.worker.Disconnect(); err != nil {
			m.log.Debug("disconnect worker", "pid", r.pid, "err", err)
		}
		if !sent {
			m.signalAfterDisconnect(r)
		}
	case !sent:
		m.stopSignal(r)
	}
}

// signalAfterDisconnect sends the kill signal to a disconnected worker once its channel has
// closed, or after half of kill_timeout, unless it has exited by then.
func (m *Manager) signalAfterDisconnect(r *run) {
	t := time.NewTimer(r.killTimeout / 2)
	defer t.Stop()
	select {
	case <-r.done:
		return
	case <-r.sig.disconnected:
	case <-t.C:
	}
	select {
	case <-r.done:
	default:
		m.stopSignal(r)
	}
}

// stopSignal sends r's kill signal, once, to its process group and to every process of its tree
// outside the group (see tree): PM2 ends an app's whole process tree, and a process that called
// setsid() or setpgid() no longer gets what is sent to the group.
func (m *Manager) stopSignal(r *run) {
	t := m.kids.treeOf(r)
	if t == nil {
		m.signalGroup(r, r.killSignal)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m.stopSignalLocked(t)
}

// stopSignalLocked is stopSignal with t.mu held; it does nothing once the signal was sent.
func (m *Manager) stopSignalLocked(t *tree) {
	if t.stopSig != 0 {
		return
	}
	t.stopSig = t.r.killSignal
	m.signalGroup(t.r, t.stopSig)
	m.signalMembers(t, m.members(t))
}

// signalMembers sends the stop signal, once stopSignal has sent it to the group, to the processes
// of ms outside the group that have not had it yet. The caller holds t.mu.
func (m *Manager) signalMembers(t *tree, ms []procstat.Stat) {
	if t.stopSig == 0 {
		return
	}
	for _, st := range ms {
		k := keyOf(st)
		if st.PGRP == t.r.pid || t.signalled[k] {
			continue
		}
		t.signalled[k] = true
		if _, err := procstat.Signal(st.PID, st.Start, t.stopSig); err != nil {
			m.log.Warn("signal descendant", "pid", st.PID, "app_pid", t.r.pid, "signal", unix.SignalName(t.stopSig), "err", err)
		}
	}
}

// killTree sends SIGKILL to r's process group and to ms.
func (m *Manager) killTree(r *run, ms []procstat.Stat) {
	_ = unix.Kill(-r.pid, unix.SIGKILL)
	for _, st := range ms {
		if _, err := procstat.Signal(st.PID, st.Start, unix.SIGKILL); err != nil {
			m.log.Warn("kill descendant", "pid", st.PID, "app_pid", r.pid, "err", err)
		}
	}
}

// signalGroup sends sig to r's process group.
func (m *Manager) signalGroup(r *run, sig syscall.Signal) {
	if err := unix.Kill(-r.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		m.log.Warn("signal process group", "pgid", r.pid, "signal", unix.SignalName(sig), "err", err)
	}
}

// treePoll is how often the tree of a process that was asked to stop is walked while the
// process runs: descendants seen are remembered when the process's exit re-parents them, and
// those started since the stop signal get it too.
const treePoll = 100 * time.Millisecond

// startSupervise starts r's supervise goroutine, once: spawn leaves it to the first of r.done
// closing (its closers call this right after) and a stop request (requestStop), so that a
// running process holds no goroutine for it (issue 13: with 100 processes, 100 parked stacks).
// What supervise then does is what it did when it had waited from the start: r.forked is
// closed before r.done, and a stop request is seen in the same select. The caller holds m.mu or
// runs on a goroutine m.bg counts.
func (m *Manager) startSupervise(r *run) {
	r.superviseOnce.Do(func() { m.bg.Go(func() { m.supervise(r) }) })
}

// supervise waits for r to end, enforces kill_timeout once a stop was requested, makes sure no
// process of its tree survives (clearTree), and hands the exit to the state machine. A process
// that could not be started goes to startFailed instead.
func (m *Manager) supervise(r *run) {
	defer close(r.finished)
	<-r.forked
	if r.startErr != nil {
		m.mu.Lock()
		m.startFailed(r)
		m.mu.Unlock()
		return
	}
	defer m.kids.dropTree(r)
	t := m.kids.treeOf(r)
	var deadline time.Time // after a crash (no stop requested), what is left of the tree is killed at once
	select {
	case <-r.done:
		deadline = time.Now()
		select {
		case <-r.stopReq:
			deadline = r.stopAt.Add(r.killTimeout) // kill_timeout counts from the request
		default:
		}
	case <-r.stopReq:
		deadline = r.stopAt.Add(r.killTimeout)
		kill := time.NewTimer(time.Until(deadline))
		poll := time.NewTicker(treePoll)
	wait:
		for {
			select {
			case <-r.done:
				break wait
			case <-poll.C:
				m.trackTree(t)
			case <-kill.C:
				m.log.Info("kill_timeout passed; sending SIGKILL", "pid", r.pid, "kill_timeout", r.killTimeout)
				m.killTree(r, m.trackTree(t))
				<-r.done
				break wait
			}
		}
		kill.Stop()
		poll.Stop()
	}
	m.clearTree(r, t, deadline)
	if r.ch != nil {
		r.ch.Close()
	}
	m.mu.Lock()
	m.exited(r)
	m.mu.Unlock()
}

// trackTree walks t's tree, records it and passes the stop signal on to what has not had it
// yet (see signalMembers); it returns the tree's live processes. t may be nil.
func (m *Manager) trackTree(t *tree) []procstat.Stat {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ms := m.members(t)
	m.signalMembers(t, ms)
	return ms
}

// clearTree makes sure no process of r's tree outlives it: its process group and every other
// process of its tree (t, nil for a run without a record). After a stop request they get until
// deadline (kill_timeout after the request) to finish, and the kill signal if r left without
// having been sent it (a cluster worker that exited after its disconnect); after an unrequested
// exit (a crash) the deadline is now and they are killed at once. Zombies of the group are reaped
// when the daemon is their subreaper; re-parented zombies outside it are the orphan reaper's.
func (m *Manager) clearTree(r *run, t *tree, deadline time.Time) {
	pgid := r.pid
	if t != nil && time.Now().Before(deadline) {
		t.mu.Lock()
		m.stopSignalLocked(t)
		t.mu.Unlock()
	}
	hard := deadline.Add(2 * time.Second)
	killed, warned := false, false
	pause := 5 * time.Millisecond
	for {
		reapGroup(pgid)
		ms := m.trackTree(t)
		groupErr := unix.Kill(-pgid, 0)
		if groupErr != nil && !errors.Is(groupErr, unix.ESRCH) && !warned {
			m.log.Warn("check process group", "pgid", pgid, "err", groupErr)
			warned = true
		}
		if groupErr != nil && len(ms) == 0 {
			return
		}
		now := time.Now()
		if !killed && !now.Before(deadline) {
			m.killTree(r, ms)
			killed = true
		}
		if now.After(hard) {
			m.log.Warn("processes of the app survive SIGKILL", "pgid", pgid, "others", len(ms))
			return
		}
		// No event tells when the last process of a group or tree is gone: poll, bounded by the
		// deadline, less often as it takes longer.
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// reapGroup collects exited members of process group pgid that were re-parented to this
// process (as child subreaper). Without subreaper status there are none and wait4 fails at once.
func reapGroup(pgid int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
	}
}
