package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/statefile"
	"github.com/corralhq/corral/internal/systemd"
	"github.com/spf13/cobra"
)

// dumpName is the saved process list in the corral home (PM2's dump.pm2).
const dumpName = "dump.json"

// defaultUnitDir is where `corral startup` installs the systemd unit.
const defaultUnitDir = "/etc/systemd/system"

// dumpPath returns the path of the saved process list.
func (a *app) dumpPath() (string, error) {
	p, err := a.paths()
	if err != nil {
		return "", err
	}
	return filepath.Join(p.Home, dumpName), nil
}

func (a *app) saveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "save",
		Aliases: []string{"dump"},
		Short:   "save the process list, to be restored by resurrect (and at boot)",
		Args:    cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			path, err := a.dumpPath()
			if err != nil {
				return err
			}
			apps, err := b.Apps(ctx)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			fmt.Fprintln(a.stdout, "[corral] Saving current process list...")
			if err := statefile.Save(path, apps, force); err != nil {
				if errors.Is(err, statefile.ErrWouldEmpty) {
					return fmt.Errorf("save: no app is running and %s is not empty; not overwriting it (use save --force to save the empty list, or corral cleardump)", path)
				}
				return err
			}
			for _, app := range apps {
				fmt.Fprintf(a.stdout, "[corral]   %s (%s)\n", app.Name, describeApp(app))
			}
			fmt.Fprintf(a.stdout, "[corral] Successfully saved %d app%s in %s\n", len(apps), plural(len(apps)), path)
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "save even an empty list over a non-empty dump")
	return cmd
}

// describeApp summarises an app's instances and exec mode ("2 instances, cluster").
func describeApp(app appspec.App) string {
	n := max(app.Instances, 1)
	mode := app.ExecMode
	if mode == "" {
		mode = "fork"
	}
	if n == 1 {
		return "1 instance, " + mode
	}
	return fmt.Sprintf("%d instances, %s", n, mode)
}

func (a *app) cleardumpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cleardump",
		Short: "empty the saved process list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.paths()
			if err != nil {
				return err
			}
			if err := daemonproc.EnsureHome(p.Home); err != nil {
				return err
			}
			path := filepath.Join(p.Home, dumpName)
			if err := statefile.Save(path, nil, true); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Saved process list cleared (%s)\n", path)
			return nil
		},
	}
}

// resurrected is the outcome of restoring a dump into a Backend.
type resurrected struct {
	path    string
	warning string        // non-empty when the dump was unusable and its backup was read
	total   int           // apps in the dump
	started []api.Proc    // the processes started
	skipped []string      // "<name>: <why>" for apps left alone
	failed  []error       // apps that could not be started
	apps    []appspec.App // the apps that were started, in order
}

// resurrect starts every app of the dump at path that b does not already
// list by name; those are left alone. A missing dump (and backup) is an error
// wrapping fs.ErrNotExist.
func resurrect(ctx context.Context, b api.Backend, path string) (resurrected, error) {
	res := resurrected{path: path}
	apps, warning, err := statefile.Load(path)
	if err != nil {
		return res, err
	}
	res.warning, res.total = warning, len(apps)
	procs, err := b.List(ctx)
	if err != nil {
		return res, err
	}
	status := map[string]string{}
	for _, p := range procs {
		if _, ok := status[p.Name]; !ok || p.Status == "online" {
			status[p.Name] = p.Status
		}
	}
	done := map[string]bool{}
	for _, app := range apps {
		switch st, exists := status[app.Name]; {
		case exists:
			res.skipped = append(res.skipped, fmt.Sprintf("%s: already in the process list (%s), left alone", app.Name, st))
			continue
		case done[app.Name]:
			res.skipped = append(res.skipped, fmt.Sprintf("%s: listed twice in the dump, started once", app.Name))
			continue
		}
		done[app.Name] = true
		ps, err := b.Start(ctx, []appspec.App{app}, api.StartOptions{})
		if err != nil {
			res.failed = append(res.failed, fmt.Errorf("%s: %w", app.Name, err))
			continue
		}
		res.started = append(res.started, ps...)
		res.apps = append(res.apps, app)
	}
	return res, nil
}

// err summarises the apps that failed to start, or nil.
func (r resurrected) err() error {
	if len(r.failed) == 0 {
		return nil
	}
	return fmt.Errorf("resurrect %s: %d of %d app%s failed to start: %w", r.path, len(r.failed), r.total, plural(r.total), errors.Join(r.failed...))
}

