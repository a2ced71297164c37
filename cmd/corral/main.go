// Command corral runs and supervises apps: a drop-in replacement for PM2's
// CLI and daemon, with Node's cluster protocol built in.
//
// The process manager (internal/daemon) is wired in here so that internal/cli
// stays independent of it. (A `corral-runtime` personality, chosen by argv[0]
// like pm2-runtime, is to come.)
package main

import (
	"os"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/cli"
	"github.com/corralhq/corral/internal/daemon"
)

func main() {
	os.Exit(cli.Main(os.Args, cli.Options{
		NewBackend: newBackend,
		Activate:   activation.Exec,
	}))
}

// newBackend builds the daemon's process manager.
func newBackend(cfg cli.DaemonConfig) (api.Backend, func(), error) {
	// Subreaper: the daemon reaps what its apps orphan (process-wide; this is the daemon process).
	m, err := daemon.New(daemon.Config{Home: cfg.Home, Logger: cfg.Logger, Self: cfg.Self, Subreaper: true})
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}
