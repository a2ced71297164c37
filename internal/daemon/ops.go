package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"golang.org/x/sys/unix"
)

// ErrShuttingDown is returned by operations that would start processes after Shutdown.
var ErrShuttingDown = errors.New("daemon is shutting down")

// ErrAlreadyLaunched is wrapped by Start when the script of an app is already running under the
// same name and StartOptions.Force is not set.
var ErrAlreadyLaunched = errors.New("script already launched")

// newInstance adds an instance of a with the given NODE_APP_INSTANCE index and the next pm_id,
// with its log files open and no process yet (status ""). The caller holds m.mu.
func (m *Manager) newInstance(a *app, index int) (*instance, error) {
	id := m.nextID
	in := &instance{app: a, op: make(chan struct{}, 1)}
	in.st = InstanceState{
		PMID: id, Name: a.spec.Name, Namespace: a.spec.Namespace, Instance: index,
		CreatedAt: time.Now(), UniqueID: newUUID(),
		StdoutFD: -1, StderrFD: -1, IPCFD: -1,
	}
	in.st.Env = instanceEnv(a.spec, a.res, m.cfg.Home, id, index, in.st.UniqueID)
	in.st.OutLog, in.st.ErrLog, in.st.CombinedLog, in.st.PidFile = logPaths(m.cfg.Home, a.spec, id)
	if err := m.openInstanceLogs(in); err != nil {
		return nil, err
	}
	m.nextID++
	m.procs[id] = in
	a.instances = append(a.instances, in)
	return in, nil
}

// freeIndex returns the lowest NODE_APP_INSTANCE index not used by a's instances (PM2 reuses
// gaps). The caller holds m.mu.
func freeIndex(a *app) int {
	used := map[int]bool{}
	for _, in := range a.instances {
		used[in.st.Instance] = true
	}
	i := 0
	for used[i] {
		i++
	}
	return i
}

// startInstance launches a new instance, or leaves it stopped when autostart is off. The caller
// holds m.mu.
func (m *Manager) startInstance(in *instance) error {
	if !in.app.spec.AutostartOn() {
		in.userStopped = true // not started: cron_restart and watch wait for a start too
		m.setStatus(in, StatusStopped)
		return nil
	}
	return m.launch(in)
}