func (a *app) resurrectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resurrect",
		Short: "start the apps of the saved process list",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			path, err := a.dumpPath()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Restoring processes from %s\n", path)
			res, err := resurrect(ctx, b, path)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(a.stdout, "[corral] Nothing to restore: no saved process list (%s); run corral save first\n", path)
				return nil
			}
			if err != nil {
				return err
			}
			if res.warning != "" {
				fmt.Fprintf(a.stderr, "[corral] warning: %s\n", res.warning)
			}
			for _, s := range res.skipped {
				fmt.Fprintf(a.stdout, "[corral] %s\n", s)
			}
			for _, app := range res.apps {
				fmt.Fprintf(a.stdout, "[corral] Restored %s (%s)\n", app.Name, describeApp(app))
			}
			if err := a.report(ctx, b, "resurrect", res.started, nil); err != nil {
				return err
			}
			return res.err()
		}),
	}
}

// daemonResurrect restores the dump inside the daemon (daemon --resurrect),
// logging the outcome; a missing dump is not an error.
func daemonResurrect(ctx context.Context, b api.Backend, home string, log *slog.Logger) {
	path := filepath.Join(home, dumpName)
	res, err := resurrect(ctx, b, path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Info("resurrect: no saved process list", "path", path)
		return
	case err != nil:
		log.Error("resurrect", "err", err)
		return
	}
	if res.warning != "" {
		log.Warn("resurrect: " + res.warning)
	}
	for _, s := range res.skipped {
		log.Info("resurrect: " + s)
	}
	for _, e := range res.failed {
		log.Error("resurrect: start failed", "err", e)
	}
	log.Info("resurrect: done", "path", path, "apps", res.total, "started", len(res.apps), "processes", len(res.started))
}

// startupFlags are the options of startup and unstartup.
type startupFlags struct {
	user, home, serviceName, unitDir string
	printOnly                        bool
}

func (a *app) addStartupFlags(cmd *cobra.Command, f *startupFlags) {
	cmd.Flags().StringVarP(&f.user, "user", "u", "", "user the daemon runs as (default: the current user)")
	cmd.Flags().StringVar(&f.home, "hp", "", "home directory of that user; the daemon uses <hp>/.corral")
	cmd.Flags().StringVar(&f.serviceName, "service-name", "", "unit name without .service (default corral-<user>)")
	cmd.Flags().StringVar(&f.unitDir, "unit-dir", defaultUnitDir, "directory of system units")
	cmd.Flags().MarkHidden("unit-dir")
	cmd.Flags().BoolVar(&f.printOnly, "print-only", false, "print what would be done; change nothing")
	cmd.Flags().BoolVar(&f.printOnly, "dry-run", false, "alias of --print-only")
}

// startupPlatform checks the init system argument; only systemd is supported.
func startupPlatform(cmd string, args []string) error {
	if len(args) == 0 || args[0] == "systemd" {
		return nil
	}
	return fmt.Errorf("%s %s: init system not supported (only systemd)", cmd, args[0])
}

// unitOptions builds the unit description from the flags and this process.
func (a *app) unitOptions(f *startupFlags) (systemd.UnitOptions, error) {
	o := systemd.UnitOptions{ServiceName: f.serviceName, User: f.user, Path: a.getenv("PATH")}
	if a.self == "" {
		return o, errors.New("startup: cannot find the corral binary")
	}
	bin, err := filepath.Abs(a.self)
	if err != nil {
		return o, fmt.Errorf("startup: corral binary %s: %w", a.self, err)
	}
	o.Binary = bin
	if o.User == "" {
		if u, err := user.Current(); err == nil {
			o.User = u.Username
		}
	}
	switch {
	case f.home != "":
		o.Home = filepath.Join(a.abs(f.home), ".corral")
	case f.user != "" && !isCurrentUser(f.user):
		u, err := user.Lookup(f.user)
		if err != nil {
			return o, fmt.Errorf("startup: user %s: %w (give its home with --hp)", f.user, err)
		}
		o.Home = filepath.Join(u.HomeDir, ".corral")
	default:
		p, err := a.paths()
		if err != nil {
			return o, err
		}
		o.Home = p.Home
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("startup: %w", err)
	}
	return o, nil
}

func isCurrentUser(name string) bool {
	u, err := user.Current()
	return err == nil && u.Username == name
}

