package cli

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
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
	noDrain                                         bool
	drainTimeout                                    string
	maxRestarts                                     int
	stopExitCodes                                   []string
	mergeLogs, timeLog                              bool
	sticky                                          bool
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
	readinessHTTP, livenessHTTP, readinessTCP       string
	pidFile                                         string
	sourceMaps, noSourceMaps                        bool
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
	fs.BoolVar(&f.noDrain, "no-drain", false, "do not load corral's connection drain into a Node app")
	fs.StringVar(&f.drainTimeout, "drain-timeout", "", "bound of the connection drain at stop, ms (default 3/4 of kill-timeout)")
	fs.BoolVar(&f.noAutostart, "no-autostart", false, "add the app without starting it")
	fs.IntVar(&f.maxRestarts, "max-restarts", 0, "unstable restarts before errored (default 16)")
	fs.StringVar(&f.minUptime, "min-uptime", "", "uptime below which an exit is unstable (ms or 10s; default 1000)")
	fs.StringVar(&f.restartDelay, "restart-delay", "", "delay before an automatic restart, ms")
	fs.StringVar(&f.expBackoff, "exp-backoff-restart-delay", "", "exponential backoff restart delay, ms")
	fs.StringSliceVar(&f.stopExitCodes, "stop-exit-codes", nil, "exit codes that do not trigger a restart")
	fs.BoolVar(&f.mergeLogs, "merge-logs", false, "one log file for all instances (no -<id> suffix)")
	fs.BoolVar(&f.sticky, "sticky", false, "cluster mode: send every connection of a client IP to the same instance (sticky sessions)")
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
	fs.StringVar(&f.readinessHTTP, "readiness-http", "", "online only once GET URL answers 2xx/3xx (e.g. http://127.0.0.1:3000/health or /health)")
	fs.StringVar(&f.livenessHTTP, "liveness-http", "", "restart an instance whose GET URL fails 3 times in a row")
	fs.StringVar(&f.readinessTCP, "readiness-tcp", "", "online only once HOST:PORT accepts a connection")
	fs.StringVarP(&f.pidFile, "pid", "p", "", "pid file of the app (default <home>/pids/<name>-<id>.pid)")
	fs.BoolVar(&f.sourceMaps, "source-map-support", false, "run a Node app with --enable-source-maps (default: when script.map exists)")
	fs.BoolVar(&f.noSourceMaps, "disable-source-map-support", false, "never add --enable-source-maps")
	fs.SetNormalizeFunc(normalizeFlags)
}

// optionFlag is an option flag of start, restart and reload: a flag that
// sets one field of the app's definition.
type optionFlag struct {
	flag  string // the canonical flag name
	field string // the appspec.App field it sets, by its JSON name (ecosystem key)
	// value parses the flag's value into the field's type. A nil value with a
	// nil error sets nothing (-x=false).
	value func() (any, error)
}

