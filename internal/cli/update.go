// The keeper's command line: `corral __keeper` (hidden) is the small, long-lived process that
// starts the daemon and keeps what the apps depend on while the daemon dies or is replaced
// (internal/keeper, docs/keeper.md); `corral update` replaces the daemon by the binary now on disk
// without restarting any app (PM2's `pm2 update`), rolling back if the new daemon does not come up.

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/spf13/cobra"
)

func (a *app) keeperCommand() *cobra.Command {
	var foreground, noDaemon, resurrect bool
	cmd := &cobra.Command{
		Use:    "__keeper",
		Short:  "run the keeper, which runs the daemon (started automatically by the other commands)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runKeeper(cmd.Context(), foreground || noDaemon, resurrect)
		},
	}
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run the daemon attached (for systemd)")
	cmd.Flags().BoolVar(&noDaemon, "no-daemon", false, "alias of --foreground")
	cmd.Flags().BoolVar(&resurrect, "resurrect", false, "the first daemon starts the saved process list")
	return cmd
}

// runKeeper is `corral __keeper`: it runs keeper.Run with `corral daemon` as the daemon, until
// SIGTERM/SIGINT (it then stops the daemon, which stops the apps) or until the daemon shuts down
// for good (`corral kill`). The readiness pipe of daemonproc.Spawn is written when the first daemon
// reports READY; if that daemon exits first, the keeper gives up and exits 1, so that the CLI
// that spawned it reports the failure.
func (a *app) runKeeper(ctx context.Context, foreground, resurrect bool) error {
	readyFD := daemonproc.TakeReadyFD() // close-on-exec now: keeper.Run keeps it
	var ready *os.File
	if readyFD >= 0 {
		ready = os.NewFile(uintptr(readyFD), "ready-pipe")
	}
	p, err := a.paths()
	if err != nil {
		return err
	}
	if err := daemonproc.EnsureHome(p.Home); err != nil {
		return err
	}
	if a.self == "" {
		return errors.New("keeper: cannot find the corral binary")
	}
	self, err := filepath.Abs(a.self)
	if err != nil {
		return fmt.Errorf("keeper: corral binary %s: %w", a.self, err)
	}
	argv := []string{self, "daemon"}
	if foreground {
		argv = append(argv, "--foreground")
	}
	if resurrect {
		argv = append(argv, "--resurrect")
	}
	log := slog.New(slog.NewTextHandler(a.stderr, nil)).With("keeper", os.Getpid())
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	signal.Ignore(syscall.SIGHUP)
	if err := daemonproc.WritePid(p.KeeperPidFile, os.Getpid()); err != nil {
		return err
	}
	defer func() {
		if pid, err := daemonproc.ReadPid(p.KeeperPidFile); err == nil && pid == os.Getpid() {
			os.Remove(p.KeeperPidFile)
		}
	}()
	err = keeper.Run(ctx, keeper.Config{
		Dir:               p.Home,
		Daemon:            argv,
		ReadyFile:         ready,
		GiveUpBeforeReady: true,
		Logger:            log,
	})
	if err != nil {
		log.Error("keeper exits", "err", err)
		return err
	}
	return nil
}

// updateReadyTimeout is how long a new daemon has to recover and report READY by default.
const updateReadyTimeout = 30 * time.Second

func (a *app) updateCommand() *cobra.Command {
	var binary string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "update",
		Aliases: []string{"updatePM2"}, // PM2's other spelling
		Short:   "replace the daemon by the corral binary now on disk; apps keep running (rolled back on failure)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runUpdate(cmd.Context(), binary, timeout)
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "", "the corral binary to run as the daemon (default: this one)")
	cmd.Flags().DurationVar(&timeout, "timeout", updateReadyTimeout, "how long the new daemon has to come up before the update is rolled back")
	return cmd
}

