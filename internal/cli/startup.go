package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/internal/systemd"
	"github.com/spf13/cobra"
)

// defaultUnitDir is where `corral startup` installs the systemd unit.
const defaultUnitDir = "/etc/systemd/system"

// startupFlags are the options of startup and unstartup.
type startupFlags struct {
	user, home, serviceName, unitDir string
	printOnly                        bool
}

func (a *app) addStartupFlags(cmd *cobra.Command, f *startupFlags) {
	cmd.Flags().StringVarP(&f.user, "user", "u", "", "user the daemon runs as (default: the current user)")
	cmd.Flags().StringVar(&f.home, "hp", "", "home directory of that user; the daemon uses <hp>/.corral")
	cmd.Flags().StringVarP(&f.serviceName, "service-name", "n", "", "unit name without .service (default corral-<user>)")
	cmd.Flags().Bool("wait-ip", false, "accepted for PM2 compatibility; no effect")
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
