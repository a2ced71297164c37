// Package cli is the corral command line: PM2's commands, aliases and flags,
// written against api.Backend. Commands other than `daemon` talk to the
// daemon over its control socket, starting it first when it is not running.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/version"
	"github.com/spf13/cobra"
)

// Version is the corral version printed by --version: internal/version's, which a build sets
// (-ldflags "-X github.com/corralhq/corral/internal/version.Version=..."). Tests may change it.
var Version = version.Version

// DaemonConfig is what Options.NewBackend receives to build the daemon.
type DaemonConfig struct {
	Home   string       // the corral home (state directory)
	Logger *slog.Logger // the daemon's log (corral.log)
	Self   string       // path of the corral binary, for the __activate shim
	// Keeper is the connection to the keeper that started the daemon, nil without one; the
	// backend owns it (and must implement KeeperBackend). KeeperSocket is the keeper's socket.
	Keeper       *keeper.Client
	KeeperSocket string
}

// NewBackendFunc builds the daemon's process manager; close releases it after
// Shutdown.
type NewBackendFunc func(cfg DaemonConfig) (b api.Backend, close func(), err error)

// Options configure Run. Zero fields mean the real process's.
type Options struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Environ        []string // the CLI's environment (os.Environ())
	Dir            string   // the CLI's working directory
	Self           string   // the corral binary (os.Executable())
	// Backend, when set, is used instead of the daemon; for tests.
	Backend api.Backend
	// NewBackend builds the process manager `corral daemon` serves. Without
	// it `corral daemon` fails.
	NewBackend NewBackendFunc
	// Activate is the `corral __activate` shim (activation.Exec); it returns
	// only on error.
	Activate func(args []string) error
	// Runtime runs `corral runtime` (container mode); without it that command
	// fails.
	Runtime RuntimeFunc
}

// Main runs the command line args (os.Args) with the real process
// environment and returns the exit code.
func Main(args []string, o Options) int {
	return Run(context.Background(), args, o)
}

// Run runs the command line args (args[0] is the program name) and returns
// the exit code: 0, or 1 after printing "[corral] <message>" to stderr.
func Run(ctx context.Context, args []string, o Options) int {
	a, err := newApp(o)
	if err != nil {
		fmt.Fprintf(o.Stderr, "[corral] %v\n", err)
		return 1
	}
	defer a.close()
	if len(args) > 0 {
		args = args[1:]
	}
	root := a.fastCommand(args) // fastpath.go: ls or jlist alone, without the whole tree
	if root == nil {
		root = a.rootCommand()
		root.SetArgs(preprocess(args))
	}
	if err := root.ExecuteContext(ctx); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(a.stderr, "[corral] %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

// exitCode is an error that only sets the exit status (the message was
// already printed).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// app holds what every command needs.
type app struct {
	opts           Options
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	dir            string
	self           string
	client         *api.Client
	stdinData      []byte   // standard input, once read (an ecosystem given as "-")
	warned         []string // warnings already printed
}

func newApp(o Options) (*app, error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		}
		o.Dir = wd
	}
	if o.Self == "" {
		if exe, err := os.Executable(); err == nil {
			o.Self = exe
		}
	}
	return &app{opts: o, stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr, environ: o.Environ, dir: o.Dir, self: o.Self}, nil
}

func (a *app) close() {
	if a.client != nil {
		a.client.Close()
	}
}

