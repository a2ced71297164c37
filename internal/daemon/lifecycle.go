package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/events"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
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
		return nil, api.BadField("apps", errors.New("start: no app given"))
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
			return nil, appFieldError(i, fmt.Errorf("start: %w", err))
		}
		items[i].spec, items[i].res = spec, res
	}
	for _, it := range items {
		m.ev.Publish(events.Event{Type: events.App, App: it.spec.Name, Reason: "start"})
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

	specs := make([]appspec.App, len(items))
	for i, it := range items {
		specs[i] = it.spec
	}
	order, err := m.startOrder(specs) // depends_on: an unknown name or a cycle starts nothing (order.go)
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	var started []*instance
	var errs []error
	for _, i := range order {
		it := items[i]
		if err := m.waitDeps(ctx, it.spec.Name, m.depsOf(it.spec)); err != nil {
			errs = append(errs, err)
			continue
		}
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
	errs = append(errs, m.waitStarted(started))
	m.mu.Lock()
	defer m.mu.Unlock()
	if opts.Lean {
		procs := make([]api.Proc, 0, len(started))
		for _, in := range started {
			procs = append(procs, m.procLean(in))
		}
		return procs, errors.Join(errs...)
	}
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
		m.keepListeners(a)
	}
	m.apps[spec.Name] = a
	m.appOrder = append(m.appOrder, spec.Name)
	var ins []*instance
	var errs []error
	m.execAsync = true // Start's waitStarted reports what execFork could not start
	defer func() { m.execAsync = false }()
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
	m.retirePrimary(a)
	if !slices.Equal(a.spec.Listen, spec.Listen) || res.mode != modeListen {
		m.releaseApp(a)
		if res.mode == modeListen {
			files, err := activation.Listen(spec.Listen)
			if err != nil {
				return nil, fmt.Errorf("restart %s: %w", spec.Name, err)
			}
			a.listeners = files
			m.keepListeners(a)
		}
	}
	if spec.Name != a.spec.Name { // restart --name (checked before the stop; see restartWithOverrides)
		if err := m.renameLocked(a, spec.Name); err != nil {
			return nil, err
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

// waitStarted waits (bounded by listen_timeout) until none of ins is launching any more. It
// returns the errors of the processes among them that could not be started after launch had
// returned (cluster forks, see startFailed).
func (m *Manager) waitStarted(ins []*instance) error {
	if len(ins) == 0 {
		return nil
	}
	m.mu.Lock()
	var limit time.Duration
	for _, in := range ins {
		limit = max(limit, waitLimit(in)+500*time.Millisecond)
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
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := []error{notReady(ins)}
	for _, in := range ins {
		if in.startErr != nil && !in.deleted {
			errs = append(errs, in.startErr)
		}
	}
	return errors.Join(errs...)
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
	m.dirty()
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

// Scale sets the number of instances of the app called name: "N", "+N" or "-N" (at least 1
// must remain). New instances take the lowest free NODE_APP_INSTANCE indexes and new pm_ids.
// Scaling down deletes the instances with the highest NODE_APP_INSTANCE first, so that the
// indexes stay contiguous from 0 (PM2 removes the lowest pm_ids; corral keeps the oldest). It
// returns the app's instances afterwards.
func (m *Manager) Scale(ctx context.Context, name string, spec string) ([]api.Proc, error) {
	if strings.TrimSpace(name) == "" {
		return nil, api.BadField("name", errors.New("scale: no app given"))
	}
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
		return nil, api.BadField("spec", fmt.Errorf("scale %s %q: want N, +N or -N", name, spec))
	}
	want := n
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		want = cur + n
	}
	if want < 1 {
		m.mu.Unlock()
		return nil, api.BadField("spec", fmt.Errorf("scale %s %q: %d instances left; at least 1 must remain (use delete)", name, spec, want))
	}
	m.ev.Publish(events.Event{Type: events.App, App: name, Reason: "scale", Message: fmt.Sprintf("%d → %d", cur, want)})
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

	errs = append(errs, m.waitStarted(added))
	if len(victims) > 0 {
		errs = append(errs, m.eachLocked(ctx, victims, func(in *instance) error { return m.deleteOne(ctx, in) }))
	}
	return m.list(appInstances(m, a)), errors.Join(errs...)
}
