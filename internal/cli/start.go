package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/ecosystem"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// startFlags are PM2's `start` options.
type startFlags struct {
	instances, name, execMode, cwd                  string
	forkX                                           bool
	waitReady                                       bool
	listenTimeout, killTimeout, minUptime           string
	restartDelay, expBackoff                        string
	killSignal                                      string
	shutdownWithMessage, noAutorestart, noAutostart bool
	maxRestarts                                     int
	stopExitCodes                                   []string
	mergeLogs, timeLog                              bool
	logDateFormat, out, errFile, log                string
	namespace, incrementVar, instanceVar            string
	nodeArgs, interpreter                           string
	listen                                          []string
	maxMemory, cron                                 string
	watch                                           []string
	ignoreWatch                                     []string
	logType, logMaxSize                             string
	logMaxFiles                                     int
	force, updateEnv                                bool
	env, only                                       string
	uid, gid                                        string
}

// flagAliases maps PM2's alternative flag spellings to the canonical ones.
var flagAliases = map[string]string{
	"cron-restart":     "cron",
	"interpreter-args": "node-args",
	"combine-logs":     "merge-logs",
	"user":             "uid",
}

func normalizeFlags(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := flagAliases[name]; ok {
		name = n
	}
	return pflag.NormalizedName(name)
}

