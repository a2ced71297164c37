// Package apitest provides Fake, an in-memory api.Backend for the tests of
// the control protocol and of the CLI.
package apitest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// ForkNote is the note Fake.Reload gives, per app and per instance, as the
// daemon does for a fork app reloaded without a shared socket.
const ForkNote = "fork mode without a shared socket: reload fell back to restart"

// Fake is an in-memory process table that implements api.Backend (and
// Ping) without running anything: started instances are "online" with a
// made-up pid, stop sets "stopped", restart counts. Targets are resolved by
// api.Match, as the daemon resolves them. Every call is recorded (see Calls).
// The zero value is an empty table, ready to use.
//
// Differences from the daemon, kept small on purpose: a forced start of an
// existing name adds instances instead of replacing them; Reload restarts
// every instance with the fork-mode note; Scale changes nothing.
type Fake struct {
	// ShutdownErr, when set, is returned by Shutdown (after stopping everything).
	ShutdownErr error
	// LogStream, when set, is what Logs returns once the targets are checked;
	// otherwise Logs returns a closed channel.
	LogStream chan api.LogLine
	// Version is what Ping reports as the daemon's version.
	Version string

	mu     sync.Mutex
	procs  []api.Proc
	nextID int
	calls  []string
}

var _ api.Backend = (*Fake)(nil)

// Procs returns a copy of the process table, in pm_id order.
func (f *Fake) Procs() []api.Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs)
}

// Calls returns the calls made so far, one line each: the method name (as in
// api.Method*), then its targets and options, e.g. "stop [web]".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// record notes a call; the caller holds f.mu.
func (f *Fake) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// match returns the indexes of the processes targets name; the caller holds f.mu.
func (f *Fake) match(targets []string) ([]int, error) {
	procs, err := api.Match(f.procs, targets)
	if err != nil {
		return nil, err
	}
	idx := make([]int, 0, len(procs))
	for _, p := range procs {
		idx = append(idx, slices.IndexFunc(f.procs, func(q api.Proc) bool { return q.PMID == p.PMID }))
	}
	return idx, nil
}

func (f *Fake) pick(idx []int) []api.Proc {
	out := make([]api.Proc, 0, len(idx))
	for _, i := range idx {
		out = append(out, f.procs[i])
	}
	return out
}

// set applies fn to the processes targets name and returns them afterwards.
func (f *Fake) set(targets []string, fn func(*api.Proc)) ([]api.Proc, error) {
	idx, err := f.match(targets)
	if err != nil {
		return nil, err
	}
	for _, i := range idx {
		fn(&f.procs[i])
	}
	return f.pick(idx), nil
}

// Start implements api.Backend: each app gets Defaults and one "online"
// process per instance. A name that exists is an error unless opts.Force.
func (f *Fake) Start(_ context.Context, apps []appspec.App, opts api.StartOptions) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start %d force=%v", len(apps), opts.Force)
	for _, a := range apps {
		if !opts.Force && slices.ContainsFunc(f.procs, func(p api.Proc) bool { return p.Name == a.Name }) {
			return nil, fmt.Errorf("script already launched as %s, add -f to force re-execution", a.Name)
		}
	}
	var out []api.Proc
	now := time.Now()
	for _, a := range apps {
		a.Defaults()
		for i := range a.Instances {
			p := api.Proc{PMID: f.nextID, Name: a.Name, Namespace: a.Namespace, PID: 100000 + f.nextID,
				Status: "online", App: a, Interpreter: "node", ExecPath: a.Script, Cwd: a.Cwd, Instance: i,
				StartedAt: now, CreatedAt: now, Env: a.RunEnv(), Memory: 1 << 20}
			f.nextID++
			f.procs = append(f.procs, p)
			out = append(out, p)
		}
	}
	return out, nil
}

// Stop implements api.Backend.
func (f *Fake) Stop(_ context.Context, t []string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop %v", t)
	return f.set(t, func(p *api.Proc) { p.Status, p.PID = "stopped", 0 })
}

// Restart implements api.Backend, with the daemon's environment rules:
// AppEnv replaces the app's own variables, UpdateEnv its shell environment,
// and the app's own still win. Overrides change the definition of every
// instance of the apps named, all checked first.
func (f *Fake) Restart(_ context.Context, t []string, o api.RestartOptions) ([]api.Proc, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("restart %v%s", t, optionsString(o))
	return f.restart(t, o, "restart")
}

// Reload implements api.Backend: a restart, with the daemon's note for fork
// apps (or, with Overrides, for a redefinition).
func (f *Fake) Reload(_ context.Context, t []string, o api.RestartOptions) ([]api.Proc, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reload %v%s", t, optionsString(o))
	return f.restart(t, o, "reload")
}

func optionsString(o api.RestartOptions) string {
	var b strings.Builder
	if o.UpdateEnv {
		fmt.Fprintf(&b, " update-env=%v", o.Env)
	}
	if o.AppEnv != nil {
		fmt.Fprintf(&b, " app-env=%v", o.AppEnv)
	}
	if o.Overrides != nil {
		fmt.Fprintf(&b, " overrides=%v", o.Overrides.Fields)
	}
	return b.String()
}

