package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/ecosystem"
	"github.com/corralhq/corral/internal/pm2json"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func (a *app) startCommand() *cobra.Command {
	f := &startFlags{}
	cmd := &cobra.Command{
		Use:   "start <script|ecosystem file|\"command\"|name|id> [flags] [-- args...]",
		Short: "start an app (or restart it if it exists)",
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, extra := splitDash(cmd, args)
			if len(pos) == 0 {
				pos = []string{"ecosystem.config.js"}
				if _, err := os.Stat(filepath.Join(a.dir, pos[0])); err != nil {
					return errors.New("start: no script given and no ecosystem.config.js here")
				}
			}
			if len(pos) > 1 && f.name != "" {
				return fmt.Errorf("start: --name names one app; %d scripts given: %q", len(pos), pos)
			}
			// PM2: `start a.js b.js` starts each in turn; the first failure stops there.
			for _, p := range pos {
				if err := a.start(cmd.Context(), cmd.Flags(), f, p, extra); err != nil {
					return err
				}
			}
			return nil
		},
	}
	a.addStartFlags(cmd.Flags(), f)
	return cmd
}

// splitDash splits positional args at "--".
func splitDash(cmd *cobra.Command, args []string) (before, after []string) {
	if i := cmd.ArgsLenAtDash(); i >= 0 {
		return args[:i], args[i:]
	}
	return args, nil
}

func (a *app) start(ctx context.Context, fs *pflag.FlagSet, f *startFlags, target string, extra []string) error {
	if api.IsEcosystemFile(target) {
		return a.startEcosystem(ctx, target, f)
	}
	cwd := a.dir
	if f.cwd != "" {
		cwd = a.abs(f.cwd)
	}
	if _, err := a.scriptFile(target, cwd, f.cwd != ""); err != nil {
		// Not a file: maybe an id, name, namespace or "all" that names apps we know (PM2's
		// smart start: a running instance is restarted, a stopped one started, uncounted).
		b, berr := a.backend(ctx)
		if berr != nil {
			return berr
		}
		if known, lerr := knownTarget(ctx, b, target); lerr == nil && known {
			if fs.Changed("name") {
				return fmt.Errorf("start %s: --name cannot rename an app (use restart %s --name %s)", target, target, f.name)
			}
			if opts := startOptionFlags(fs); len(opts) > 0 {
				// start <name> --node-args ...: the options apply, as restart's do.
				return a.restartWithOptions(ctx, b, b.Restart, fs, f, "start", []string{target}, opts)
			}
			procs, notes, rerr := b.Restart(ctx, []string{target}, api.RestartOptions{UpdateEnv: f.updateEnv, Env: a.envMapIf(f.updateEnv)})
			if rerr != nil {
				return rerr
			}
			return a.report(ctx, b, procs, notes)
		}
	}
	app, err := a.appFromFlags(fs, f, target, cwd, extra)
	if err != nil {
		return err
	}
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	if f.force {
		// PM2's `start app.js -f` when app.js already runs under that name adds another
		// process under the same name: corral adds instances to the app (one definition
		// per name). With other options or another script, -f redefines the app.
		if added, ok, err := a.forceAdd(ctx, b, fs, app); ok || err != nil {
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "[corral] %s already runs as %s: %d more instance%s\n", app.Script, app.Name, max(app.Instances, 1), plural(max(app.Instances, 1)))
			return a.report(ctx, b, added, nil)
		}
	}
	done := func() {} // progress lines while the instances start (on a terminal)
	if app.Instances > 1 {
		done = a.progress(ctx, b, func() []string { return []string{app.Name} })
	}
	procs, err := b.Start(ctx, []appspec.App{app}, api.StartOptions{Force: f.force, Lean: true}) // reportStart needs no env
	done()
	if err != nil {
		return err
	}
	return a.reportStart(ctx, b, app, procs)
}

