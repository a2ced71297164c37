package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/ecosystem"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// resolveTargets expands the targets of stop/restart/...: ecosystem files
// become the names of their apps, /regex/ the names that match; ids, names,
// namespaces and "all" go to the daemon as they are.
func (a *app) resolveTargets(ctx context.Context, b api.Backend, targets []string, only string) ([]string, error) {
	if len(targets) == 0 {
		return nil, errors.New("no process given (use an id, a name, a namespace or all)")
	}
	var out []string
	var procs []api.Proc
	for _, t := range targets {
		switch {
		case isConfigArg(t):
			apps, err := a.loadEcosystem(t, only, "")
			if err != nil {
				return nil, err
			}
			for _, app := range apps {
				out = append(out, app.Name)
			}
		case len(t) > 2 && strings.HasPrefix(t, "/") && strings.HasSuffix(t, "/"):
			re, err := regexp.Compile(t[1 : len(t)-1])
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", t, err)
			}
			if procs == nil {
				if procs, err = b.List(ctx); err != nil {
					return nil, err
				}
			}
			n := len(out)
			for _, p := range procs {
				if re.MatchString(p.Name) && !slices.Contains(out, p.Name) {
					out = append(out, p.Name)
				}
			}
			if len(out) == n {
				return nil, api.UnknownTargetError(t)
			}
		default:
			out = append(out, t)
		}
	}
	return slices.Compact(out), nil
}

// report prints one confirmation line per process, the notes, then the table.
func (a *app) report(ctx context.Context, b api.Backend, _ string, procs []api.Proc, notes []string) error {
	for _, p := range procs {
		fmt.Fprintf(a.stdout, "[corral] [%s](%d) ✓\n", p.Name, p.PMID)
		notes = append(notes, p.Notes...)
	}
	seen := map[string]bool{}
	for _, n := range notes {
		if !seen[n] {
			seen[n] = true
			fmt.Fprintf(a.stdout, "[corral] note: %s\n", n)
		}
	}
	all, err := b.List(ctx)
	if err != nil {
		return err
	}
	writeList(a.stdout, all, time.Now())
	return nil
}

// targetsCommand builds stop, delete and reset.
func (a *app) targetsCommand(use, short string, aliases []string, verb string, f func(api.Backend) func(context.Context, []string) ([]api.Proc, error)) *cobra.Command {
	var only string
	cmd := &cobra.Command{
		Use:     use + " <id|name|namespace|all|/regex/|ecosystem file>...",
		Aliases: aliases,
		Short:   short,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			targets, err := a.resolveTargets(ctx, b, args, only)
			if err != nil {
				return err
			}
			procs, err := f(b)(ctx, targets)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] %s %s\n", verb, strings.Join(targets, " "))
			return a.report(ctx, b, verb, procs, nil)
		}),
	}
	cmd.Flags().StringVar(&only, "only", "", "with an ecosystem file: only these apps (a,b)")
	cmd.Flags().Bool("watch", false, "accepted for PM2 compatibility")
	return cmd
}

func (a *app) stopCommand() *cobra.Command {
	return a.targetsCommand("stop", "stop processes (they stay in the list)", nil, "Applying action stopProcessId on", func(b api.Backend) func(context.Context, []string) ([]api.Proc, error) { return b.Stop })
}

func (a *app) deleteCommand() *cobra.Command {
	return a.targetsCommand("delete", "stop and remove processes", []string{"del"}, "Applying action deleteProcessId on", func(b api.Backend) func(context.Context, []string) ([]api.Proc, error) { return b.Delete })
}

func (a *app) resetCommand() *cobra.Command {
	return a.targetsCommand("reset", "reset restart counters", nil, "Resetting meta for", func(b api.Backend) func(context.Context, []string) ([]api.Proc, error) { return b.Reset })
}

