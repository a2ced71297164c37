package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

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
			shell := maps.Clone(a.spec.Env)
			if shell == nil {
				shell = map[string]string{}
			}
			a.spec.ShellEnv = shell
		}
		a.spec.Env = maps.Clone(opts.AppEnv)
	}
	if opts.UpdateEnv {
		if a.spec.ShellEnv != nil {
			shell := maps.Clone(opts.Env)
			if shell == nil {
				shell = map[string]string{}
			}
			a.spec.ShellEnv = shell
		} else {
			env := maps.Clone(a.spec.Env)
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

// restartOne stops in and starts it again, with restart_time+1 when it was running (launching or
// online), as PM2 counts: a stopped, errored or waiting instance is started again with its counter
// unchanged. The caller holds in's operation lock.
func (m *Manager) restartOne(ctx context.Context, in *instance, opts api.RestartOptions) error {
	m.mu.Lock()
	running := in.st.Status == StatusOnline || in.st.Status == StatusLaunching
	m.mu.Unlock()
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
	if running {
		in.st.Restarts++
	}
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
// environment is frozen again (see updateEnv). With opts.Overrides the targeted apps are
// redefined instead (see restartWithOverrides).
func (m *Manager) Restart(ctx context.Context, targets []string, opts api.RestartOptions) ([]api.Proc, []string, error) {
	ins, err := m.targets(targets)
	if err != nil {
		return nil, nil, err
	}
	if err := m.refuseAfterShutdown(); err != nil {
		return nil, nil, err
	}
	m.userAction("restart", ins)
	m.userRestarts(ins)
	if opts.Overrides != nil {
		return m.restartWithOverrides(ctx, ins, opts, "restart")
	}
	_, err = m.restartAll(ctx, ins, opts)
	err = errors.Join(err, m.waitStarted(ins))
	return m.list(ins), nil, err
}

// restartWithOverrides is restart and reload with opts.Overrides, in one request: every app that
// has an instance among ins gets its current definition changed by the overrides (and, with
// opts.UpdateEnv, opts.Env as its shell environment, as start gives it) and is redefined, so all
// its instances restart with the new definition, which sticks. The definitions are read here, in
// the daemon, and the script and interpreter are looked up in the PATH each app runs with. Every
// new definition is checked and resolved before any app is touched. A reload restarts as well
// (a new definition cannot be reloaded with zero downtime) and says so in a note.
func (m *Manager) restartWithOverrides(ctx context.Context, ins []*instance, opts api.RestartOptions, verb string) ([]api.Proc, []string, error) {
	if opts.AppEnv != nil {
		return nil, nil, api.BadField("overrides", fmt.Errorf("%s: Overrides and AppEnv cannot be combined", verb))
	}
	type item struct {
		a    *app
		spec appspec.App
		res  resolved
	}
	var items []item
	m.mu.Lock()
	for _, in := range ins {
		if !slices.ContainsFunc(items, func(it item) bool { return it.a == in.app }) {
			spec := in.app.spec // as Apps has it: what `save` would write
			spec.Env, spec.ShellEnv = maps.Clone(spec.Env), maps.Clone(spec.ShellEnv)
			spec.Instances = len(in.app.instances)
			items = append(items, item{a: in.app, spec: spec})
		}
	}
	m.mu.Unlock()
	var errs []error
	for i := range items {
		it := &items[i]
		spec, err := opts.Overrides.Apply(it.spec)
		if err != nil {
			errs = append(errs, api.BadField("overrides", fmt.Errorf("%s %s: %w", verb, it.spec.Name, err)))
			continue
		}
		if opts.UpdateEnv {
			if spec.ShellEnv = maps.Clone(opts.Env); spec.ShellEnv == nil {
				spec.ShellEnv = map[string]string{}
			}
		}
		if err := spec.Validate(); err != nil {
			errs = append(errs, api.BadField("overrides", fmt.Errorf("app %s: %w", spec.Name, err)))
			continue
		}
		if it.spec, it.res, err = resolveApp(spec, m.cfg.Self); err != nil {
			errs = append(errs, api.BadField("overrides", fmt.Errorf("%s: %w", verb, err)))
		}
	}
	if slices.Contains(opts.Overrides.Fields, "name") && len(items) > 1 {
		errs = append(errs, fmt.Errorf("%s --name: the targets name %d apps; a rename takes one", verb, len(items)))
	}
	m.mu.Lock()
	for _, it := range items {
		if it.spec.Name != it.a.spec.Name && m.apps[it.spec.Name] != nil {
			errs = append(errs, fmt.Errorf("%s %s --name %s: an app of that name exists", verb, it.a.spec.Name, it.spec.Name))
		}
	}
	m.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	var started []*instance
	var names []string
	for _, it := range items {
		m.mu.Lock()
		gone := m.apps[it.a.spec.Name] != it.a
		m.mu.Unlock()
		if gone { // deleted meanwhile
			errs = append(errs, api.UnknownTargetError(it.spec.Name))
			continue
		}
		redefined, err := m.redefine(ctx, it.a, it.spec, it.res)
		started = append(started, redefined...)
		names = append(names, it.spec.Name)
		errs = append(errs, err)
	}
	errs = append(errs, m.waitStarted(started))
	var notes []string
	if verb == "reload" && len(names) > 0 {
		notes = append(notes, "reload with changed options restarts "+strings.Join(names, ", ")+
			" (a new definition cannot be reloaded with zero downtime)")
	}
	return m.list(started), notes, errors.Join(errs...)
}