// reportStart prints what start did, honestly: first, in one line each, why the app does not run the
// way it was asked (the daemon's notes on the app, such as a cluster mode it cannot have); then the mode
// the daemon chose; then a ✓ per instance — except, for several fork-mode instances of one app (which
// cannot share a port without --listen), only once each has outlived min_uptime, and a ✗ with the
// reason for those that keep exiting.
func (a *app) reportStart(ctx context.Context, b api.Backend, app appspec.App, procs []api.Proc) error {
	seen := map[string]bool{}
	if len(procs) > 0 {
		for _, n := range procs[0].Notes { // the app's notes: no instance has any yet
			if !seen[n] {
				seen[n] = true
				fmt.Fprintf(a.stdout, "[corral] note: %s\n", n)
			}
		}
	}
	inst := "1 instance"
	if len(procs) > 1 {
		inst = fmt.Sprintf("%d instances", len(procs))
	}
	mode := "fork_mode"
	switch {
	case len(app.Listen) > 0:
		mode = "listen mode" // the daemon's sockets, shared across instances (ls shows "listen")
	case len(procs) > 0 && pm2json.ExecMode(procs[0].App.ExecMode) == "cluster_mode":
		mode = "cluster_mode"
	}
	fmt.Fprintf(a.stdout, "[corral] Starting %s in %s (%s)\n", app.Script, mode, inst)
	fmt.Fprintln(a.stdout, "[corral] Done.")
	failed := map[int]string{}
	if mode == "fork_mode" && len(procs) > 1 && len(app.Listen) == 0 {
		failed = a.settle(ctx, b, procs)
	}
	var notes []string
	for _, p := range procs {
		if why, ok := failed[p.PMID]; ok {
			fmt.Fprintf(a.stdout, "[corral] [%s](%d) ✗ %s\n", p.Name, p.PMID, why)
			seen[why] = true
		} else {
			fmt.Fprintf(a.stdout, "[corral] [%s](%d) ✓\n", p.Name, p.PMID)
		}
		notes = append(notes, p.Notes...)
	}
	for _, n := range notes {
		if !seen[n] {
			seen[n] = true
			fmt.Fprintf(a.stdout, "[corral] note: %s\n", n)
		}
	}
	all, err := listRows(ctx, b)
	if err != nil {
		return err
	}
	writeList(a.stdout, all, time.Now())
	return nil
}