// restartCommand builds restart and reload. Besides --update-env, --env and
// --only they take every option flag of start except --name (PM2's rule: a
// new option value replaces the app's and sticks); see restartWithOptions.
func (a *app) restartCommand(name string) *cobra.Command {
	f := &startFlags{}
	short := "restart processes (stop then start)"
	if name == "reload" {
		short = "reload processes with zero downtime (rolling)"
	}
	cmd := &cobra.Command{
		Use:   name + " <id|name|namespace|all|/regex/|ecosystem file>... [option flags of start]",
		Short: short,
	}
	cmd.RunE = a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
		if opts := changedOptions(cmd.Flags()); len(opts) > 0 {
			return a.restartWithOptions(ctx, b, cmd.Flags(), f, name, args, opts)
		}
		op := b.Restart
		if name == "reload" {
			op = b.Reload
		}
		// Ecosystem files: restart each app with the file's env over its frozen one.
		var rest []string
		var procs []api.Proc
		var notes []string
		for _, t := range args {
			if !isConfigArg(t) {
				rest = append(rest, t)
				continue
			}
			ps, err := a.applyEcosystem(ctx, b, t, f.only, f.env, f.updateEnv, name, false)
			if err != nil {
				return err
			}
			procs = append(procs, ps...)
		}
		if len(rest) > 0 || len(args) == 0 {
			targets, err := a.resolveTargets(ctx, b, rest, f.only)
			if err != nil {
				return err
			}
			ps, err := op(ctx, targets, api.RestartOptions{UpdateEnv: f.updateEnv, Env: a.envMapIf(f.updateEnv), Notes: &notes})
			if err != nil {
				return err
			}
			procs = append(procs, ps...)
		}
		return a.report(ctx, b, name, procs, notes)
	})
	fs := cmd.Flags()
	a.addStartFlags(fs, f)
	fs.Lookup("name").Hidden = true // an app cannot be renamed by restart
	fs.Lookup("force").Usage = "accepted for PM2 compatibility"
	fs.Lookup("update-env").Usage = "refresh the environment from this shell"
	fs.Lookup("env").Usage = "with an ecosystem file: apply env_<name>"
	fs.Lookup("only").Usage = "with an ecosystem file: only these apps (a,b)"
	fs.Int("parallel", 0, "accepted for PM2 compatibility")
	return cmd
}

// notOptions are the restart/reload flags that do not change an app's definition.
var notOptions = map[string]bool{"force": true, "update-env": true, "env": true, "only": true, "parallel": true, "help": true}

// changedOptions returns the (canonical) names of the option flags set on the
// command line of restart or reload.
func changedOptions(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(fl *pflag.Flag) {
		if !notOptions[fl.Name] {
			out = append(out, fl.Name)
		}
	})
	return out
}

// restartWithOptions is restart/reload with option flags: every app the
// targets name gets its current definition with the changed options applied,
// and is started again with it (a redefinition, which restarts even on
// reload). Every app is checked before any is touched.
func (a *app) restartWithOptions(ctx context.Context, b api.Backend, fs *pflag.FlagSet, f *startFlags, verb string, args, opts []string) error {
	if slices.Contains(opts, "name") {
		return fmt.Errorf("%s: --name cannot be changed by %s (delete the app and start it again)", verb, verb)
	}
	for _, t := range args {
		if isConfigArg(t) {
			return fmt.Errorf("%s %s: option flags (--%s) do not apply to an ecosystem file; edit the file instead", verb, t, opts[0])
		}
	}
	targets, err := a.resolveTargets(ctx, b, args, f.only)
	if err != nil {
		return err
	}
	procs, err := b.List(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, t := range targets {
		ps := matchProcs(procs, t)
		if len(ps) == 0 {
			return api.UnknownTargetError(t)
		}
		for _, p := range ps {
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	current, err := b.Apps(ctx)
	if err != nil {
		return err
	}
	var apps []appspec.App
	var errs []error
	for _, n := range names {
		i := slices.IndexFunc(current, func(app appspec.App) bool { return app.Name == n })
		if i < 0 {
			return api.UnknownTargetError(n)
		}
		app := current[i]
		if fs.Changed("cwd") {
			app.Cwd = a.abs(f.cwd)
			if st, err := os.Stat(app.Cwd); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("--cwd %s: not a directory", f.cwd))
				continue
			}
		}
		if app.Script == app.Name {
			// The daemon takes a bare name as "restart as defined"; name the program by its path.
			if p, err := exec.LookPath(app.Script); err == nil {
				app.Script = p
			}
		}
		if e := a.applyOptionFlags(fs, f, &app); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if f.updateEnv {
			app.ShellEnv = a.envMap()
		}
		if err := app.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("app %s: %w", app.Name, err))
			continue
		}
		apps = append(apps, app)
	}
	if err := errors.Join(dedupErrors(errs)...); err != nil {
		return err
	}
	var notes []string
	if verb == "reload" {
		notes = append(notes, "reload with changed options restarts "+strings.Join(names, ", ")+" (a new definition cannot be reloaded with zero downtime)")
	}
	started, err := b.Start(ctx, apps, api.StartOptions{Force: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "[corral] Applying action restartProcessId on app [%s] with new options: --%s\n", strings.Join(names, ", "), strings.Join(opts, " --"))
	return a.report(ctx, b, verb, started, notes)
}

