package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// Start order (depends_on, issue 12). Start orders the apps it is given with appspec.StartOrder
// (an unknown name or a cycle fails the whole start before anything starts) and, before starting
// an app, waits for each of its dependencies' condition (waitDeps): "started" (every instance has
// a process), "ready" (every instance online: past its readiness probe, if any) or "completed"
// (every instance stopped after exiting 0: a one-shot job with autorestart off). Stop and
// Shutdown stop dependents before what they depend on (stopWaves). Waits use waitCond (m.changed),
// never holding m.mu between checks.

// completedLimit bounds the wait for a "completed" dependency (a migration, say).
const completedLimit = 30 * time.Minute

// startOrder returns the indexes of specs in start order, or the depends_on error.
func (m *Manager) startOrder(specs []appspec.App) ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	withDeps := make([]appspec.App, len(specs))
	for i, s := range specs {
		withDeps[i] = appspec.App{Name: s.Name, DependsOn: s.DependsOn}
		if a := m.apps[s.Name]; a != nil && (strings.TrimSpace(s.Script) == "" || s.Script == s.Name) {
			withDeps[i].DependsOn = a.spec.DependsOn // a start by name: the stored definition
		}
	}
	return appspec.StartOrder(withDeps, func(name string) bool { return m.apps[name] != nil })
}

// waitDeps waits until every dependency of app has reached its condition, and says why not.
func (m *Manager) waitDeps(ctx context.Context, app string, deps []appspec.Dependency) error {
	for _, d := range deps {
		cond, err := appspec.NormalCondition(d.Condition)
		if err != nil {
			return fmt.Errorf("start %s: depends_on %s: %w", app, d.Name, err)
		}
		m.mu.Lock()
		limit := time.Second
		if a := m.apps[d.Name]; a != nil {
			limit += readinessLimit(a.spec)
		}
		m.mu.Unlock()
		if cond == appspec.DependsCompleted {
			limit = completedLimit
		}
		if dl, ok := ctx.Deadline(); ok {
			limit = min(limit, time.Until(dl))
		}
		var verdict string                          // "" while waiting, "ok", or why it cannot be met
		stopWake := context.AfterFunc(ctx, func() { // waitCond wakes on changed only
			m.mu.Lock()
			m.changed.Broadcast()
			m.mu.Unlock()
		})
		m.waitCond(limit, func() bool {
			verdict = m.depState(d.Name, cond)
			return verdict != "" || ctx.Err() != nil
		})
		stopWake()
		switch verdict {
		case "ok":
			continue
		case "":
			verdict = fmt.Sprintf("not %s within %v", cond, limit.Round(time.Millisecond))
		}
		return fmt.Errorf("start %s: depends_on %s (%s): %s", app, d.Name, cond, verdict)
	}
	return nil
}

// depState says where the app name stands for condition cond: "ok", "" (not yet) or why it
// cannot get there. The caller holds m.mu.
func (m *Manager) depState(name, cond string) string {
	a := m.apps[name]
	if a == nil || len(a.instances) == 0 {
		return "no such app"
	}
	ok := true
	for _, in := range a.instances {
		st := in.st.Status
		switch cond {
		case appspec.DependsStarted:
			switch {
			case st == StatusOnline, st == StatusLaunching && in.run != nil && in.run.pid != 0:
			case st == StatusErrored, st == StatusStopped:
				return fmt.Sprintf("instance %d is %s", in.st.Instance, st)
			default:
				ok = false
			}
		case appspec.DependsReady:
			switch st {
			case StatusOnline:
			case StatusErrored, StatusStopped:
				return fmt.Sprintf("instance %d is %s", in.st.Instance, st)
			default:
				ok = false
			}
		case appspec.DependsCompleted:
			switch {
			case st == StatusStopped && in.st.ExitCode == 0 && in.st.ExitSignal == "" && in.run == nil && !in.userStopped:
			case st == StatusStopped && in.userStopped:
				return fmt.Sprintf("instance %d was stopped", in.st.Instance)
			case st == StatusStopped, st == StatusErrored:
				return fmt.Sprintf("instance %d ended with exit code %d%s", in.st.Instance, in.st.ExitCode, sigSuffix(in.st.ExitSignal))
			default:
				ok = false
			}
		}
	}
	if ok {
		return "ok"
	}
	return ""
}

func sigSuffix(sig string) string {
	if sig == "" {
		return ""
	}
	return " (" + sig + ")"
}

// stopWaves groups ins for a stop: the instances of apps that other targeted apps depend on come
// in later waves. Without depends_on among them, one wave.
func (m *Manager) stopWaves(ins []*instance) [][]*instance {
	m.mu.Lock()
	byApp := map[string][]*instance{}
	var names []string
	deps := map[string][]string{}
	hasDeps := false
	for _, in := range ins {
		n := in.app.spec.Name
		if _, seen := byApp[n]; !seen {
			names = append(names, n)
			for _, d := range in.app.spec.DependsOn {
				deps[n] = append(deps[n], d.Name)
				hasDeps = true
			}
		}
		byApp[n] = append(byApp[n], in)
	}
	m.mu.Unlock()
	if !hasDeps {
		return [][]*instance{ins}
	}
	var waves [][]*instance
	for _, w := range appspec.StopWaves(names, func(n string) []string { return deps[n] }) {
		var wave []*instance
		for _, n := range w {
			wave = append(wave, byApp[n]...)
		}
		waves = append(waves, wave)
	}
	return waves
}

// depsOf returns the dependencies of an app being started: its own, or for a start by name the
// stored definition's.
func (m *Manager) depsOf(spec appspec.App) []appspec.Dependency {
	if len(spec.DependsOn) > 0 {
		return spec.DependsOn
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.apps[spec.Name]; a != nil && (strings.TrimSpace(spec.Script) == "" || spec.Script == spec.Name) {
		return a.spec.DependsOn
	}
	return nil
}