// optionFlags lists the option flags whose values are in f, in the order
// they are applied. --name and --cwd, which start and restart treat apart,
// are not among them.
func optionFlags(f *startFlags) []optionFlag {
	str := func(p *string) func() (any, error) { return func() (any, error) { return *p, nil } }
	strs := func(p *[]string) func() (any, error) { return func() (any, error) { return *p, nil } }
	boolean := func(p *bool) func() (any, error) { return func() (any, error) { return *p, nil } }
	// off is a --no-<x> flag: it sets the field to false, or back to its default (nil: true).
	off := func(p *bool) func() (any, error) {
		return func() (any, error) {
			if !*p {
				return (*bool)(nil), nil
			}
			no := false
			return &no, nil
		}
	}
	count := func(p *int) func() (any, error) {
		return func() (any, error) {
			if *p < 0 {
				return nil, fmt.Errorf("%d: must not be negative", *p)
			}
			return *p, nil
		}
	}
	parsed := func(parse func(string) (int64, error)) func(p *string) func() (any, error) {
		return func(p *string) func() (any, error) { return func() (any, error) { return parse(*p) } }
	}
	ms, size := parsed(appspec.ParseDuration), parsed(appspec.ParseMemory)
	return []optionFlag{
		{"namespace", "namespace", str(&f.namespace)},
		{"interpreter", "interpreter", str(&f.interpreter)},
		{"node-args", "interpreter_args", func() (any, error) {
			if f.nodeArgs == "" || f.nodeArgs == "null" { // PM2: --node-args=null removes them
				return []string(nil), nil
			}
			return strings.Fields(f.nodeArgs), nil
		}},
		{"execute-command", "exec_mode", func() (any, error) {
			if f.forkX {
				return "fork", nil
			}
			return nil, nil
		}},
		{"exec-mode", "exec_mode", func() (any, error) {
			if f.forkX {
				return nil, nil // -x wins
			}
			m := strings.TrimSuffix(f.execMode, "_mode")
			if m != "fork" && m != "cluster" {
				return nil, fmt.Errorf("%q: want fork or cluster", f.execMode)
			}
			return m, nil
		}},
		{"instances", "instances", func() (any, error) { return appspec.ParseInstances(f.instances, runtime.NumCPU()) }},
		{"listen-timeout", "listen_timeout", ms(&f.listenTimeout)},
		{"kill-timeout", "kill_timeout", ms(&f.killTimeout)},
		{"min-uptime", "min_uptime", ms(&f.minUptime)},
		{"restart-delay", "restart_delay", ms(&f.restartDelay)},
		{"exp-backoff-restart-delay", "exp_backoff_restart_delay", ms(&f.expBackoff)},
		{"max-memory-restart", "max_memory_restart", size(&f.maxMemory)},
		{"log-max-size", "log_max_size", size(&f.logMaxSize)},
		{"cron", "cron_restart", func() (any, error) {
			if err := appspec.ValidateCron(f.cron); err != nil {
				return nil, err
			}
			if f.cron == "0" {
				return "", nil // PM2: 0 turns cron_restart off
			}
			return f.cron, nil
		}},
		{"stop-exit-codes", "stop_exit_codes", func() (any, error) {
			var codes []int
			var errs []error
			for _, c := range f.stopExitCodes {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil {
					errs = append(errs, fmt.Errorf("%q is not an exit code", c))
					continue
				}
				codes = append(codes, n)
			}
			return codes, errors.Join(errs...)
		}},
		{"kill-signal", "kill_signal", func() (any, error) {
			sig := strings.ToUpper(f.killSignal)
			if sig != "" && !strings.HasPrefix(sig, "SIG") {
				sig = "SIG" + sig
			}
			return sig, nil
		}},
		{"wait-ready", "wait_ready", boolean(&f.waitReady)},
		{"shutdown-with-message", "shutdown_with_message", boolean(&f.shutdownWithMessage)},
		{"no-autorestart", "autorestart", off(&f.noAutorestart)},
		{"no-autostart", "autostart", off(&f.noAutostart)},
		{"no-drain", "drain", off(&f.noDrain)},
		{"drain-timeout", "drain_timeout", ms(&f.drainTimeout)},
		{"max-restarts", "max_restarts", count(&f.maxRestarts)},
		{"merge-logs", "merge_logs", boolean(&f.mergeLogs)},
		{"sticky", "sticky", boolean(&f.sticky)},
		{"time", "time", boolean(&f.timeLog)},
		{"log-date-format", "log_date_format", str(&f.logDateFormat)},
		// Log paths: a relative one is relative to the app's cwd (api.Overrides.Apply).
		{"output", "out_file", str(&f.out)},
		{"error", "error_file", str(&f.errFile)},
		{"log", "log_file", str(&f.log)},
		{"instance-var", "instance_var", str(&f.instanceVar)},
		{"increment-var", "increment_var", str(&f.incrementVar)},
		{"listen", "listen", strs(&f.listen)},
		{"watch", "watch", func() (any, error) {
			var paths []string
			for _, w := range f.watch {
				if w == "true" {
					w = "."
				}
				if w != "false" && w != "" {
					paths = append(paths, w)
				}
			}
			return paths, nil
		}},
		{"ignore-watch", "ignore_watch", strs(&f.ignoreWatch)},
		{"log-type", "log_type", func() (any, error) {
			if f.logType != "" && f.logType != "json" {
				return nil, fmt.Errorf("%q: want json", f.logType)
			}
			return f.logType, nil
		}},
		{"log-max-files", "log_max_files", count(&f.logMaxFiles)},
		{"pid", "pid_file", str(&f.pidFile)},
		{"source-map-support", "source_map_support", func() (any, error) {
			on := f.sourceMaps
			return &on, nil
		}},
		{"disable-source-map-support", "source_map_support", func() (any, error) {
			off := !f.noSourceMaps
			return &off, nil
		}},
		{"uid", "uid", str(&f.uid)},
		{"gid", "gid", str(&f.gid)},
		// Readiness from a flag is checked every second (a start waits for it), not every 10 s.
		{"readiness-http", "readiness_probe", func() (any, error) { return everySecond(appspec.ProbeFromURL(f.readinessHTTP)) }},
		{"readiness-tcp", "readiness_probe", func() (any, error) { return everySecond(appspec.ProbeFromHostPort(f.readinessTCP)) }},
		{"liveness-http", "liveness_probe", func() (any, error) { return appspec.ProbeFromURL(f.livenessHTTP) }},
	}
}

// optionOverrides returns the option flags given on the command line (by
// fs.Changed) as overrides of an app's definition: `start` applies them to
// the app it builds, `restart` sends them to the daemon. It returns one
// error per bad value, each naming its flag.
func optionOverrides(fs *pflag.FlagSet, f *startFlags) (api.Overrides, []error) {
	var ov api.Overrides
	var errs []error
	for _, o := range optionFlags(f) {
		if !fs.Changed(o.flag) {
			continue
		}
		v, err := o.value()
		if err == nil && v != nil {
			err = ov.Set(o.field, v)
		}
		if err != nil {
			// One line per problem, each naming the flag.
			list := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			}
			for _, e := range list {
				errs = append(errs, fmt.Errorf("--%s: %w", o.flag, e))
			}
		}
	}
	return ov, errs
}

// everySecond sets a probe made from a flag to run every second.
func everySecond(p *appspec.Probe, err error) (*appspec.Probe, error) {
	if p != nil {
		p.PeriodSeconds = 1
	}
	return p, err
}