// Start starts apps. An app whose name exists is restarted (PM2's smart start): with its stored
// definition when only the name is given (Script empty or equal to the name), otherwise with the
// definition given — unless the same script is already running under that name, which is an
// error wrapping ErrAlreadyLaunched without opts.Force. Every app is resolved (script,
// interpreter, exec mode) before anything starts; a bad app starts nothing. The returned
// instances have left "launching" (or waited up to listen_timeout for it).
func (m *Manager) Start(ctx context.Context, apps []appspec.App, opts api.StartOptions) ([]api.Proc, error) {
	if len(apps) == 0 {
		return nil, errors.New("start: no app given")
	}
	type item struct {
		spec     appspec.App
		res      resolved
		nameOnly bool
	}
	m.mu.Lock()
	if m.shuttingDown {
		m.mu.Unlock()
		return nil, ErrShuttingDown
	}
	var items []item
	for _, a := range apps {
		if a.Name != "" && m.apps[a.Name] != nil && (strings.TrimSpace(a.Script) == "" || a.Script == a.Name) {
			items = append(items, item{spec: a, nameOnly: true})
			continue
		}
		items = append(items, item{spec: a})
	}
	m.mu.Unlock()

	for i := range items {
		if items[i].nameOnly {
			continue
		}
		spec, res, err := resolveApp(items[i].spec, m.cfg.Self)
		if err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
		items[i].spec, items[i].res = spec, res
	}
	m.mu.Lock()
	for _, it := range items {
		a := m.apps[it.spec.Name]
		if it.nameOnly || a == nil || opts.Force {
			continue
		}
		if a.res.execPath == it.res.execPath && slices.Equal(a.spec.Args, it.spec.Args) && appRunning(a) {
			m.mu.Unlock()
			return nil, fmt.Errorf("start %s: %w: %s is running as %q (use --force to restart it with the new options)",
				it.spec.Script, ErrAlreadyLaunched, a.res.execPath, a.spec.Name)
		}
	}
	m.mu.Unlock()

	var started []*instance
	var errs []error
	for _, it := range items {
		m.mu.Lock()
		a := m.apps[it.spec.Name]
		m.mu.Unlock()
		var ins []*instance
		var err error
		if a == nil && it.nameOnly { // deleted meanwhile: start it as a script after all
			it.spec, it.res, err = resolveApp(it.spec, m.cfg.Self)
			if err != nil {
				errs = append(errs, fmt.Errorf("start: %w", err))
				continue
			}
			it.nameOnly = false
		}
		switch {
		case a != nil && it.nameOnly:
			ins, err = m.restartAll(ctx, appInstances(m, a), api.RestartOptions{})
		case a != nil:
			ins, err = m.redefine(ctx, a, it.spec, it.res)
		default:
			ins, err = m.create(it.spec, it.res)
		}
		started = append(started, ins...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	m.waitStarted(started)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procList(started), errors.Join(errs...)
}

// appInstances returns a copy of a's instances, ordered by pm_id.
func appInstances(m *Manager, a *app) []*instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	ins := slices.Clone(a.instances)
	sort.Slice(ins, func(i, j int) bool { return ins[i].st.PMID < ins[j].st.PMID })
	return ins
}

// appRunning reports whether any instance of a has or expects a process. The caller holds m.mu.
func appRunning(a *app) bool {
	for _, in := range a.instances {
		if in.st.Status.running() {
			return true
		}
	}
	return false
}

// create registers a new app and starts its instances.
func (m *Manager) create(spec appspec.App, res resolved) ([]*instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shuttingDown {
		return nil, ErrShuttingDown
	}
	if m.apps[spec.Name] != nil {
		return nil, fmt.Errorf("start %s: an app of that name was started meanwhile", spec.Name)
	}
	a := &app{spec: spec, res: res, workers: &workerSignals{}, notes: res.notes}
	if res.mode == modeListen {
		files, err := activation.Listen(spec.Listen)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.Name, err)
		}
		a.listeners = files
	}
	m.apps[spec.Name] = a
	m.appOrder = append(m.appOrder, spec.Name)
	var ins []*instance
	var errs []error
	for i := 0; i < spec.Instances; i++ {
		in, err := m.newInstance(a, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("start %s: %w", spec.Name, err))
			break
		}
		ins = append(ins, in)
		if err := m.startInstance(in); err != nil {
			errs = append(errs, err)
		}
	}
	if len(a.instances) == 0 {
		m.dropApp(a)
	} else {
		m.syncAutomation(a)
	}
	return ins, errors.Join(errs...)
}