// runUpdate asks the keeper to replace the daemon (keeper.Client.Update): the daemon hands over
// (it stores its state and exits, the apps keep running and keep their descriptors in the
// keeper), the new binary starts, recovers every app and reports READY; if it does not within
// timeout, the keeper starts the previous binary again, which recovers the same way.
func (a *app) runUpdate(ctx context.Context, binary string, timeout time.Duration) error {
	if a.opts.Backend != nil {
		return errors.New("update: no daemon to update")
	}
	p, err := a.paths()
	if err != nil {
		return err
	}
	if binary == "" {
		binary = a.self
	}
	if binary == "" {
		return errors.New("update: cannot find the corral binary")
	}
	bin, err := filepath.Abs(binary)
	if err != nil {
		return fmt.Errorf("update: %s: %w", binary, err)
	}
	version, err := binaryVersion(ctx, bin)
	if err != nil {
		return fmt.Errorf("update: %s does not run: %w; the daemon was not touched", bin, err)
	}
	kc, err := keeper.Dial(filepath.Join(p.Home, keeper.SocketName))
	if err != nil {
		if pid, perr := daemonproc.ReadPid(p.PidFile); perr == nil && daemonproc.Alive(pid) {
			return fmt.Errorf("update: the daemon (pid %d) runs without a keeper (started by an older corral, or with %s=0): "+
				"update it with `corral save && corral kill && corral resurrect`, which restarts the apps", pid, daemonproc.EnvKeeper)
		}
		fmt.Fprintln(a.stdout, "[corral] daemon not running; nothing to update (the next command starts "+bin+")")
		return nil
	}
	defer kc.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := kc.Ping(pctx)
	pcancel()
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	argv := []string{bin, "daemon"}
	if st.DaemonPID > 0 {
		if old, err := cmdline(st.DaemonPID); err == nil && len(old) > 1 {
			argv = argv[:1]
			for _, arg := range old[1:] {
				if arg != "--resurrect" { // the apps are there; a restart of the daemon never resurrects
					argv = append(argv, arg)
				}
			}
		}
	}
	fmt.Fprintf(a.stdout, "[corral] Updating the daemon (pid %d) to %s (version %s); apps keep running\n", st.DaemonPID, bin, version)
	uctx, ucancel := context.WithTimeout(ctx, timeout+time.Minute) // the hand-over, then the start
	defer ucancel()
	pid, err := kc.Update(uctx, argv, timeout)
	if err != nil {
		if errors.Is(err, keeper.ErrUpdateFailed) {
			// The keeper has started the previous binary again; it recovers like after a crash.
			if pid, werr := waitDaemonReady(uctx, kc, st.DaemonPID); werr == nil {
				fmt.Fprintf(a.stdout, "[corral] rolled back: the previous daemon runs again (pid %d); no app was restarted\n", pid)
			}
			return fmt.Errorf("update failed, the previous daemon was started again (no app was restarted): %w", err)
		}
		return fmt.Errorf("update: %w", err)
	}
	fmt.Fprintf(a.stdout, "[corral] daemon updated: pid %d, version %s\n", pid, version)
	return nil
}

// waitDaemonReady waits until a daemon other than old has reported READY to the keeper.
func waitDaemonReady(ctx context.Context, kc *keeper.Client, old int) (int, error) {
	for {
		st, err := kc.Ping(ctx)
		if err != nil {
			return 0, err
		}
		if st.DaemonReady && st.DaemonPID != 0 && st.DaemonPID != old {
			return st.DaemonPID, nil
		}
		select { // the keeper has no event for this; the wait is bounded by ctx
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// binaryVersion runs `bin --version` and returns what it prints.
func binaryVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = append(os.Environ(), daemonproc.EnvHome+"=/nonexistent") // it must not touch any home
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(out))
	if v == "" || strings.ContainsAny(v, "\n") {
		return "", fmt.Errorf("unexpected --version output %q", out)
	}
	return v, nil
}

// cmdline returns the arguments of process pid.
func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00"), nil
}
