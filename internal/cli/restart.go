package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

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
		op := b.Restart
		if name == "reload" {
			op = b.Reload
		}
		if opts := changedOptions(cmd.Flags()); len(opts) > 0 {
			return a.restartWithOptions(ctx, b, op, cmd.Flags(), f, name, args, opts)
		}
		// Ecosystem files: restart each app with the file's env over its frozen one.
		var rest []string
		var procs []api.Proc
		var notes []string
		for _, t := range args {
			if !api.IsEcosystemFile(t) {
				rest = append(rest, t)
				continue
			}
			ps, err := a.applyEcosystem(ctx, b, t, f.only, f.env, f.updateEnv, name, true)
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
			done := a.progress(ctx, b, appNames(ctx, b, targets))
			ps, ns, err := op(ctx, targets, api.RestartOptions{UpdateEnv: f.updateEnv, Env: a.envMapIf(f.updateEnv)})
			done()
			if err != nil {
				return err
			}
			procs = append(procs, ps...)
			notes = append(notes, ns...)
		}
		return a.report(ctx, b, procs, notes)
	})
	fs := cmd.Flags()
	a.addStartFlags(fs, f)
	fs.Lookup("name").Usage = "rename the app (one app only)"
	fs.Lookup("force").Usage = "accepted for PM2 compatibility"
	fs.Lookup("update-env").Usage = "refresh the environment from this shell"
	fs.Lookup("env").Usage = "with an ecosystem file: apply env_<name>"
	fs.Lookup("only").Usage = "with an ecosystem file: only these apps (a,b)"
	fs.Int("parallel", 0, "accepted for PM2 compatibility")
	return cmd
}

// notOptions are the restart/reload flags that do not change an app's definition.
var notOptions = map[string]bool{"force": true, "update-env": true, "env": true, "only": true, "parallel": true, "help": true, "silent": true}

// changedOptions returns the (canonical) names of the option flags set on the
// command line of restart or reload.
func changedOptions(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(fl *pflag.Flag) {
		if !notOptions[fl.Name] && !noopFlags[fl.Name] {
			out = append(out, fl.Name)
		}
	})
	return out
}

