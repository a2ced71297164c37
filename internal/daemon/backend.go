package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"golang.org/x/sys/unix"
)

// list describes instances for the API.
func (m *Manager) list(ins []*instance) []api.Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procList(ins)
}

// List returns every instance, ordered by pm_id. The balancer's waiting count is the sampler's
// last reading (refreshWaiting): List never waits for a cluster primary's lock.
func (m *Manager) List(ctx context.Context) ([]api.Proc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ins := m.sortedProcs()
	procs := m.procList(ins)
	for i, in := range ins {
		if procs[i].Balancer != nil {
			procs[i].Balancer.Waiting = in.app.waiting
		}
	}
	return procs, nil
}

// parseSignal accepts "SIGUSR2", "USR2", "usr2" or a number.
func parseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n > 0 && n < 65 {
			return syscall.Signal(n), nil
		}
		return 0, fmt.Errorf("signal %q: out of range", s)
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	if sig := unix.SignalNum(t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown signal name", s)
}

// Signal sends sig to the process group of every targeted instance that has a process.
func (m *Manager) Signal(ctx context.Context, sig string, targets []string) ([]api.Proc, error) {
	s, err := parseSignal(sig)
	if err != nil {
		return nil, api.BadField("signal", err)
	}
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	sent := 0
	for _, in := range ins {
		if in.run == nil || in.run.pid == 0 { // none, or a cluster worker not forked yet
			continue
		}
		if err := unix.Kill(-in.run.pid, s); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %s to %s (pm_id %d): %w", unix.SignalName(s), in.st.Name, in.st.PMID, err))
			continue
		}
		sent++
	}
	if sent == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("signal %s: no running process among %s", unix.SignalName(s), strings.Join(targets, " ")))
	}
	return m.procList(ins), errors.Join(errs...)
}

// Reset zeroes the restart counters of the targeted instances (and restarts created_at).
func (m *Manager) Reset(ctx context.Context, targets []string) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range ins {
		in.st.Restarts, in.st.UnstableRestarts, in.st.PrevRestartDelay = 0, 0, 0
		in.st.CreatedAt = time.Now()
	}
	m.dirty()
	return m.procList(ins), nil
}

// Apps returns the definition of every app, in creation order, with Instances set to the
// current number of instances: what `save` writes.
func (m *Manager) Apps(ctx context.Context) ([]appspec.App, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]appspec.App, 0, len(m.appOrder))
	for _, name := range m.appOrder {
		a := m.apps[name]
		spec := a.spec
		spec.Env = maps.Clone(a.spec.Env)
		spec.ShellEnv = maps.Clone(a.spec.ShellEnv)
		spec.Instances = len(a.instances)
		out = append(out, spec)
	}
	return out, nil
}