// redefine replaces the definition of a running app: every instance is stopped, the app gets
// the new definition (and instance count), and the instances start again with restart_time+1.
func (m *Manager) redefine(ctx context.Context, a *app, spec appspec.App, res resolved) ([]*instance, error) {
	old := appInstances(m, a)
	for _, in := range old {
		if err := in.lock(ctx); err != nil {
			return nil, err
		}
		defer in.unlock()
	}
	if err := m.stopAll(ctx, old); err != nil {
		return nil, fmt.Errorf("restart %s: %w", spec.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shuttingDown {
		return nil, ErrShuttingDown
	}
	if a.primary != nil {
		a.primary.Close()
		a.primary = nil
	}
	if !slices.Equal(a.spec.Listen, spec.Listen) || res.mode != modeListen {
		m.releaseApp(a)
		if res.mode == modeListen {
			files, err := activation.Listen(spec.Listen)
			if err != nil {
				return nil, fmt.Errorf("restart %s: %w", spec.Name, err)
			}
			a.listeners = files
		}
	}
	a.spec, a.res, a.notes = spec, res, res.notes
	a.workers = &workerSignals{}

	// Keep the lowest instances, drop the rest, add what is missing.
	live := slices.DeleteFunc(slices.Clone(a.instances), func(in *instance) bool { return in.deleted })
	sort.Slice(live, func(i, j int) bool { return live[i].st.Instance < live[j].st.Instance })
	for len(live) > spec.Instances {
		m.remove(live[len(live)-1])
		live = live[:len(live)-1]
	}
	var ins []*instance
	var errs []error
	for _, in := range live {
		m.closeInstanceLogs(in)
		in.st.Name, in.st.Namespace = spec.Name, spec.Namespace
		in.st.Env = instanceEnv(spec, res, m.cfg.Home, in.st.PMID, in.st.Instance, in.st.UniqueID)
		in.st.OutLog, in.st.ErrLog, in.st.CombinedLog, in.st.PidFile = logPaths(m.cfg.Home, spec, in.st.PMID)
		if err := m.openInstanceLogs(in); err != nil {
			errs = append(errs, err)
		}
		in.st.Restarts++
		in.st.UnstableRestarts, in.st.PrevRestartDelay = 0, 0
		in.st.Notes = nil
		ins = append(ins, in)
		if err := m.startInstance(in); err != nil {
			errs = append(errs, err)
		}
	}
	added, err := m.grow(a, spec.Instances)
	ins = append(ins, added...)
	errs = append(errs, err)
	m.syncAutomation(a) // a new cron_restart or watch definition replaces the old one
	return ins, errors.Join(errs...)
}

// grow adds and starts instances of a, in free instance slots, until it has n. The caller holds m.mu.
func (m *Manager) grow(a *app, n int) ([]*instance, error) {
	var added []*instance
	var errs []error
	for len(a.instances) < n {
		in, err := m.newInstance(a, freeIndex(a))
		if err != nil {
			errs = append(errs, err)
			break
		}
		added = append(added, in)
		if err := m.startInstance(in); err != nil {
			errs = append(errs, err)
		}
	}
	return added, errors.Join(errs...)
}

// waitStarted waits (bounded by listen_timeout) until none of ins is launching any more.
func (m *Manager) waitStarted(ins []*instance) {
	if len(ins) == 0 {
		return
	}
	m.mu.Lock()
	var limit time.Duration
	for _, in := range ins {
		limit = max(limit, ms(in.app.spec.ListenTimeout)+500*time.Millisecond)
	}
	m.mu.Unlock()
	m.waitCond(limit, func() bool {
		for _, in := range ins {
			if !in.deleted && in.st.Status == StatusLaunching {
				return false
			}
		}
		return true
	})
}

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

// list describes instances for the API.
func (m *Manager) list(ins []*instance) []api.Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procList(ins)
}

// updateEnv applies the environment options of restart/reload to the instance's app and
// refreezes the instance's environment. opts.AppEnv, when non-nil, replaces the app's own
// variables (App.Env: an ecosystem file's env read again). With opts.UpdateEnv the CLI's
// environment (opts.Env) is taken: when the app keeps the shell's environment apart
// (App.ShellEnv set) it replaces it — variables gone from the shell disappear — and the app's
// own variables still win over it, as in PM2. Otherwise (an app whose Env holds everything)
// opts.Env is merged over App.Env. An app of that older form given opts.AppEnv is split first:
// its whole environment becomes its shell environment. The caller holds m.mu.
func (m *Manager) updateEnv(in *instance, opts api.RestartOptions) {
	a := in.app
	if opts.AppEnv != nil {
		if a.spec.ShellEnv == nil {
			shell := cloneMap(a.spec.Env)
			if shell == nil {
				shell = map[string]string{}
			}
			a.spec.ShellEnv = shell
		}
		a.spec.Env = cloneMap(opts.AppEnv)
	}
	if opts.UpdateEnv {
		if a.spec.ShellEnv != nil {
			shell := cloneMap(opts.Env)
			if shell == nil {
				shell = map[string]string{}
			}
			a.spec.ShellEnv = shell
		} else {
			env := cloneMap(a.spec.Env)
			if env == nil {
				env = map[string]string{}
			}
			for k, v := range opts.Env {
				env[k] = v
			}
			a.spec.Env = env
		}
	}
	in.st.Env = instanceEnv(a.spec, a.res, m.cfg.Home, in.st.PMID, in.st.Instance, in.st.UniqueID)
}

// restartOne stops in and starts it again with restart_time+1. The caller holds in's operation
// lock.
func (m *Manager) restartOne(ctx context.Context, in *instance, opts api.RestartOptions) error {
	if err := m.stopOne(ctx, in); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.deleted {
		return nil
	}
	if m.shuttingDown {
		return ErrShuttingDown
	}
	if opts.UpdateEnv || opts.AppEnv != nil {
		m.updateEnv(in, opts)
	}
	in.st.Restarts++
	in.st.UnstableRestarts, in.st.PrevRestartDelay = 0, 0
	in.st.CreatedAt = time.Now()
	in.st.Notes = nil
	return m.launch(in)
}

// restartAll restarts instances one after the other.
func (m *Manager) restartAll(ctx context.Context, ins []*instance, opts api.RestartOptions) ([]*instance, error) {
	var errs []error
	for _, in := range ins {
		if err := in.lock(ctx); err != nil {
			errs = append(errs, err)
			break
		}
		err := m.restartOne(ctx, in, opts)
		in.unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return ins, errors.Join(errs...)
}

// Restart stops and starts the targeted instances, one at a time. With opts.UpdateEnv the
// CLI's environment (opts.Env) becomes the app's shell environment, under the app's own
// variables; a non-nil opts.AppEnv replaces the app's own variables; either way the
// environment is frozen again (see updateEnv).
func (m *Manager) Restart(ctx context.Context, targets []string, opts api.RestartOptions) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	if err := m.refuseAfterShutdown(); err != nil {
		return nil, err
	}
	_, err = m.restartAll(ctx, ins, opts)
	m.waitStarted(ins)
	return m.list(ins), err
}

func (m *Manager) refuseAfterShutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shuttingDown {
		return ErrShuttingDown
	}
	return nil
}

