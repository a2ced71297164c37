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
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/daemonlog"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/fdhygiene"
	"github.com/corralhq/corral/internal/keeper"
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

// KeeperBackend is a Backend that can run under a keeper (internal/keeper; daemon.Manager through
// cmd/corral): it takes back what the keeper kept before it serves, tells the keeper it is ready,
// and hands over to its successor without stopping the apps.
type KeeperBackend interface {
	// RecoverFrom rebuilds the backend from the keeper's store (entries: FetchAll's result
	// without the control socket; it owns their files). recovered says that a previous daemon's
	// state was found; summary is logged as slog attributes.
	RecoverFrom(ctx context.Context, entries []keeper.Entry) (recovered bool, summary []any, err error)
	// KeeperReady sends READY to the keeper once the daemon serves.
	KeeperReady(ctx context.Context) error
	// Handover stops touching the kept descriptors and stores the final state; the daemon then
	// exits without stopping the apps.
	Handover(ctx context.Context) error
}

// plainKeeperBackend is the KeeperBackend of a backend that keeps nothing in the keeper.
type plainKeeperBackend struct{ c *keeper.Client }

func (plainKeeperBackend) RecoverFrom(context.Context, []keeper.Entry) (bool, []any, error) {
	return false, nil, nil
}

func (p plainKeeperBackend) KeeperReady(ctx context.Context) error { return p.c.Ready(ctx) }

func (plainKeeperBackend) Handover(context.Context) error {
	return errors.New("this backend cannot hand over; its apps are left to the keeper")
}

// handoverExit is the daemon's exit status after a hand-over (keeper.HandoverSignal). It is not 0,
// which would tell the keeper that the daemon shut down for good: a hand-over outside an update (a
// stray SIGUSR1) is then taken for a crash, and the keeper starts a daemon that re-adopts the apps.
const handoverExit = 3