// dedupErrors drops errors whose text repeats an earlier one (the same bad
// flag reported for each app).
func dedupErrors(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return out
}

// applyEcosystem applies an ecosystem file to the apps that exist: mode
// "start" starts them again with the file's (possibly changed) definition,
// "restart" and "reload" restart or reload them. Either way the app's own
// variables become the file's env read again (with env_<envName>), over the
// shell environment the app was started from — or over this shell's with
// --update-env — PM2's rule. With startMissing the apps that do not exist are
// started; otherwise they are an unknown-target error.
func (a *app) applyEcosystem(ctx context.Context, b api.Backend, path, only, envName string, updateEnv bool,
	mode string, startMissing bool) ([]api.Proc, error) {
	apps, err := a.loadEcosystem(path, only, envName)
	if err != nil {
		return nil, err
	}
	current, err := b.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Proc
	var missing, existing []appspec.App
	for _, app := range apps {
		i := slices.IndexFunc(current, func(p api.Proc) bool { return p.Name == app.Name })
		if i < 0 {
			missing = append(missing, app)
			continue
		}
		// Without --update-env the app keeps the shell environment it has; an app
		// saved in the older merged form (no ShellEnv) keeps its whole environment
		// as its shell environment, under the file's env.
		if !updateEnv {
			shell := current[i].App.ShellEnv
			if shell == nil {
				shell = current[i].App.Env
			}
			app.ShellEnv = maps.Clone(shell)
			if app.ShellEnv == nil {
				app.ShellEnv = map[string]string{}
			}
		}
		existing = append(existing, app)
	}
	if len(missing) > 0 && !startMissing {
		names := make([]string, len(missing))
		for i, m := range missing {
			names[i] = m.Name
		}
		return nil, fmt.Errorf("%w: %s", api.ErrUnknownTarget, strings.Join(names, ", "))
	}
	switch {
	case len(existing) == 0:
	case mode == "start":
		ps, err := b.Start(ctx, existing, api.StartOptions{Force: true})
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	default:
		op := b.Restart
		if mode == "reload" {
			op = b.Reload
		}
		for _, app := range existing {
			var notes []string
			opts := api.RestartOptions{AppEnv: app.Env, Notes: &notes}
			if updateEnv {
				opts.UpdateEnv, opts.Env = true, app.ShellEnv
			}
			ps, err := op(ctx, []string{app.Name}, opts)
			if err != nil {
				return nil, err
			}
			for i := range ps {
				ps[i].Notes = append(ps[i].Notes, notes...)
			}
			out = append(out, ps...)
		}
	}
	if len(missing) > 0 {
		ps, err := b.Start(ctx, missing, api.StartOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (a *app) startOrCommand(name string) *cobra.Command {
	var updateEnv bool
	var envName, only string
	cmd := &cobra.Command{
		Use:   name + " <ecosystem file>",
		Short: "start the apps of an ecosystem file, " + map[bool]string{true: "restart", false: "reload"}[name == "startOrRestart"] + " those already running",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !isConfigArg(args[0]) {
				return fmt.Errorf("%s: %s is not an ecosystem file (.config.js, .json, .yaml)", name, args[0])
			}
			return a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
				mode := "restart"
				if name != "startOrRestart" {
					mode = "reload"
				}
				procs, err := a.applyEcosystem(ctx, b, args[0], only, envName, updateEnv, mode, true)
				if err != nil {
					return err
				}
				return a.report(ctx, b, name, procs, nil)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&updateEnv, "update-env", "a", false, "refresh the environment from this shell")
	cmd.Flags().StringVar(&envName, "env", "", "apply env_<name>")
	cmd.Flags().StringVar(&only, "only", "", "only these apps (a,b)")
	return cmd
}

func (a *app) scaleCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "scale <app> <N|+N|-N>",
		Short:              "set, add or remove instances of an app",
		DisableFlagParsing: true, // "-2" is a count, not a flag
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
				return cmd.Help()
			}
			if len(args) != 2 {
				return errors.New("scale: want <app> <N|+N|-N>")
			}
			spec := args[1]
			if _, err := strconv.Atoi(strings.TrimPrefix(spec, "+")); err != nil {
				return fmt.Errorf("scale: %q is not a count (N, +N or -N)", spec)
			}
			return a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
				procs, err := b.Scale(ctx, args[0], spec)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "[corral] Scaling %s to %s\n", args[0], spec)
				return a.report(ctx, b, "scale", procs, nil)
			})(cmd, args)
		},
	}
}