// getenv looks a variable up in the CLI's environment.
func (a *app) getenv(key string) string {
	for i := len(a.environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(a.environ[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// envMap returns the CLI's environment as a map.
func (a *app) envMap() map[string]string {
	m := make(map[string]string, len(a.environ))
	for _, kv := range a.environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// paths returns the file layout of the corral home, refusing one that is not the user's
// (daemonproc.CheckHome).
func (a *app) paths() (daemonproc.Paths, error) {
	home := a.getenv(daemonproc.EnvHome)
	if home == "" {
		home = a.getenv(daemonproc.EnvPM2Home) // PM2 users' scripts set PM2_HOME
	}
	if home == "" {
		u := a.getenv("HOME")
		if u == "" {
			var err error
			if u, err = os.UserHomeDir(); err != nil {
				return daemonproc.Paths{}, fmt.Errorf("find the corral home: %w (set %s)", err, daemonproc.EnvHome)
			}
		}
		home = filepath.Join(u, ".corral")
	}
	if !filepath.IsAbs(home) {
		home = filepath.Join(a.dir, home)
	}
	p := daemonproc.PathsFor(filepath.Clean(home))
	// Another user's home is refused before anything is read from it or sent to its socket.
	if err := daemonproc.CheckHome(p); err != nil {
		return daemonproc.Paths{}, err
	}
	return p, nil
}

// backend returns the daemon, starting it if needed.
func (a *app) backend(ctx context.Context) (api.Backend, error) {
	if a.opts.Backend != nil {
		return a.opts.Backend, nil
	}
	if a.client != nil {
		return a.client, nil
	}
	p, err := a.paths()
	if err != nil {
		return nil, err
	}
	if a.self == "" {
		return nil, errors.New("cannot find the corral binary to start the daemon")
	}
	c, err := daemonproc.Ensure(ctx, p, a.self, a.environ)
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// withBackend returns a cobra RunE that connects to the backend (starting
// the daemon if needed) and then runs f with the command's context.
func (a *app) withBackend(f func(ctx context.Context, b api.Backend, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		b, err := a.backend(ctx)
		if err != nil {
			return err
		}
		return f(ctx, b, args)
	}
}

// withProcs returns a cobra RunE that lists the processes of the backend and
// then runs f with them.
func (a *app) withProcs(f func(procs []api.Proc, args []string) error) func(*cobra.Command, []string) error {
	return a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
		procs, err := b.List(ctx)
		if err != nil {
			return err
		}
		return f(procs, args)
	})
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "corral",
		Short:         "corral runs and supervises apps; a drop-in for PM2",
		Version:       Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	addNoopFlags(root)
	a.addSilentFlag(root)
	root.RunE = a.usageWithoutCommand
	root.AddCommand(a.pm2ioCommands()...)
	root.AddCommand(a.serveCommand(), a.serveRunCommand(), a.sendCommand(), a.attachCommand(), a.idCommand(), a.envCommand())
	root.AddCommand(a.setCommand(), a.multisetCommand(), a.unsetCommand(), a.getCommand("get"), a.getCommand("conf"))
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see corral %s --help)", c.Name(), err, c.Name())
	})
	root.AddCommand(
		a.startCommand(),
		a.stopCommand(),
		a.restartCommand("restart"),
		a.restartCommand("reload"),
		a.deleteCommand(),
		a.scaleCommand(),
		a.listCommand(),
		a.jlistCommand(),
		a.prettylistCommand(),
		a.showCommand(),
		a.logsCommand(),
		a.eventsCommand(),
		a.monitCommand(),
		a.webCommand(),
		a.flushCommand(),
		a.reloadLogsCommand(),
		a.sendSignalCommand(),
		a.pidCommand(),
		a.resetCommand(),
		a.pingCommand(),
		a.killCommand(),
		a.startOrCommand("startOrRestart"),
		a.startOrCommand("startOrReload"),
		a.startOrCommand("startOrGracefulReload"),
		a.initCommand(),
		a.daemonCommand(),
		a.keeperCommand(),
		a.updateCommand(),
		a.activateCommand(),
		a.saveCommand(),
		a.resurrectCommand(),
		a.cleardumpCommand(),
		a.startupCommand(),
		a.unstartupCommand(),
		a.runtimeCommand(),
		a.importPM2Command(),
	)
	return root
}

// preprocess rewrites PM2 spellings pflag cannot parse: "-x fork" style
// exec modes (PM2's -x alone means fork).
func preprocess(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if a == "-x" && i+1 < len(args) {
			switch args[i+1] {
			case "fork", "cluster", "fork_mode", "cluster_mode":
				out = append(out, "--exec-mode="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}
