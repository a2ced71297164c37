package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// fakeBackend is an in-memory process table: enough to drive the CLI and the
// daemon lifecycle without starting apps.
type fakeBackend struct {
	mu     sync.Mutex
	procs  []api.Proc
	nextID int
	logs   []api.LogLine
	calls  []string
}

func (f *fakeBackend) find(targets []string) ([]int, error) {
	var idx []int
	for _, t := range targets {
		n := len(idx)
		for i, p := range f.procs {
			if t == "all" || t == p.Name || t == strconv.Itoa(p.PMID) || t == p.Namespace {
				if !slices.Contains(idx, i) {
					idx = append(idx, i)
				}
			}
		}
		if len(idx) == n {
			if t == "all" {
				continue
			}
			return nil, api.UnknownTargetError(t)
		}
	}
	return idx, nil
}

func (f *fakeBackend) pick(idx []int) []api.Proc {
	out := make([]api.Proc, 0, len(idx))
	for _, i := range idx {
		out = append(out, f.procs[i])
	}
	return out
}

func (f *fakeBackend) Start(_ context.Context, apps []appspec.App, opts api.StartOptions) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start")
	for _, a := range apps {
		for _, p := range f.procs {
			if p.Name == a.Name && !opts.Force {
				return nil, fmt.Errorf("script already launched as %s, add -f to force re-execution", a.Name)
			}
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

func (f *fakeBackend) set(targets []string, fn func(*api.Proc)) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, err := f.find(targets)
	if err != nil {
		return nil, err
	}
	for _, i := range idx {
		fn(&f.procs[i])
	}
	return f.pick(idx), nil
}

func (f *fakeBackend) Stop(_ context.Context, t []string) ([]api.Proc, error) {
	return f.set(t, func(p *api.Proc) { p.Status, p.PID = "stopped", 0 })
}

func (f *fakeBackend) Restart(_ context.Context, t []string, o api.RestartOptions) ([]api.Proc, error) {
	return f.set(t, func(p *api.Proc) {
		p.Status, p.PID = "online", 100000+p.PMID
		p.Restarts++
		p.StartedAt = time.Now()
		// As the daemon: AppEnv replaces the app's own variables, --update-env the
		// shell's, and the app's own still win.
		if o.AppEnv != nil {
			p.App.Env = maps.Clone(o.AppEnv)
		}
		if o.UpdateEnv {
			p.App.ShellEnv = maps.Clone(o.Env)
		}
		if o.AppEnv != nil || o.UpdateEnv {
			p.Env = p.App.RunEnv()
		}
	})
}

func (f *fakeBackend) Reload(ctx context.Context, t []string, o api.RestartOptions) ([]api.Proc, error) {
	if o.Notes != nil {
		*o.Notes = append(*o.Notes, "fork mode without a shared socket: reload fell back to restart")
	}
	return f.Restart(ctx, t, o)
}

func (f *fakeBackend) Delete(_ context.Context, t []string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, err := f.find(t)
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
	return out, nil
}

func (f *fakeBackend) Scale(_ context.Context, name, spec string) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idx, err := f.find([]string{name})
	if err != nil {
		return nil, err
	}
	return f.pick(idx), nil
}

func (f *fakeBackend) List(context.Context) ([]api.Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.procs), nil
}

func (f *fakeBackend) Signal(_ context.Context, sig string, t []string) ([]api.Proc, error) {
	return f.set(t, func(*api.Proc) {})
}

func (f *fakeBackend) Reset(_ context.Context, t []string) ([]api.Proc, error) {
	return f.set(t, func(p *api.Proc) { p.Restarts, p.UnstableRestarts = 0, 0 })
}

func (f *fakeBackend) Flush(_ context.Context, t []string) error {
	_, err := f.set(t, func(*api.Proc) {})
	return err
}

func (f *fakeBackend) ReloadLogs(context.Context) error { return nil }

func (f *fakeBackend) Logs(ctx context.Context, t []string) (<-chan api.LogLine, error) {
	if _, err := f.set(t, func(*api.Proc) {}); err != nil {
		return nil, err
	}
	f.mu.Lock()
	lines := slices.Clone(f.logs)
	f.mu.Unlock()
	ch := make(chan api.LogLine)
	go func() {
		defer close(ch)
		for _, l := range lines {
			select {
			case ch <- l:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

func (f *fakeBackend) Apps(context.Context) ([]appspec.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var apps []appspec.App
	for _, p := range f.procs {
		apps = append(apps, p.App)
	}
	return apps, nil
}

func (f *fakeBackend) Shutdown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.procs {
		f.procs[i].Status, f.procs[i].PID = "stopped", 0
	}
	return nil
}

// fakeMain is the "corral" of the test scripts: the real CLI with the fake
// process manager inside its daemon.
func fakeMain() int {
	self, _ := os.Executable()
	return Main(os.Args, Options{
		Self: self,
		NewBackend: func(DaemonConfig) (api.Backend, func(), error) {
			if os.Getenv("CORRAL_FAKE_FAIL") != "" {
				return nil, nil, fmt.Errorf("fake manager refuses to start")
			}
			return &fakeBackend{}, nil, nil
		},
	})
}