func (a *app) sendSignalCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "sendSignal <signal> <id|name|namespace|all>...",
		Short: "send a signal to processes",
		Args:  cobra.MinimumNArgs(2),
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			targets, err := a.resolveTargets(ctx, b, args[1:], "")
			if err != nil {
				return err
			}
			procs, err := b.Signal(ctx, args[0], targets)
			if err != nil {
				return err
			}
			for _, p := range procs {
				fmt.Fprintf(a.stdout, "[corral] successfully sent signal %s to process %s (%d)\n", args[0], p.Name, p.PMID)
			}
			return nil
		}),
	}
}

func (a *app) flushCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "flush [id|name|namespace|all]...",
		Short: "empty log files",
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			if len(args) == 0 {
				args = []string{"all"}
			}
			targets, err := a.resolveTargets(ctx, b, args, "")
			if err != nil {
				return err
			}
			if err := b.Flush(ctx, targets); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] Logs flushed (%s)\n", strings.Join(targets, " "))
			return nil
		}),
	}
}

func (a *app) reloadLogsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reloadLogs",
		Short: "reopen all log files (after external rotation)",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			fmt.Fprintln(a.stdout, "[corral] Reloading all logs...")
			if err := b.ReloadLogs(ctx); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "[corral] All logs reloaded")
			return nil
		}),
	}
}

func (a *app) pidCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pid [name|id]",
		Short: "print process ids",
		Args:  cobra.MaximumNArgs(1),
		RunE: a.withProcs(func(procs []api.Proc, args []string) error {
			if len(args) == 1 {
				procs = matchProcs(procs, args[0])
				if len(procs) == 0 {
					return api.UnknownTargetError(args[0])
				}
			}
			for _, p := range procs {
				fmt.Fprintln(a.stdout, p.PID)
			}
			return nil
		}),
	}
}

// matchProcs returns the processes target (all, id, name or namespace) names.
func matchProcs(procs []api.Proc, target string) []api.Proc {
	var out []api.Proc
	for _, p := range procs {
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		if target == "all" || strconv.Itoa(p.PMID) == target || p.Name == target || ns == target {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		return out
	}
	return nil
}

func (a *app) pingCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ping",
		Short: "start the daemon if needed and check that it answers",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			if c, ok := b.(*api.Client); ok {
				if _, err := c.Ping(ctx); err != nil {
					return err
				}
			} else if _, err := b.List(ctx); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "pong")
			return nil
		}),
	}
}

// killGrace bounds how long kill waits for the daemon to exit after SIGTERM.
const killGrace = 30 * time.Second

func (a *app) killCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "kill",
		Short: "stop every app and the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if a.opts.Backend != nil {
				return a.opts.Backend.Shutdown(ctx)
			}
			p, err := a.paths()
			if err != nil {
				return err
			}
			c := api.NewClient(p.Socket)
			defer c.Close()
			pong, err := c.Ping(ctx)
			if err != nil {
				if !api.IsUnreachable(err) {
					return err
				}
				pid, _ := daemonproc.ReadPid(p.PidFile)
				if pid > 0 && daemonproc.Alive(pid) && pid != os.Getpid() {
					// A daemon that does not answer: stop it the hard way.
					if err := daemonproc.Kill(ctx, p, pid, killGrace); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "[corral] unresponsive daemon (pid %d) killed\n", pid)
					return nil
				}
				if err := daemonproc.Kill(ctx, p, 0, 0); err != nil { // stale files only
					return err
				}
				fmt.Fprintln(a.stdout, "[corral] daemon not running")
				return nil
			}
			fmt.Fprintln(a.stdout, "[corral] Applying action deleteProcessId on app [all]")
			if err := c.Shutdown(ctx); err != nil {
				fmt.Fprintf(a.stderr, "[corral] shutdown: %s\n", oneLine(err.Error()))
			}
			c.Close()
			if err := daemonproc.Kill(ctx, p, pong.PID, killGrace); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "[corral] corral daemon stopped")
			return nil
		},
	}
}

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "init [simple]",
		Aliases: []string{"ecosystem"},
		Short:   "write an ecosystem.config.js template here",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(a.dir, "ecosystem.config.js")
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%s already exists; not overwriting it", path)
				}
				return fmt.Errorf("write %s: %w", path, err)
			}
			if _, err := f.WriteString(ecosystem.InitTemplate()); err != nil {
				f.Close()
				os.Remove(path)
				return fmt.Errorf("write %s: %w", path, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			fmt.Fprintf(a.stdout, "File %s generated\n", path)
			return nil
		},
	}
}
