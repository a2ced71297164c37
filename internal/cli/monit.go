package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/charmbracelet/x/term"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/monit"
	"github.com/spf13/cobra"
)

func (a *app) monitCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "monit",
		Aliases: []string{"dashboard", "dash"},
		Short:   "a terminal dashboard: processes, CPU/memory, logs, events, and actions on them",
		Long: "monit opens a full-screen dashboard of the daemon's processes (grouped by app, sortable, filterable)\n" +
			"with CPU and memory sparklines, the process's metadata, its live logs and the event feed. Keys act on\n" +
			"the selected process or app after a confirmation: r restart, R reload, x stop, s start, d delete,\n" +
			"+/- scale, K signal, f flush. ? shows every key; : opens the command palette; q quits.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.monit(cmd.Context())
		},
	}
}

// monit runs the dashboard against the running daemon; unlike other commands it does not start
// one (an empty dashboard helps nobody).
func (a *app) monit(ctx context.Context) error {
	in, inOK := a.stdin.(*os.File)
	out, outOK := a.stdout.(*os.File)
	var b monit.Backend
	if a.opts.Backend != nil {
		mb, ok := a.opts.Backend.(monit.Backend)
		if !ok {
			return errors.New("monit: this backend has no watch, history or event feed")
		}
		b = mb
	} else {
		p, err := a.paths()
		if err != nil {
			return err
		}
		c := api.NewClient(p.Socket)
		a.client = c
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Ping(pctx)
		cancel()
		if api.IsUnreachable(err) {
			return fmt.Errorf("monit: the corral daemon is not running (home %s); start an app with `corral start`, or the daemon with `corral ping`", p.Home)
		}
		if err != nil {
			return fmt.Errorf("monit: %w", err)
		}
		b = c
	}
	if !inOK || !outOK || !term.IsTerminal(in.Fd()) || !term.IsTerminal(out.Fd()) {
		return errors.New("monit: needs a terminal (for a script, use `corral jlist`, `corral events --json` or `corral logs --json`)")
	}
	// A hang-up (the SSH connection dropped) ends the dashboard through its context, which
	// restores the terminal; SIGINT and SIGTERM are bubbletea's own.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	return monit.Run(ctx, b, monit.Options{In: in, Out: out, Version: Version})
}