// runDaemon is `corral daemon`: listen on the control socket, serve the
// Backend until SIGTERM/SIGINT, then stop every app and exit. With resurrect
// the saved process list is started before readiness is reported.
//
// Under a keeper ($CORRAL_KEEPER_SOCK, see `corral __keeper`) it first takes back what the keeper
// kept: the control socket's listener (so CLI connections made while no daemon ran are served
// now), and, through the backend's RecoverFrom, every app's descriptors and the process table.
// Readiness then goes to the keeper (which tells the CLI that spawned it). The death of the keeper
// stops every app as SIGTERM does; keeper.HandoverSignal (SIGUSR1) makes the daemon hand over to
// its successor and exit without stopping the apps.
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
	// corral.log is rotated by size, and repeated warnings are counted rather than written. Its
	// path was checked by daemonproc.CheckHome (ours, not a link); logs.Open never follows a link
	// another user planted.
	logf, err := daemonlog.Open(p.LogFile, !foreground)
	if err != nil {
		return err
	}
	defer logf.Close()
	var h slog.Handler = slog.NewTextHandler(logf, nil)
	if foreground {
		h = slog.NewMultiHandler(h, slog.NewTextHandler(a.stderr, nil))
	}
	throttle := daemonlog.NewThrottle(h, nil)
	defer throttle.Flush(context.Background())
	log := slog.New(throttle)
	tuneDaemonGC(log)

	// Signals first, so that a SIGTERM (or a hand-over request) during start-up is not lost.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2, keeper.HandoverSignal)
	signal.Ignore(syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The keeper, when it started this daemon.
	keeperSock, gen := os.Getenv(keeper.EnvSocket), os.Getenv(keeper.EnvGen)
	kc, err := keeper.DialEnv()
	switch {
	case errors.Is(err, keeper.ErrNoKeeper):
		kc = nil
	case err != nil:
		log.Error("daemon start failed", "err", err)
		return fmt.Errorf("daemon: %w", err)
	}
	keeperDied := make(chan struct{})
	if kc != nil {
		var once sync.Once
		stopWatch, err := keeper.OnKeeperDeath(func() { once.Do(func() { close(keeperDied) }) })
		if err != nil {
			kc.Close()
			log.Error("daemon start failed", "err", err)
			return fmt.Errorf("daemon: %w", err)
		}
		defer stopWatch()
	}
	// The apps must not see the keeper's variables (nor would a daemon they started).
	for _, v := range []string{keeper.EnvSocket, keeper.EnvPID, keeper.EnvGen} {
		os.Unsetenv(v)
	}
	var kept []keeper.Entry
	if kc != nil {
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		kept, err = kc.FetchAll(fctx)
		fcancel()
		if err != nil {
			kc.Close()
			log.Error("daemon start failed", "err", err)
			return fmt.Errorf("daemon: %w", err)
		}
	}

	ln, err := a.daemonListener(ctx, p, kc, &kept, log)
	if err != nil {
		for _, e := range kept {
			e.File.Close()
		}
		if kc != nil {
			kc.Close()
		}
		log.Error("daemon start failed", "err", err)
		return err
	}
	defer ln.Close()
	cfg := DaemonConfig{Home: p.Home, Logger: log, Self: a.self}
	if kc != nil {
		cfg.Keeper, cfg.KeeperSocket = kc, keeperSock
	}
	b, closeBackend, err := a.opts.NewBackend(cfg)
	// A first daemon that fails leaves nothing (its keeper gives up); a later one leaves the kept
	// control socket to the next.
	firstStart := kc == nil || gen == "1"
	if err != nil {
		if firstStart {
			os.Remove(p.Socket)
		}
		log.Error("daemon start failed", "err", err)
		return fmt.Errorf("daemon: %w", err)
	}
	leaveApps := false // a hand-over (or a failed recovery) exits without stopping anything
	if closeBackend != nil {
		defer func() {
			if !leaveApps {
				closeBackend()
			}
		}()
	}
	if err := daemonproc.WritePid(p.PidFile, os.Getpid()); err != nil {
		if firstStart {
			os.Remove(p.Socket)
		}
		return err
	}
	writePM2Pid(p, log)
	defer func() {
		if !leaveApps {
			removeIfOurs(p)
		}
	}()

	var kb KeeperBackend
	if kc != nil {
		var ok bool
		if kb, ok = b.(KeeperBackend); !ok {
			// A backend that keeps nothing (tests' fakes): the keeper only restarts it.
			log.Warn("this backend cannot hand its apps over: a daemon restart loses them")
			for _, e := range kept {
				e.File.Close()
			}
			kb = plainKeeperBackend{kc}
		}
		recovered, summary, err := kb.RecoverFrom(ctx, kept)
		if err != nil {
			// No READY: the keeper restarts this daemon (with backoff), or rolls an update back
			// to the binary that wrote the state; the kept state stays as it was.
			log.Error("daemon start failed: recover from the keeper", "err", err)
			leaveApps = true // they are the keeper's, for the next daemon
			return fmt.Errorf("daemon: %w", err)
		}
		if recovered {
			resurrect = false // the apps are there: a restart of the daemon, not a boot
			log.Info("recovered from the keeper", append([]any{"gen", gen}, summary...)...)
		}
		if gen != "1" {
			resurrect = false
		}
	}

	served := make(chan error, 1)
	go func() { served <- api.Serve(ctx, ln, b, Version) }()
	if resurrect {
		daemonResurrect(ctx, b, p.Home, log)
	}
	log.Info("corral daemon ready", "pid", os.Getpid(), "socket", p.Socket, "version", Version, "keeper", kc != nil)
	if err := daemonproc.SignalReady(readyFD); err != nil {
		log.Warn("readiness pingback", "err", err)
	}
	if kb != nil {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		err := kb.KeeperReady(rctx)
		rcancel()
		if err != nil {
			log.Error("keeper: ready", "err", err)
		}
	}
	trimStartupPages(log)
	if foreground {
		// Under a keeper the keeper is the service's main process (the unit's NotifyAccess=all
		// lets the daemon report readiness); without one the daemon is.
		state := "READY=1"
		if kc == nil {
			state += "\nMAINPID=" + fmt.Sprint(os.Getpid())
		}
		if _, err := systemd.Notify(state); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}

	var serveErr error
	keeperGone := false
loop:
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGUSR2:
				log.Info("SIGUSR2: reopening log files")
				if err := b.ReloadLogs(ctx); err != nil {
					log.Error("reload logs", "err", err)
				}
				continue
			case sig == keeper.HandoverSignal && kb != nil:
				log.Info("hand-over requested by the keeper: storing the state; the apps keep running")
				cancel() // stop serving the control socket; the keeper holds it for the next daemon
				if served != nil {
					<-served
				}
				hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
				err := kb.Handover(hctx)
				hcancel()
				if err != nil {
					log.Error("hand-over", "err", err)
				}
				leaveApps = true
				log.Info("corral daemon handed over", "pid", os.Getpid())
				return exitCode(handoverExit)
			case sig == keeper.HandoverSignal:
				continue // no keeper: nobody to hand over to
			}
			// Under a keeper, SIGTERM may also be its PR_SET_PDEATHSIG (keeper.DeathSignal): the
			// reason is logged once the shutdown is done (keeperDied).
			log.Info("signal received, shutting down", "signal", sig.String())
			break loop
		case <-keeperDied:
			keeperGone = true
			log.Error("the keeper died: stopping every app (without it nothing would hold their descriptors or reap them)")
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
	select {
	case <-keeperDied:
		if !keeperGone {
			log.Error("the keeper died: every app was stopped (without it nothing would hold their descriptors or reap them)")
		}
	default:
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

// daemonListener returns the control socket's listener: under a keeper the one it kept ("api"),
// if the socket file is still there, else a new one, stored in the keeper. Its Close never
// unlinks the socket file under a keeper: the keeper's copy goes on queueing connections for the
// next daemon (removeIfOurs removes the file at a real shutdown).
func (a *app) daemonListener(ctx context.Context, p daemonproc.Paths, kc *keeper.Client, kept *[]keeper.Entry, log *slog.Logger) (net.Listener, error) {
	var keptLn *os.File
	rest := (*kept)[:0]
	for _, e := range *kept {
		if e.Name == "api" {
			keptLn = e.File
			continue
		}
		rest = append(rest, e)
	}
	*kept = rest
	if keptLn != nil {
		defer keptLn.Close()
		if st, err := os.Stat(p.Socket); err == nil && st.Mode()&os.ModeSocket != 0 {
			ln, err := net.FileListener(keptLn)
			if err == nil {
				return ln, nil
			}
			log.Warn("kept control socket unusable; listening again", "err", err)
		} else {
			log.Warn("control socket file gone; listening again", "path", p.Socket)
		}
		// The kept listener no longer matches the file: make a new one. A stale pid file of
		// the previous daemon must not stop it (the keeper runs one daemon at a time).
		os.Remove(p.Socket)
	}
	ln, err := daemonproc.Listen(ctx, p)
	if err != nil {
		return nil, err
	}
	if kc != nil {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := kc.Store(sctx, "api", ln.(syscall.Conn)); err != nil {
			log.Warn("keeper: store the control socket; CLI commands made while the daemon restarts will fail", "err", err)
		}
	}
	return ln, nil
}

// removeIfOurs removes the socket and pid file if the pid file still names
// this process (a successor daemon may already own them).
func removeIfOurs(p daemonproc.Paths) {
	if pid, err := daemonproc.ReadPid(p.PidFile); err == nil && pid != os.Getpid() {
		return
	}
	os.Remove(p.Socket)
	os.Remove(p.PidFile)
	removePM2Pid(p)
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
