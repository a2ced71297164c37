// Command corral runs and supervises apps: a drop-in replacement for PM2's
// CLI and daemon, with Node's cluster protocol built in. Invoked as
// corral-runtime (argv[0], e.g. through a symbolic link) it is PM2's
// pm2-runtime: `corral runtime start ...`.
//
// The process manager (internal/daemon) and the container runtime
// (internal/container) are wired in here, so that internal/cli never starts
// them itself and its tests can use fakes.
//
// updatemaxprocs=0: GOMAXPROCS still follows the cgroup's CPU limit at start, but the runtime does
// not re-read the limit every second (Go 1.25+ does, from sysmon, holding two cgroup files open):
// an idle daemon has no reason to wake for it (issue 13).
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"maps"
	"os"

	"github.com/corralhq/corral/internal/activation"
	// The __activate shim runs from this package's init, before the other packages' (see its doc).
	_ "github.com/corralhq/corral/internal/activation/early"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/container"
	"github.com/corralhq/corral/internal/daemon"
	// `ls` and `jlist` alone are answered from this package's init, before the other packages' (see its doc).
	_ "github.com/corralhq/corral/internal/fastls"
	"github.com/corralhq/corral/internal/keeper"
)

func main() {
	os.Exit(cli.Main(cli.RuntimeArgs(os.Args), cli.Options{
		NewBackend: newBackend,
		Activate:   activation.Exec,
		Runtime:    runRuntime,
	}))
}

// newBackend builds the daemon's process manager.
func newBackend(cfg cli.DaemonConfig) (api.Backend, func(), error) {
	// Subreaper: the daemon reaps what its apps orphan (process-wide; this is the daemon process).
	m, err := daemon.New(daemon.Config{Home: cfg.Home, Logger: cfg.Logger, Self: cfg.Self, Subreaper: true,
		TrimMemory: true, Keeper: cfg.Keeper, KeeperSocket: cfg.KeeperSocket})
	if err != nil {
		return nil, nil, err
	}
	if cfg.Keeper != nil {
		return keptManager{m}, func() { m.Close() }, nil
	}
	return m, func() { m.Close() }, nil
}

// keptManager is the Manager of a daemon started by the keeper: a cli.KeeperBackend.
type keptManager struct{ *daemon.Manager }

func (k keptManager) RecoverFrom(ctx context.Context, entries []keeper.Entry) (bool, []any, error) {
	rep, err := k.Recover(ctx, entries)
	return rep.State, []any{"apps", rep.Apps, "adopted", rep.Adopted, "dead", rep.Dead, "strays", rep.Strays,
		"exit_records", rep.Exits, "released_fds", rep.Released}, err
}

// runRuntime is container mode: the first process becomes the reaping,
// signal-forwarding init (container.Init) and its child runs the apps.
func runRuntime(ctx context.Context, apps []appspec.App, o container.Options) int {
	if code, ok := container.Init(); ok {
		return code
	}
	for i := range apps { // the init/child marker is not the apps' business
		apps[i].Env = maps.Clone(apps[i].Env)
		delete(apps[i].Env, container.ChildEnv)
		apps[i].ShellEnv = maps.Clone(apps[i].ShellEnv)
		delete(apps[i].ShellEnv, container.ChildEnv)
	}
	return container.Run(ctx, apps, o)
}