// restartWithOptions is restart/reload with option flags, in one request: the
// daemon gives every app the targets name its current definition with the
// changed options applied (api.RestartOptions.Overrides), checking every app
// before it touches any, and restarts it (a redefinition, which restarts even
// on reload).
func (a *app) restartWithOptions(ctx context.Context, b api.Backend, op func(context.Context, []string, api.RestartOptions) ([]api.Proc, []string, error),
	fs *pflag.FlagSet, f *startFlags, verb string, args, opts []string) error {
	if slices.Contains(opts, "name") && verb == "start" {
		return fmt.Errorf("start: --name cannot rename an app (use restart <app> --name <new>)")
	}
	for _, t := range args {
		if api.IsEcosystemFile(t) {
			return fmt.Errorf("%s %s: option flags (--%s) do not apply to an ecosystem file; edit the file instead", verb, t, opts[0])
		}
	}
	var cwd string
	if fs.Changed("cwd") {
		cwd = a.abs(f.cwd)
		if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
			return fmt.Errorf("--cwd %s: not a directory", f.cwd)
		}
	}
	ov, errs := optionOverrides(fs, f)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if fs.Changed("name") { // PM2's restart <app> --name <new>: a rename
		if err := ov.Set("name", f.name); err != nil {
			return err
		}
	}
	if cwd != "" {
		if err := ov.Set("cwd", cwd); err != nil {
			return err
		}
	}
	targets, err := a.resolveTargets(ctx, b, args, f.only)
	if err != nil {
		return err
	}
	if verb != "start" && slices.Contains(opts, "watch") && slices.Equal(f.watch, []string{"."}) {
		// PM2: restart --watch toggles watching (on for an app that does not watch, off for one
		// that does); --watch=<paths> sets the paths.
		if watching, err := a.watching(ctx, b, targets); err != nil {
			return err
		} else if watching {
			if err := ov.Set("watch", []string(nil)); err != nil {
				return err
			}
		}
	}
	procs, notes, err := op(ctx, targets, api.RestartOptions{UpdateEnv: f.updateEnv, Env: a.envMapIf(f.updateEnv), Overrides: &ov})
	if err != nil {
		return err
	}
	var names []string
	for _, p := range procs {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	fmt.Fprintf(a.stdout, "[corral] Applying action restartProcessId on app [%s] with new options: --%s\n", strings.Join(names, ", "), strings.Join(opts, " --"))
	return a.report(ctx, b, procs, notes)
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
	startRest := func() error {
		if len(missing) == 0 {
			return nil
		}
		ps, err := b.Start(ctx, missing, api.StartOptions{Lean: true}) // callers report names and notes
		out = append(out, ps...)
		missing = nil
		return err
	}
	if dependsOnAny(existing, missing) { // depends_on: what they depend on starts first
		if err := startRest(); err != nil {
			return nil, err
		}
	}
	switch {
	case len(existing) == 0:
	case mode == "start":
		ps, err := b.Start(ctx, existing, api.StartOptions{Force: true, Lean: true})
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
			opts := api.RestartOptions{AppEnv: app.Env}
			if updateEnv {
				opts.UpdateEnv, opts.Env = true, app.ShellEnv
			}
			// Every option the file sets is applied again (PM2: node_args, log_date_format, ...
			// changed in the file take effect on restart|reload <file>), its env with them.
			i := slices.IndexFunc(current, func(p api.Proc) bool { return p.Name == app.Name })
			if ov := api.OverridesFrom(current[i].App, app); len(ov.Fields) > 0 {
				if err := ov.Set("env", app.Env); err != nil {
					return nil, err
				}
				opts.AppEnv, opts.Overrides = nil, &ov
			}
			ps, notes, err := op(ctx, []string{app.Name}, opts)
			if err != nil {
				return nil, err
			}
			for i := range ps {
				ps[i].Notes = append(ps[i].Notes, notes...)
			}
			out = append(out, ps...)
		}
	}
	if err := startRest(); err != nil {
		return nil, err
	}
	return out, nil
}

// dependsOnAny reports whether an app of apps depends on one of others.
func dependsOnAny(apps, others []appspec.App) bool {
	for _, a := range apps {
		for _, d := range a.DependsOn {
			if slices.ContainsFunc(others, func(o appspec.App) bool { return o.Name == d.Name }) {
				return true
			}
		}
	}
	return false
}

func (a *app) startOrCommand(name string) *cobra.Command {
	var updateEnv bool
	var envName, only string
	mode := "reload" // startOrReload, startOrGracefulReload
	if name == "startOrRestart" {
		mode = "restart"
	}
	cmd := &cobra.Command{
		Use:   name + " <ecosystem file>",
		Short: "start the apps of an ecosystem file, " + mode + " those already running",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !api.IsEcosystemFile(args[0]) {
				return fmt.Errorf("%s: %s is not an ecosystem file (.config.js, .json, .yaml)", name, args[0])
			}
			return a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
				procs, err := a.applyEcosystem(ctx, b, args[0], only, envName, updateEnv, mode, true)
				if err != nil {
					return err
				}
				return a.report(ctx, b, procs, nil)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&updateEnv, "update-env", "a", false, "refresh the environment from this shell")
	cmd.Flags().StringVar(&envName, "env", "", "apply env_<name>")
	cmd.Flags().StringVar(&only, "only", "", "only these apps (a,b)")
	return cmd
}

// watching reports whether every app the targets name watches files.
func (a *app) watching(ctx context.Context, b api.Backend, targets []string) (bool, error) {
	procs, err := b.List(ctx)
	if err != nil {
		return false, err
	}
	matched, err := api.Match(procs, targets)
	if err != nil {
		return false, err
	}
	for _, p := range matched {
		if len(p.App.Watch) == 0 || p.Status == "stopped" { // a stopped app does not watch (jlist: watch false)
			return false, nil
		}
	}
	return len(matched) > 0, nil
}