// settle watches freshly started instances until each has stayed up for min_uptime (at most a
// second) or has exited, for at most settleTimeout, and returns why each one that exited did so: the
// daemon's EADDRINUSE note when it has one (waited for until the deadline: the exit may be seen before
// the line saying why), else its exit code.
func (a *app) settle(ctx context.Context, b api.Backend, procs []api.Proc) map[int]string {
	const settleTimeout = 3 * time.Second
	start := map[int]int{}
	for _, p := range procs {
		start[p.PMID] = p.Restarts
	}
	failed := map[int]string{}
	deadline := time.Now().Add(settleTimeout)
	for {
		all, err := b.List(ctx)
		if err != nil {
			return failed
		}
		pending := 0
		for _, p := range all {
			before, ours := start[p.PMID]
			if !ours {
				continue
			}
			minUp := min(time.Duration(p.App.MinUptime)*time.Millisecond, time.Second)
			crashed := p.Restarts > before || p.Status == "errored" || p.Status == "waiting restart" || (p.Status == "stopped" && p.ExitCode != 0)
			switch {
			case crashed && hasAddrInUse(p.Notes) != "":
				failed[p.PMID] = hasAddrInUse(p.Notes)
			case crashed:
				failed[p.PMID] = fmt.Sprintf("exited with code %d right after its start (%d restarts so far): see `corral logs %d`", p.ExitCode, p.Restarts-before, p.PMID)
				pending++ // the reason may follow
			case p.Status == "online" && time.Since(p.StartedAt) >= minUp:
			default:
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return failed
		}
		select {
		case <-ctx.Done():
			return failed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// hasAddrInUse returns the note among notes that says the instance exits with EADDRINUSE, or "".
func hasAddrInUse(notes []string) string {
	for _, n := range notes {
		if strings.Contains(n, "EADDRINUSE") {
			return n
		}
	}
	return ""
}

// envMapIf returns the CLI's environment when update is set.
func (a *app) envMapIf(update bool) map[string]string {
	if !update {
		return nil
	}
	return a.envMap()
}

func (a *app) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(a.dir, p)
}

// scriptFile resolves script to an existing file: relative to cwd, else (when
// --cwd was given) relative to the CLI's directory.
func (a *app) scriptFile(script, cwd string, cwdGiven bool) (string, error) {
	cands := []string{script}
	if !filepath.IsAbs(script) {
		cands = []string{filepath.Join(cwd, script)}
		if cwdGiven {
			cands = append(cands, filepath.Join(a.dir, script))
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("script not found: %s", script)
}

// knownTarget reports whether target names existing processes (api.Match: a
// pm_id, a name, a namespace or all) for PM2's smart start.
func knownTarget(ctx context.Context, b api.Backend, target string) (bool, error) {
	procs, err := b.List(ctx)
	if err != nil {
		return false, err
	}
	if _, isRegex := api.RegexTarget(target); isRegex {
		return false, nil
	}
	m, err := api.Match(procs, []string{target})
	return err == nil && len(m) > 0, nil
}

// startOnlyFlags are start flags that do not change an app's definition.
var startOnlyFlags = map[string]bool{"force": true, "update-env": true, "env": true, "only": true, "help": true, "name": true, "silent": true}

// startOptionFlags returns the option flags given to `start <name|id>`.
func startOptionFlags(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(fl *pflag.Flag) {
		if !startOnlyFlags[fl.Name] && !noopFlags[fl.Name] {
			out = append(out, fl.Name)
		}
	})
	return out
}

// forceAdd is `start <script> -f` for an app of that name started from the same
// script with the same arguments and no other option flag: it adds the new
// app's instances to it (ok true). Otherwise it does nothing (ok false).
func (a *app) forceAdd(ctx context.Context, b api.Backend, fs *pflag.FlagSet, app appspec.App) ([]api.Proc, bool, error) {
	for _, o := range startOptionFlags(fs) {
		if o != "instances" {
			return nil, false, nil
		}
	}
	procs, err := b.List(ctx)
	if err != nil {
		return nil, false, err
	}
	same := false
	for _, p := range procs {
		if p.Name != app.Name {
			continue
		}
		if p.ExecPath != app.Script || !slices.Equal(p.App.Args, app.Args) {
			return nil, false, nil
		}
		same = true
	}
	if !same {
		return nil, false, nil
	}
	before := map[int]bool{}
	for _, p := range procs {
		before[p.PMID] = true
	}
	if _, err := b.Scale(ctx, app.Name, fmt.Sprintf("+%d", max(app.Instances, 1))); err != nil {
		return nil, true, err
	}
	after, err := b.List(ctx)
	if err != nil {
		return nil, true, err
	}
	var added []api.Proc
	for _, p := range after {
		if p.Name == app.Name && !before[p.PMID] {
			added = append(added, p)
		}
	}
	return added, true, nil
}

func isNode(app appspec.App) bool {
	interp := app.Interpreter
	if interp == "" {
		interp = appspec.DetectFileInterpreter(app.Script)
	}
	base := filepath.Base(interp)
	return base == "node" || base == "bun" || base == "deno" || strings.HasPrefix(base, "node@")
}

// appFromFlags builds the app `start` sends, resolving the script, name, cwd
// and environment as PM2 does.
func (a *app) appFromFlags(fs *pflag.FlagSet, f *startFlags, script, cwd string, extra []string) (appspec.App, error) {
	var app appspec.App
	app.Cwd = cwd
	if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
		return app, fmt.Errorf("--cwd %s: not a directory", f.cwd)
	}
	if file, err := a.scriptFile(script, cwd, f.cwd != ""); err == nil {
		app.Script = file
	} else if strings.ContainsAny(strings.TrimSpace(script), " \t") {
		app.Script = script // a command string, run by bash -c
	} else if strings.ContainsRune(script, '/') {
		return app, fmt.Errorf("script not found: %s", a.abs(script))
	} else if _, lerr := exec.LookPath(script); lerr == nil {
		app.Script = script // a program on $PATH
	} else {
		return app, fmt.Errorf("script not found: %s (not a file in %s nor a program on $PATH)", script, cwd)
	}
	app.Name = f.name
	if app.Name == "" {
		app.Name = defaultName(app.Script)
	}
	app.Args = extra
	ov, errs := optionOverrides(fs, f)
	app, err := ov.Apply(app)
	if err != nil {
		return app, err
	}
	if fs.Changed("instances") && app.ExecMode == "" && isNode(app) {
		app.ExecMode = "cluster" // PM2: -i with a Node script means cluster mode
	}
	// The shell's environment is kept apart from the app's own variables (none from flags),
	// so that restart --update-env can replace it (see appspec.App.ShellEnv).
	app.ShellEnv = a.envMap()
	if err := errors.Join(errs...); err != nil {
		return app, err
	}
	if err := app.Validate(); err != nil {
		return app, fmt.Errorf("app %s: %w", app.Name, err)
	}
	return app, nil
}

// logPath makes a log path absolute (relative to the app's cwd), keeping
// PM2's "/dev/null" and "NULL" sentinels.
func (a *app) logPath(p, cwd string) string {
	if p == "" || p == "NULL" || p == "/dev/null" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cwd, p)
}

// defaultName is PM2's default app name: the script's basename without
// extension (for a command string, its first word's).
func defaultName(script string) string {
	fields := strings.Fields(script)
	if len(fields) == 0 {
		return ""
	}
	base := filepath.Base(fields[0])
	if n := strings.TrimSuffix(base, filepath.Ext(base)); n != "" {
		return n
	}
	return base
}

// loadEcosystem loads an ecosystem file and returns its selected apps with
// paths resolved: each app's Env is the file's env (with env_<envName> over
// it) and its ShellEnv the CLI's environment.
func (a *app) loadEcosystem(path string, only, envName string) ([]appspec.App, error) {
	var file *ecosystem.File
	var dir string
	if path == "-" {
		// PM2's `start -` / `delete -`: the ecosystem JSON comes on standard input; relative
		// paths in it are relative to this directory.
		if a.stdinData == nil {
			data, err := io.ReadAll(a.stdin)
			if err != nil {
				return nil, fmt.Errorf("read the ecosystem from standard input: %w", err)
			}
			a.stdinData = data
		}
		f, err := ecosystem.LoadJSON(context.Background(), "<stdin>", a.dir, a.stdinData)
		if err != nil {
			return nil, err
		}
		file, dir = f, a.dir
	} else {
		abs := a.abs(path)
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("ecosystem file %s: %w", path, errors.Unwrap(err))
		}
		f, err := ecosystem.Load(abs)
		if err != nil {
			return nil, err
		}
		file, dir = f, filepath.Dir(abs)
	}
	for _, w := range file.Warnings {
		if !slices.Contains(a.warned, w) {
			a.warned = append(a.warned, w)
			fmt.Fprintf(a.stderr, "[corral] warning: %s\n", w)
		}
	}
	var onlyList []string
	if only != "" {
		onlyList = []string{only}
	}
	apps, err := file.Select(onlyList, envName)
	if err != nil {
		return nil, err
	}
	base := a.envMap()
	for i := range apps {
		app := &apps[i]
		if app.Cwd == "" {
			app.Cwd = dir
		} else if !filepath.IsAbs(app.Cwd) {
			app.Cwd = filepath.Join(dir, app.Cwd)
		}
		if !filepath.IsAbs(app.Script) {
			if cand := filepath.Join(app.Cwd, app.Script); fileExists(cand) {
				app.Script = cand
			}
		}
		if app.Env == nil {
			app.Env = map[string]string{}
		}
		app.ShellEnv = maps.Clone(base)
		app.OutFile = a.logPath(app.OutFile, app.Cwd)
		app.ErrorFile = a.logPath(app.ErrorFile, app.Cwd)
		app.LogFile = a.logPath(app.LogFile, app.Cwd)
	}
	return apps, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// startEcosystem starts the apps of an ecosystem file; those that exist are
// started again with the file's definition (PM2: start == restart when running).
func (a *app) startEcosystem(ctx context.Context, path string, f *startFlags) error {
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	done := a.progress(ctx, b, nil)
	procs, err := a.applyEcosystem(ctx, b, path, f.only, f.env, f.updateEnv, "start", true)
	done()
	if err != nil {
		return err
	}
	if len(procs) == 0 {
		return fmt.Errorf("%s: no apps", path)
	}
	what := "processes"
	if len(procs) == 1 {
		what = "process"
	}
	// First, in one line each, why an app does not run the way it was asked (the daemon's app notes).
	seen := map[string]bool{}
	for _, p := range procs {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		for _, n := range p.Notes {
			if !seen[n] {
				seen[n] = true
				fmt.Fprintf(a.stdout, "[corral] note: %s: %s\n", p.Name, n)
			}
		}
	}
	fmt.Fprintf(a.stdout, "[corral] %s: %d %s launched\n", path, len(procs), what)
	for i := range procs { // said already
		procs[i].Notes = slices.DeleteFunc(slices.Clone(procs[i].Notes), func(n string) bool { return seen[n] })
	}
	return a.report(ctx, b, procs, nil)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
