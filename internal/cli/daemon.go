// The corral daemon's main loop: `corral daemon` (runDaemon) takes the
// control socket and the pid file (daemonproc), builds the process manager
// with Options.NewBackend, serves it with api.Serve, optionally resurrects the
// saved list, reports readiness (to the CLI that spawned it by a pipe, to
// systemd by sd_notify), reopens logs on SIGUSR2 and, on SIGTERM/SIGINT,
// stops every app (Backend.Shutdown) and exits.
//
// The process manager itself — apps, instances, restarts, reloads, logs —
// is daemon.Manager in internal/daemon; cmd/corral wires it in as
// NewBackend. Spawning, finding and stopping the daemon from the CLI is
// internal/daemonproc.

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/fdhygiene"
	"github.com/corralhq/corral/internal/systemd"
	"github.com/spf13/cobra"
)

// shutdownTimeout bounds how long the daemon waits for its apps to stop when
// it is told to exit.
const shutdownTimeout = 60 * time.Second

func (a *app) daemonCommand() *cobra.Command {
	var foreground, noDaemon, resurrect bool
	cmd := &cobra.Command{
		Use:    "daemon",
		Short:  "run the corral daemon (started automatically by the other commands)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runDaemon(cmd.Context(), foreground || noDaemon, resurrect)
		},
	}
	cmd.Flags().BoolVar(&foreground, "foreground", false, "stay attached (for systemd; notifies READY=1 when $NOTIFY_SOCKET is set)")
	cmd.Flags().BoolVar(&noDaemon, "no-daemon", false, "alias of --foreground")
	cmd.Flags().BoolVar(&resurrect, "resurrect", false, "start the saved process list before reporting ready")
	return cmd
}

// runDaemon is `corral daemon`: listen on the control socket, serve the
// Backend until SIGTERM/SIGINT, then stop every app and exit. With resurrect
// the saved process list is started before readiness is reported.
func (a *app) runDaemon(ctx context.Context, foreground, resurrect bool) error {
	readyFD := daemonproc.TakeReadyFD()
	// Descriptors the daemon inherited (a CI runner's pipe, make's jobserver, a shell's `exec
	// 7>file`) are closed, before anything else opens any: neither the daemon nor its apps hold
	// them. The readiness pipe is close-on-exec by now, so it stays.
	if err := fdhygiene.CloseInherited(); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if err := fdhygiene.CloexecFrom(3); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if a.opts.NewBackend == nil {
		return errors.New("daemon: this binary has no process manager built in")
	}
	p, err := a.paths()
	if err != nil {
		return err
	}
	if err := daemonproc.EnsureHome(p.Home); err != nil {
		return err
	}
	logf, err := os.OpenFile(p.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	var h slog.Handler = slog.NewTextHandler(logf, nil)
	if foreground {
		h = slog.NewMultiHandler(h, slog.NewTextHandler(a.stderr, nil))
	}
	log := slog.New(h)

	// Signals first, so that a SIGTERM during start-up is not lost.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
	signal.Ignore(syscall.SIGHUP)
	defer signal.Stop(sigs)

	ln, err := daemonproc.Listen(ctx, p)
	if err != nil {
		log.Error("daemon start failed", "err", err)
		return err
	}
	defer ln.Close()
	b, closeBackend, err := a.opts.NewBackend(DaemonConfig{Home: p.Home, Logger: log, Self: a.self})
	if err != nil {
		os.Remove(p.Socket)
		log.Error("daemon start failed", "err", err)
		return fmt.Errorf("daemon: %w", err)
	}
	if closeBackend != nil {
		defer closeBackend()
	}
	if err := daemonproc.WritePid(p.PidFile, os.Getpid()); err != nil {
		os.Remove(p.Socket)
		return err
	}
	defer removeIfOurs(p)

	served := make(chan error, 1)
	go func() { served <- api.Serve(ctx, ln, b) }()
	if resurrect {
		daemonResurrect(ctx, b, p.Home, log)
	}
	log.Info("corral daemon ready", "pid", os.Getpid(), "socket", p.Socket, "version", Version)
	if err := daemonproc.SignalReady(readyFD); err != nil {
		log.Warn("readiness pingback", "err", err)
	}
	if foreground {
		if _, err := systemd.Notify("READY=1\nMAINPID=" + fmt.Sprint(os.Getpid())); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}

	var serveErr error
loop:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGUSR2 {
				log.Info("SIGUSR2: reopening log files")
				if err := b.ReloadLogs(ctx); err != nil {
					log.Error("reload logs", "err", err)
				}
				continue
			}
			log.Info("signal received, shutting down", "signal", sig.String())
			break loop
		case serveErr = <-served:
			served = nil
			log.Error("control socket failed", "err", serveErr)
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	if foreground {
		_, _ = systemd.Notify("STOPPING=1")
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if err := b.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	cancel()
	if served != nil {
		<-served
	}
	log.Info("corral daemon exiting", "pid", os.Getpid())
	if serveErr != nil {
		return serveErr
	}
	return nil
}

// removeIfOurs removes the socket and pid file if the pid file still names
// this process (a successor daemon may already own them).
func removeIfOurs(p daemonproc.Paths) {
	if pid, err := daemonproc.ReadPid(p.PidFile); err == nil && pid != os.Getpid() {
		return
	}
	os.Remove(p.Socket)
	os.Remove(p.PidFile)
}

func (a *app) activateCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "__activate <program> [args...]",
		Short:              "socket-activation shim (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			exec := a.opts.Activate
			if exec == nil {
				exec = activation.Exec
			}
			return exec(args)
		},
	}
}