func (a *app) addStartFlags(fs *pflag.FlagSet, f *startFlags) {
	fs.StringVarP(&f.instances, "instances", "i", "", "number of instances: N, max, 0 (one per CPU) or -N (CPUs minus N)")
	fs.StringVarP(&f.name, "name", "n", "", "app name (default: script basename without extension)")
	fs.StringVar(&f.execMode, "exec-mode", "", "exec mode: fork or cluster")
	fs.BoolVarP(&f.forkX, "execute-command", "x", false, "force fork mode")
	fs.StringVar(&f.cwd, "cwd", "", "working directory of the app")
	fs.BoolVar(&f.waitReady, "wait-ready", false, "online only after the app sends 'ready'")
	fs.StringVar(&f.listenTimeout, "listen-timeout", "", "max wait for listen/ready, ms (default 3000)")
	fs.StringVarP(&f.killTimeout, "kill-timeout", "k", "", "grace before SIGKILL, ms (default 1600)")
	fs.StringVar(&f.killSignal, "kill-signal", "", "signal that stops the app (default SIGINT)")
	fs.BoolVar(&f.shutdownWithMessage, "shutdown-with-message", false, "stop with the IPC message 'shutdown' instead of a signal")
	fs.BoolVar(&f.noAutorestart, "no-autorestart", false, "do not restart the app when it exits")
	fs.BoolVar(&f.noAutostart, "no-autostart", false, "add the app without starting it")
	fs.IntVar(&f.maxRestarts, "max-restarts", 0, "unstable restarts before errored (default 16)")
	fs.StringVar(&f.minUptime, "min-uptime", "", "uptime below which an exit is unstable (ms or 10s; default 1000)")
	fs.StringVar(&f.restartDelay, "restart-delay", "", "delay before an automatic restart, ms")
	fs.StringVar(&f.expBackoff, "exp-backoff-restart-delay", "", "exponential backoff restart delay, ms")
	fs.StringSliceVar(&f.stopExitCodes, "stop-exit-codes", nil, "exit codes that do not trigger a restart")
	fs.BoolVar(&f.mergeLogs, "merge-logs", false, "one log file for all instances (no -<id> suffix)")
	fs.BoolVar(&f.timeLog, "time", false, "prefix log lines with a timestamp")
	fs.StringVar(&f.logDateFormat, "log-date-format", "", "prefix log lines with this date format")
	fs.StringVarP(&f.out, "output", "o", "", "stdout log file")
	fs.StringVarP(&f.errFile, "error", "e", "", "stderr log file")
	fs.StringVarP(&f.log, "log", "l", "", "combined stdout+stderr log file")
	fs.StringVar(&f.namespace, "namespace", "", "namespace (default: default)")
	fs.StringVar(&f.incrementVar, "increment-var", "", "env var incremented per instance (e.g. PORT)")
	fs.StringVar(&f.instanceVar, "instance-var", "", "env var holding the instance number (default NODE_APP_INSTANCE)")
	fs.StringVar(&f.nodeArgs, "node-args", "", "interpreter arguments (alias --interpreter-args)")
	fs.StringVar(&f.interpreter, "interpreter", "", "interpreter (node, python3, bash, none, ...)")
	fs.StringArrayVar(&f.listen, "listen", nil, "address to bind and pass to every instance (repeatable)")
	fs.StringVar(&f.maxMemory, "max-memory-restart", "", "restart above this memory (e.g. 150M, 1G)")
	fs.StringVarP(&f.cron, "cron", "c", "", "cron expression for periodic restarts (alias --cron-restart)")
	fs.StringSliceVar(&f.watch, "watch", nil, "restart on file changes (optionally: paths)")
	fs.Lookup("watch").NoOptDefVal = "."
	fs.StringSliceVar(&f.ignoreWatch, "ignore-watch", nil, "paths the watcher ignores")
	fs.StringVar(&f.logType, "log-type", "", "log format: json for JSON lines")
	fs.StringVar(&f.logMaxSize, "log-max-size", "", "rotate logs above this size (e.g. 10M)")
	fs.IntVar(&f.logMaxFiles, "log-max-files", 0, "rotated log files to keep")
	fs.BoolVarP(&f.force, "force", "f", false, "start even if the script already runs")
	fs.BoolVarP(&f.updateEnv, "update-env", "a", false, "refresh the environment of an app that is restarted")
	fs.StringVar(&f.env, "env", "", "ecosystem environment to apply (env_<name>)")
	fs.StringVar(&f.only, "only", "", "ecosystem apps to act on (a,b)")
	fs.StringVar(&f.uid, "uid", "", "run as this user (root only)")
	fs.StringVar(&f.gid, "gid", "", "run as this group (root only)")
	fs.SetNormalizeFunc(normalizeFlags)
}

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
			if len(pos) > 1 && len(extra) == 0 {
				return fmt.Errorf("start: one script at a time (put app arguments after --): %q", pos[1:])
			}
			return a.start(cmd.Context(), cmd.Flags(), f, pos[0], extra)
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
	if isConfigArg(target) {
		return a.startEcosystem(ctx, target, f)
	}
	cwd := a.dir
	if f.cwd != "" {
		cwd = a.abs(f.cwd)
	}
	if _, err := a.scriptFile(target, cwd, f.cwd != ""); err != nil {
		// Not a file: maybe the name or id of an app we know (PM2's smart start).
		b, berr := a.backend(ctx)
		if berr != nil {
			return berr
		}
		if known, lerr := knownTarget(ctx, b, target); lerr == nil && known {
			var notes []string
			procs, rerr := b.Restart(ctx, []string{target}, api.RestartOptions{UpdateEnv: f.updateEnv, Env: a.envMapIf(f.updateEnv), Notes: &notes})
			if rerr != nil {
				return rerr
			}
			return a.report(ctx, b, "restart", procs, notes)
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
	inst := "1 instance"
	if app.Instances > 1 {
		inst = fmt.Sprintf("%d instances", app.Instances)
	}
	mode := "fork_mode"
	if app.ExecMode == "cluster" || (app.ExecMode == "" && app.Instances > 1 && isNode(app)) {
		mode = "cluster_mode"
	}
	fmt.Fprintf(a.stdout, "[corral] Starting %s in %s (%s)\n", app.Script, mode, inst)
	procs, err := b.Start(ctx, []appspec.App{app}, api.StartOptions{Force: f.force})
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, "[corral] Done.")
	return a.report(ctx, b, "", procs, nil)
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

// knownTarget reports whether target names an existing process (id or name).
func knownTarget(ctx context.Context, b api.Backend, target string) (bool, error) {
	procs, err := b.List(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range procs {
		if p.Name == target || strconv.Itoa(p.PMID) == target {
			return true, nil
		}
	}
	return false, nil
}

// isConfigArg reports whether a start argument names an ecosystem file.
func isConfigArg(s string) bool {
	l := strings.ToLower(s)
	for _, suf := range []string{".config.js", ".config.cjs", ".config.mjs", ".json", ".yaml", ".yml"} {
		if strings.HasSuffix(l, suf) {
			return true
		}
	}
	return false
}

func isNode(app appspec.App) bool {
	interp := app.Interpreter
	if interp == "" {
		interp = appspec.DetectInterpreter(app.Script)
	}
	base := filepath.Base(interp)
	return base == "node" || base == "bun" || strings.HasPrefix(base, "node@")
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
	errs := a.applyOptionFlags(fs, f, &app)
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

// applyOptionFlags sets on app the options the user gave on the command line
// (fs.Changed) and leaves every other field as it is, so that `start` builds
// a new app with it and `restart` changes an existing one. Relative log paths
// are taken relative to app.Cwd. It returns one error per bad flag value.
func (a *app) applyOptionFlags(fs *pflag.FlagSet, f *startFlags, app *appspec.App) []error {
	var errs []error
	bad := func(flag string, err error) { errs = append(errs, fmt.Errorf("--%s: %w", flag, err)) }
	changed := fs.Changed
	// count sets *dst to a non-negative count flag the user gave.
	count := func(flag string, v int, dst *int) {
		if !changed(flag) {
			return
		}
		if v < 0 {
			bad(flag, fmt.Errorf("%d: must not be negative", v))
		}
		*dst = v
	}

	if changed("namespace") {
		app.Namespace = f.namespace
	}
	if changed("interpreter") {
		app.Interpreter = f.interpreter
	}
	if changed("node-args") {
		app.InterpreterArgs = nil
		if f.nodeArgs != "" {
			app.InterpreterArgs = strings.Fields(f.nodeArgs)
		}
	}
	switch {
	case changed("execute-command") && f.forkX:
		app.ExecMode = "fork"
	case changed("exec-mode"):
		m := strings.TrimSuffix(f.execMode, "_mode")
		if m != "fork" && m != "cluster" {
			bad("exec-mode", fmt.Errorf("%q: want fork or cluster", f.execMode))
		}
		app.ExecMode = m
	}
	if changed("instances") {
		n, err := appspec.ParseInstances(f.instances, runtime.NumCPU())
		if err != nil {
			bad("instances", err)
		}
		app.Instances = n
		if app.ExecMode == "" && isNode(*app) {
			app.ExecMode = "cluster" // PM2: -i with a Node script means cluster mode
		}
	}
	// parsed sets *dst from a flag given on the command line, parsed by parse.
	parsed := func(parse func(string) (int64, error)) func(flag, v string, dst *int64) {
		return func(flag, v string, dst *int64) {
			if !changed(flag) {
				return
			}
			n, err := parse(v)
			if err != nil {
				bad(flag, err)
			}
			*dst = n
		}
	}
	ms, size := parsed(appspec.ParseDuration), parsed(appspec.ParseMemory)
	ms("listen-timeout", f.listenTimeout, &app.ListenTimeout)
	ms("kill-timeout", f.killTimeout, &app.KillTimeout)
	ms("min-uptime", f.minUptime, &app.MinUptime)
	ms("restart-delay", f.restartDelay, &app.RestartDelay)
	ms("exp-backoff-restart-delay", f.expBackoff, &app.ExpBackoffRestartDelay)
	size("max-memory-restart", f.maxMemory, &app.MaxMemoryRestart)
	size("log-max-size", f.logMaxSize, &app.LogMaxSize)
	if changed("cron") {
		if err := appspec.ValidateCron(f.cron); err != nil {
			bad("cron", err)
		}
		app.CronRestart = ""
		if f.cron != "0" {
			app.CronRestart = f.cron
		}
	}
	if changed("stop-exit-codes") {
		app.StopExitCodes = nil
		for _, c := range f.stopExitCodes {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil {
				bad("stop-exit-codes", fmt.Errorf("%q is not an exit code", c))
				continue
			}
			app.StopExitCodes = append(app.StopExitCodes, n)
		}
	}
	if changed("kill-signal") {
		sig := strings.ToUpper(f.killSignal)
		if sig != "" && !strings.HasPrefix(sig, "SIG") {
			sig = "SIG" + sig
		}
		app.KillSignal = sig
	}
	if changed("wait-ready") {
		app.WaitReady = f.waitReady
	}
	if changed("shutdown-with-message") {
		app.ShutdownWithMessage = f.shutdownWithMessage
	}
	if changed("no-autorestart") {
		app.Autorestart = nil
		if f.noAutorestart {
			no := false
			app.Autorestart = &no
		}
	}
	if changed("no-autostart") {
		app.Autostart = nil
		if f.noAutostart {
			no := false
			app.Autostart = &no
		}
	}
	count("max-restarts", f.maxRestarts, &app.MaxRestarts)
	if changed("merge-logs") {
		app.MergeLogs = f.mergeLogs
	}
	if changed("time") {
		app.Time = f.timeLog
	}
	if changed("log-date-format") {
		app.LogDateFormat = f.logDateFormat
	}
	if changed("output") {
		app.OutFile = a.logPath(f.out, app.Cwd)
	}
	if changed("error") {
		app.ErrorFile = a.logPath(f.errFile, app.Cwd)
	}
	if changed("log") {
		app.LogFile = a.logPath(f.log, app.Cwd)
	}
	if changed("instance-var") {
		app.InstanceVar = f.instanceVar
	}
	if changed("increment-var") {
		app.IncrementVar = f.incrementVar
	}
	if changed("listen") {
		app.Listen = f.listen
	}
	if changed("watch") {
		app.Watch = nil
		for _, w := range f.watch {
			if w == "true" {
				w = "."
			}
			if w != "false" && w != "" {
				app.Watch = append(app.Watch, w)
			}
		}
	}
	if changed("ignore-watch") {
		app.IgnoreWatch = f.ignoreWatch
	}
	if changed("log-type") {
		switch f.logType {
		case "", "json":
			app.LogType = f.logType
		default:
			bad("log-type", fmt.Errorf("%q: want json", f.logType))
		}
	}
	count("log-max-files", f.logMaxFiles, &app.LogMaxFiles)
	if changed("uid") {
		app.UID = f.uid
	}
	if changed("gid") {
		app.GID = f.gid
	}
	return errs
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
	abs := a.abs(path)
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("ecosystem file %s: %w", path, errors.Unwrap(err))
	}
	file, err := ecosystem.Load(abs)
	if err != nil {
		return nil, err
	}
	var onlyList []string
	if only != "" {
		onlyList = []string{only}
	}
	apps, err := file.Select(onlyList, envName)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
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
	procs, err := a.applyEcosystem(ctx, b, path, f.only, f.env, f.updateEnv, "start", true)
	if err != nil {
		return err
	}
	if len(procs) == 0 {
		return fmt.Errorf("%s: no apps", path)
	}
	fmt.Fprintf(a.stdout, "[corral] %s: %d process%s launched\n", path, len(procs), map[bool]string{true: "", false: "es"}[len(procs) == 1])
	return a.report(ctx, b, "", procs, nil)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