// restart is Restart and Reload; the caller holds f.mu.
func (f *Fake) restart(t []string, o api.RestartOptions, verb string) ([]api.Proc, []string, error) {
	idx, err := f.match(t)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, i := range idx {
		if !slices.Contains(names, f.procs[i].Name) {
			names = append(names, f.procs[i].Name)
		}
	}
	var notes []string
	if o.Overrides != nil {
		if o.AppEnv != nil {
			return nil, nil, fmt.Errorf("%s: Overrides and AppEnv cannot be combined", verb)
		}
		// Every instance of the apps named, each app checked before any changes.
		idx = nil
		defs := map[string]appspec.App{}
		for i, p := range f.procs {
			if !slices.Contains(names, p.Name) {
				continue
			}
			idx = append(idx, i)
			if _, done := defs[p.Name]; done {
				continue
			}
			app, err := o.Overrides.Apply(p.App)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", verb, p.Name, err)
			}
			if o.UpdateEnv {
				app.ShellEnv = maps.Clone(o.Env)
			}
			if err := app.Validate(); err != nil {
				return nil, nil, fmt.Errorf("app %s: %w", app.Name, err)
			}
			defs[p.Name] = app
		}
		for _, i := range idx {
			f.procs[i].App = defs[f.procs[i].Name]
			f.procs[i].Name = f.procs[i].App.Name // "name" renames
			f.procs[i].Env = f.procs[i].App.RunEnv()
		}
		if verb == "reload" {
			notes = append(notes, "reload with changed options restarts "+strings.Join(names, ", ")+
				" (a new definition cannot be reloaded with zero downtime)")
		}
	} else if verb == "reload" {
		for _, n := range names {
			notes = append(notes, n+": "+ForkNote)
		}
	}
	for _, i := range idx {
		p := &f.procs[i]
		if p.Status == "online" || p.Status == "launching" { // PM2: a stopped app's counter stays
			p.Restarts++
		}
		p.Status, p.PID = "online", 100000+p.PMID
		p.StartedAt = time.Now()
		p.Notes = nil
		if o.Overrides == nil {
			if o.AppEnv != nil {
				p.App.Env = maps.Clone(o.AppEnv)
			}
			if o.UpdateEnv {
				p.App.ShellEnv = maps.Clone(o.Env)
			}
			if o.AppEnv != nil || o.UpdateEnv {
				p.Env = p.App.RunEnv()
			}
			if verb == "reload" {
				p.Notes = []string{ForkNote}
			}
		}
	}
	return f.pick(idx), notes, nil
}

// Delete implements api.Backend; pm_ids start from 0 again once the table is empty.
func (f *Fake) Delete(_ context.Context, t []string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("delete %v", t)
	idx, err := f.match(t)
	if err != nil {
		return nil, err
	}
	out := f.pick(idx)
	var keep []api.Proc
	for i, p := range f.procs {
		if !slices.Contains(idx, i) {
			keep = append(keep, p)
		}
	}
	f.procs = keep
	if len(keep) == 0 {
		f.nextID = 0
	}
	for i := range out {
		out[i].Status, out[i].PID = "stopped", 0
	}
	return out, nil
}

// Scale implements api.Backend; it returns the app's instances unchanged.
func (f *Fake) Scale(_ context.Context, name, spec string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("scale %s %s", name, spec)
	var out []api.Proc
	for _, p := range f.procs {
		if p.Name == name {
			out = append(out, p)
		}
	}
	if out == nil {
		return nil, api.UnknownTargetError(name)
	}
	return out, nil
}

// List implements api.Backend.
func (f *Fake) List(context.Context) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("list")
	return slices.Clone(f.procs), nil
}

// Signal implements api.Backend; nothing is sent.
func (f *Fake) Signal(_ context.Context, sig string, t []string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("signal %s %v", sig, t)
	return f.set(t, func(*api.Proc) {})
}

// Reset implements api.Backend.
func (f *Fake) Reset(_ context.Context, t []string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reset %v", t)
	return f.set(t, func(p *api.Proc) { p.Restarts, p.UnstableRestarts = 0, 0 })
}

// Flush implements api.Backend; there are no files to empty.
func (f *Fake) Flush(_ context.Context, t []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("flush %v", t)
	_, err := f.match(t)
	return err
}

// ReloadLogs implements api.Backend.
func (f *Fake) ReloadLogs(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reloadLogs")
	return nil
}

// Logs implements api.Backend: LogStream, or a closed channel.
func (f *Fake) Logs(_ context.Context, t []string) (<-chan api.LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("logs %v", t)
	if _, err := f.match(t); err != nil {
		return nil, err
	}
	if f.LogStream != nil {
		return f.LogStream, nil
	}
	ch := make(chan api.LogLine)
	close(ch)
	return ch, nil
}

// Apps implements api.Backend: one definition per app, in the order of their
// first instance, with Instances set to the number of instances.
func (f *Fake) Apps(context.Context) ([]appspec.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("apps")
	var apps []appspec.App
	for _, p := range f.procs {
		i := slices.IndexFunc(apps, func(a appspec.App) bool { return a.Name == p.Name })
		if i < 0 {
			app := p.App
			app.Instances = 0
			apps = append(apps, app)
			i = len(apps) - 1
		}
		apps[i].Instances++
	}
	return apps, nil
}

// Shutdown implements api.Backend: every process is stopped, then
// ShutdownErr is returned.
func (f *Fake) Shutdown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("shutdown")
	for i := range f.procs {
		f.procs[i].Status, f.procs[i].PID = "stopped", 0
	}
	return f.ShutdownErr
}

// Ping answers as api.Client.Ping does for a daemon in this process.
func (f *Fake) Ping(context.Context) (api.PingResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ping")
	return api.PingResponse{Pong: true, PID: os.Getpid(), Version: f.Version}, nil
}
