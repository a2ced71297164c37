package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/container"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/spf13/cobra"
)

// RuntimeName is the argv[0] base name that makes the binary behave as
// `corral runtime` (PM2's pm2-runtime).
const RuntimeName = "corral-runtime"

// defaultWebPort is the probe port of a bare --web (PM2's default).
const defaultWebPort = "9615"

// RuntimeFunc runs apps in the foreground until they end or a stop signal
// arrives and returns the process exit code. The real one (cmd/corral) calls
// container.Init and then container.Run. `corral runtime` sets every field of
// o but Logger and Signals: Home is $CORRAL_HOME made absolute (empty for a
// private temporary directory), and Ready prints the probe address.
type RuntimeFunc func(ctx context.Context, apps []appspec.App, o container.Options) int

// RuntimeArgs rewrites a command line whose program is named corral-runtime
// (for example through a symbolic link) into the equivalent `corral runtime`
// one: "corral-runtime app.js" and "corral-runtime start app.js" both mean
// "corral runtime start app.js". Other command lines are returned unchanged.
func RuntimeArgs(args []string) []string {
	if len(args) == 0 || filepath.Base(args[0]) != RuntimeName {
		return args
	}
	rest := args[1:]
	if len(rest) == 1 && (rest[0] == "--version" || rest[0] == "-v") {
		return []string{"corral", "--version"}
	}
	return append([]string{"corral", "runtime"}, rest...)
}

// runtimeFlags are the options `corral runtime` adds to start's.
type runtimeFlags struct {
	raw, json, noAutoExit bool
	port, web             string
}

func (a *app) runtimeCommand() *cobra.Command {
	f := &startFlags{}
	rf := &runtimeFlags{}
	cmd := &cobra.Command{
		Use:     "runtime [start] <script|ecosystem file> [start flags] [-- args...]",
		Aliases: []string{"docker"},
		Short:   "run apps in the foreground, for containers (PM2's pm2-runtime; also as corral-runtime)",
		RunE: func(cmd *cobra.Command, args []string) error {
			pos, extra := splitDash(cmd, args)
			if len(pos) > 0 && pos[0] == "start" && (len(pos) > 1 || !fileExists(a.abs("start"))) {
				pos = pos[1:]
			}
			// PM2 spells it "--web 9615": a bare --web followed by a port.
			if cmd.Flags().Changed("web") && rf.web == defaultWebPort && len(pos) == 2 {
				for i, p := range pos {
					if isPortNumber(p) && !fileExists(a.abs(p)) {
						rf.web, pos = p, []string{pos[1-i]}
						break
					}
				}
			}
			switch {
			case len(pos) == 0:
				return errors.New("runtime: no script or ecosystem file given (corral runtime start <script|ecosystem file>)")
			case len(pos) > 1 && len(extra) == 0:
				return fmt.Errorf("runtime: one script or ecosystem file at a time (put app arguments after --): %q", pos[1:])
			}
			return a.runRuntime(cmd, f, rf, pos[0], extra)
		},
	}
	a.addStartFlags(cmd.Flags(), f)
	fl := cmd.Flags()
	fl.BoolVar(&rf.raw, "raw", false, "print app output as is, without the <id>|<name> prefix")
	fl.BoolVar(&rf.json, "json", false, "print app output as JSON lines")
	fl.BoolVar(&rf.noAutoExit, "no-auto-exit", false, "keep running when every app has stopped")
	fl.StringVar(&rf.port, "port", "", "serve /healthz, /readyz and /metrics on this port or host:port (0: any free port)")
	fl.StringVar(&rf.web, "web", "", "alias of --port (PM2; default port "+defaultWebPort+")")
	fl.Lookup("web").NoOptDefVal = defaultWebPort
	return cmd
}

// probeAddr turns --port/--web into a listen address ("" when neither is set).
func probeAddr(port, web string) (string, error) {
	v, flag := port, "port"
	if v == "" {
		v, flag = web, "web"
	}
	if v == "" {
		return "", nil
	}
	host, p := "", v
	if h, pp, err := net.SplitHostPort(v); err == nil {
		host, p = h, pp
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("--%s %q: want a port (0-65535) or host:port", flag, v)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

func isPortNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
}

// runtimeApps builds the apps of `corral runtime` exactly as start does.
func (a *app) runtimeApps(cmd *cobra.Command, f *startFlags, target string, extra []string) ([]appspec.App, error) {
	if isConfigArg(target) {
		apps, err := a.loadEcosystem(target, f.only, f.env)
		if err != nil {
			return nil, err
		}
		if len(apps) == 0 {
			return nil, fmt.Errorf("%s: no apps", target)
		}
		return apps, nil
	}
	cwd := a.dir
	if f.cwd != "" {
		cwd = a.abs(f.cwd)
	}
	app, err := a.appFromFlags(cmd.Flags(), f, target, cwd, extra)
	if err != nil {
		return nil, err
	}
	return []appspec.App{app}, nil
}

func (a *app) runRuntime(cmd *cobra.Command, f *startFlags, rf *runtimeFlags, target string, extra []string) error {
	if rf.raw && rf.json {
		return errors.New("runtime: --raw and --json exclude each other")
	}
	addr, err := probeAddr(rf.port, rf.web)
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	apps, err := a.runtimeApps(cmd, f, target, extra)
	if err != nil {
		return err
	}
	if a.opts.Runtime == nil {
		return errors.New("runtime: this binary has no container runtime built in")
	}
	home := a.getenv(daemonproc.EnvHome)
	if home != "" {
		home = a.abs(home)
	}
	stderr := a.stderr
	code := a.opts.Runtime(cmd.Context(), apps, container.Options{
		Home: home, Self: a.self, ProbeAddr: addr,
		Raw: rf.raw, JSON: rf.json, NoAutoExit: rf.noAutoExit,
		Stdout: a.stdout, Stderr: stderr,
		Ready: func(probe string) {
			if probe != "" {
				fmt.Fprintf(stderr, "%s: probes on %s\n", RuntimeName, probe)
			}
		},
	})
	if code != 0 {
		return exitCode(code)
	}
	return nil
}
