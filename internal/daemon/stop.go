package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"golang.org/x/sys/unix"
)

// stopOne stops in's process (and a pending reload replacement) and waits until it is reaped
// and its process group is gone. The caller holds in's operation lock, not m.mu. When ctx ends
// first the stop goes on in the background (kill_timeout still applies).
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
	err = m.eachLocked(ctx, ins, func(in *instance) error {
		m.markUserStopped([]*instance{in})
		return m.stopOne(ctx, in)
	})
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
	return m.eachLocked(ctx, ins, func(in *instance) error { return m.stopOne(ctx, in) })
}

// requestStop records that r must stop and has askStop ask it, on a goroutine; the supervisor
// sends SIGKILL to the group after kill_timeout. The caller holds m.mu, which is why the asking
// is not done here: Worker.Disconnect takes the cluster primary's lock, and an IPC write may
// wait for the channel's writer, neither of which m.mu may wait for.
func (m *Manager) requestStop(r *run) {
	r.stopOnce.Do(func() {
		close(r.stopReq)
		m.bg.Go(func() { m.askStop(r) })
	})
}

// askStop asks r to stop, once it has been started: the "shutdown" message when
// shutdown_with_message is set and the process has an IPC channel, otherwise the kill signal to
// its whole process group.
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
	select {
	case <-r.done:
		return // nothing left to ask; supervise clears the group
	default:
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
	case r.worker != nil:
		if err := r.worker.Disconnect(); err != nil {
			m.log.Debug("disconnect worker", "pid", r.pid, "err", err)
		}
		if !sent {
			m.signalAfterDisconnect(r)
		}
	case !sent:
		m.signalGroup(r, r.killSignal)
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
		m.signalGroup(r, r.killSignal)
	}
}

// signalGroup sends sig to r's process group.
func (m *Manager) signalGroup(r *run, sig syscall.Signal) {
	if err := unix.Kill(-r.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		m.log.Warn("signal process group", "pgid", r.pid, "signal", unix.SignalName(sig), "err", err)
	}
}

// supervise waits for r to end, enforces kill_timeout once a stop was requested, makes sure no
// process of its group survives, and hands the exit to the state machine. A process that could
// not be started goes to startFailed instead.
func (m *Manager) supervise(r *run) {
	defer close(r.finished)
	<-r.forked
	if r.startErr != nil {
		m.mu.Lock()
		m.startFailed(r)
		m.mu.Unlock()
		return
	}
	select {
	case <-r.done:
	case <-r.stopReq:
		t := time.NewTimer(r.killTimeout)
		select {
		case <-r.done:
			t.Stop()
		case <-t.C:
			m.log.Info("kill_timeout passed; sending SIGKILL", "pid", r.pid, "kill_timeout", r.killTimeout)
			_ = unix.Kill(-r.pid, unix.SIGKILL)
			<-r.done
		}
	}
	m.clearGroup(r)
	if r.ch != nil {
		r.ch.Close()
	}
	m.mu.Lock()
	m.exited(r)
	m.mu.Unlock()
}

// clearGroup makes sure no process of r's group outlives its leader. After a stop request the
// rest of the group gets until kill_timeout to finish (it received the signal too); after an
// unrequested exit (a crash) the leftovers are killed at once. Zombies of the group are reaped
// when the daemon is their subreaper.
func (m *Manager) clearGroup(r *run) {
	pgid := r.pid
	select {
	case <-r.stopReq:
	default:
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
	deadline := time.Now().Add(r.killTimeout)
	hard := deadline.Add(2 * time.Second)
	killed := false
	for {
		reapGroup(pgid)
		if err := unix.Kill(-pgid, 0); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				m.log.Warn("check process group", "pgid", pgid, "err", err)
			}
			return
		}
		now := time.Now()
		if !killed && now.After(deadline) {
			_ = unix.Kill(-pgid, unix.SIGKILL)
			killed = true
		}
		if now.After(hard) {
			m.log.Warn("processes of the group survive SIGKILL", "pgid", pgid)
			return
		}
		// No event tells when the last member of a group is gone: poll, bounded by the deadline.
		time.Sleep(5 * time.Millisecond)
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