func (a *app) startupCommand() *cobra.Command {
	f := &startupFlags{}
	cmd := &cobra.Command{
		Use:   "startup [systemd]",
		Short: "run the daemon at boot (systemd) and resurrect the saved process list",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := startupPlatform("startup", args); err != nil {
				return err
			}
			o, err := a.unitOptions(f)
			if err != nil {
				return err
			}
			unit := systemd.Unit(o)
			unitPath := filepath.Join(f.unitDir, o.Name())
			if f.printOnly || os.Geteuid() != 0 {
				fmt.Fprintf(a.stdout, "[corral] systemd unit %s:\n\n%s\n", unitPath, unit)
				a.printInstallHelp(o, unitPath, f.printOnly)
				return nil
			}
			if _, err := exec.LookPath("systemctl"); err != nil {
				return fmt.Errorf("startup: systemctl not found on $PATH (is this a systemd system?); nothing was written")
			}
			fmt.Fprintf(a.stdout, "[corral] Writing %s\n", unitPath)
			if err := systemd.Install(cmd.Context(), unitPath, unit, systemd.ExecRunner); err != nil {
				return fmt.Errorf("startup: %w", err)
			}
			fmt.Fprintf(a.stdout, "[corral] %s enabled: at boot it resurrects the apps saved in %s\n", o.Name(), filepath.Join(o.Home, dumpName))
			fmt.Fprintf(a.stdout, "[corral] Save your apps with `corral save`; start the service now with `systemctl start %s`\n", o.Name())
			return nil
		},
	}
	a.addStartupFlags(cmd, f)
	return cmd
}

// printInstallHelp prints how to install the unit by hand or as root.
func (a *app) printInstallHelp(o systemd.UnitOptions, unitPath string, printOnly bool) {
	if !printOnly {
		fmt.Fprintln(a.stdout, "[corral] To install it, run this as root:")
		args := []string{"sudo", "env", "PATH=" + o.Path, "CORRAL_HOME=" + o.Home, o.Binary, "startup", "systemd"}
		if o.User != "" {
			args = append(args, "-u", o.User)
		}
		args = append(args, "--service-name", strings.TrimSuffix(o.Name(), ".service"))
		fmt.Fprintf(a.stdout, "%s\n\n", shellJoin(args))
	}
	fmt.Fprintln(a.stdout, "[corral] To install it by hand, as root:")
	fmt.Fprintf(a.stdout, "  write the unit above to %s\n", shellQuote(unitPath))
	fmt.Fprintln(a.stdout, "  systemctl daemon-reload")
	fmt.Fprintf(a.stdout, "  systemctl enable %s\n", shellQuote(o.Name()))
}

func (a *app) unstartupCommand() *cobra.Command {
	f := &startupFlags{}
	cmd := &cobra.Command{
		Use:   "unstartup [systemd]",
		Short: "remove the boot service installed by startup",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := startupPlatform("unstartup", args); err != nil {
				return err
			}
			o := systemd.UnitOptions{ServiceName: f.serviceName, User: f.user}
			if o.User == "" {
				if u, err := user.Current(); err == nil {
					o.User = u.Username
				}
			}
			o.Binary = "/" // only the name matters here
			if err := o.Validate(); err != nil {
				return fmt.Errorf("unstartup: %w", err)
			}
			unitPath := filepath.Join(f.unitDir, o.Name())
			if f.printOnly || os.Geteuid() != 0 {
				if !f.printOnly {
					fmt.Fprintln(a.stdout, "[corral] To remove the service, run this as root:")
					fmt.Fprintf(a.stdout, "%s\n\n", shellJoin([]string{"sudo", a.self, "unstartup", "systemd", "--service-name", strings.TrimSuffix(o.Name(), ".service")}))
				}
				fmt.Fprintln(a.stdout, "[corral] To remove it by hand, as root:")
				fmt.Fprintf(a.stdout, "  systemctl disable %s\n  rm %s\n  systemctl daemon-reload\n", shellQuote(o.Name()), shellQuote(unitPath))
				return nil
			}
			if _, err := os.Stat(unitPath); err != nil {
				return fmt.Errorf("unstartup: no unit %s: %w", unitPath, errors.Unwrap(err))
			}
			if _, err := exec.LookPath("systemctl"); err != nil {
				return fmt.Errorf("unstartup: systemctl not found on $PATH (is this a systemd system?); nothing was removed")
			}
			if err := systemd.Uninstall(cmd.Context(), unitPath, systemd.ExecRunner); err != nil {
				return fmt.Errorf("unstartup: %w", err)
			}
			fmt.Fprintf(a.stdout, "[corral] %s disabled and %s removed\n", o.Name(), unitPath)
			return nil
		},
	}
	a.addStartupFlags(cmd, f)
	cmd.Flags().MarkHidden("hp")
	return cmd
}

// shellQuote quotes s for a POSIX shell when needed.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes and joins a command line.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, s := range args {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}