// remove forgets a stopped instance. The caller holds m.mu.
func (m *Manager) remove(in *instance) {
	if in.deleted {
		return
	}
	in.deleted = true
	in.cancelTimer()
	m.closeInstanceLogs(in)
	delete(m.procs, in.st.PMID)
	a := in.app
	a.instances = slices.DeleteFunc(a.instances, func(x *instance) bool { return x == in })
	if len(a.instances) == 0 {
		m.dropApp(a)
	} else {
		m.syncAutomation(a)
	}
	if len(m.procs) == 0 {
		m.nextID = 0
	}
	m.changed.Broadcast()
}

// dropApp forgets an app without instances and releases its sockets. The caller holds m.mu.
func (m *Manager) dropApp(a *app) {
	m.stopAutomation(a)
	m.releaseApp(a)
	if m.apps[a.spec.Name] == a {
		delete(m.apps, a.spec.Name)
		m.appOrder = slices.DeleteFunc(m.appOrder, func(n string) bool { return n == a.spec.Name })
	}
}

// Delete stops the targeted instances and forgets them. An app whose last instance goes
// releases its sockets; pm_ids start from 0 again once no instance is left.
func (m *Manager) Delete(ctx context.Context, targets []string) ([]api.Proc, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, err
	}
	err = m.eachLocked(ctx, ins, func(in *instance) error {
		if err := m.stopOne(ctx, in); err != nil {
			return err
		}
		m.mu.Lock()
		m.remove(in)
		m.mu.Unlock()
		return nil
	})
	return m.list(ins), err // deleted instances as they were last: stopped
}

// Scale sets the number of instances of the app called name: "N", "+N" or "-N" (at least 1
// must remain). New instances take the lowest free NODE_APP_INSTANCE indexes and new pm_ids.
// Scaling down deletes the instances with the highest NODE_APP_INSTANCE first, so that the
// indexes stay contiguous from 0 (PM2 removes the lowest pm_ids; corral keeps the oldest). It
// returns the app's instances afterwards.
func (m *Manager) Scale(ctx context.Context, name string, spec string) ([]api.Proc, error) {
	m.mu.Lock()
	a := m.apps[name]
	if a == nil {
		m.mu.Unlock()
		return nil, api.UnknownTargetError(name)
	}
	if m.shuttingDown {
		m.mu.Unlock()
		return nil, ErrShuttingDown
	}
	cur := len(a.instances)
	s := strings.TrimSpace(spec)
	n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
	if err != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("scale %s %q: want N, +N or -N", name, spec)
	}
	want := n
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		want = cur + n
	}
	if want < 1 {
		m.mu.Unlock()
		return nil, fmt.Errorf("scale %s %q: %d instances left; at least 1 must remain (use delete)", name, spec, want)
	}
	a.spec.Instances = want
	var added, victims []*instance
	var errs []error
	if want > cur {
		var err error
		added, err = m.grow(a, want)
		errs = append(errs, err)
		m.syncAutomation(a)
	} else if want < cur {
		victims = slices.Clone(a.instances)
		sort.Slice(victims, func(i, j int) bool { return victims[i].st.Instance > victims[j].st.Instance })
		victims = victims[:cur-want]
	}
	m.mu.Unlock()

	m.waitStarted(added)
	if len(victims) > 0 {
		errs = append(errs, m.eachLocked(ctx, victims, func(in *instance) error {
			if err := m.stopOne(ctx, in); err != nil {
				return err
			}
			m.mu.Lock()
			m.remove(in)
			m.mu.Unlock()
			return nil
		}))
	}
	return m.list(appInstances(m, a)), errors.Join(errs...)
}

// List returns every instance, ordered by pm_id.
func (m *Manager) List(ctx context.Context) ([]api.Proc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.procList(m.sortedProcs()), nil
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
		return nil, err
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
		if in.run == nil {
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
	return m.procList(ins), nil
}

// Flush empties the log files of the targeted instances (all instances when targets is empty).
func (m *Manager) Flush(ctx context.Context, targets []string) error {
	var ins []*instance
	if len(targets) == 0 {
		m.mu.Lock()
		ins = m.sortedProcs()
		m.mu.Unlock()
	} else {
		var err error
		if ins, err = m.targets(targets); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	done := map[string]bool{}
	var errs []error
	for _, in := range ins {
		for _, p := range []string{in.st.OutLog, in.st.ErrLog, in.st.CombinedLog} {
			f := m.logFile(p)
			if f == nil || done[p] {
				continue
			}
			done[p] = true
			if err := f.Truncate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReloadLogs reopens every log file, for use after an external tool moved them away.
func (m *Manager) ReloadLogs(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, sf := range m.files {
		if err := sf.f.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Logs streams the output lines of the targeted instances (all when targets is empty) until
// ctx ends; the channel is closed then. Lines of instances added later to a targeted app or
// namespace are included. A reader that falls behind loses lines rather than slowing apps.
func (m *Manager) Logs(ctx context.Context, targets []string) (<-chan api.LogLine, error) {
	all := len(targets) == 0
	ids := map[int]bool{}
	names := map[string]bool{}
	if !all {
		ins, err := m.targets(targets)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		for _, t := range targets {
			if t == "all" {
				all = true
			}
			if _, err := strconv.Atoi(t); err != nil && m.apps[t] != nil {
				names[t] = true
			}
		}
		for _, in := range ins {
			ids[in.st.PMID] = true
			if namespaceTargeted(targets, in.st.Namespace) {
				names[in.st.Name] = true
			}
		}
		m.mu.Unlock()
	}
	src, cancel := m.bc.Subscribe()
	out := make(chan api.LogLine, 64)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case l, ok := <-src:
				if !ok {
					return
				}
				if !all && !ids[l.ID] && !names[l.App] {
					continue
				}
				select {
				case out <- api.LogLine{PMID: l.ID, Name: l.App, Stream: l.Stream, Text: l.Text, Time: l.Time}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func namespaceTargeted(targets []string, ns string) bool {
	return slices.Contains(targets, ns)
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
		spec.Env = cloneMap(a.spec.Env)
		spec.ShellEnv = cloneMap(a.spec.ShellEnv)
		spec.Instances = len(a.instances)
		out = append(out, spec)
	}
	return out, nil
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
