package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/lstable"
	"github.com/corralhq/corral/internal/pm2json"
	"github.com/spf13/cobra"
)

func (a *app) listCommand() *cobra.Command {
	var sortBy string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "l", "ps", "status"},
		Short:   "list processes",
		Args:    cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			procs, err := listRows(ctx, b)
			if err != nil {
				return err
			}
			if err := sortProcs(procs, sortBy); err != nil {
				return err
			}
			writeList(a.stdout, procs, time.Now())
			a.warnOutOfDate(ctx, b)
			return nil
		}),
	}
	cmd.Flags().StringVar(&sortBy, "sort", "", "sort by field[:asc|desc] (id, name, pid, uptime, restarts, status, cpu, memory)")
	return cmd
}

// rowLister is a Backend that lists the instances with only the fields `ls` prints (api.Client:
// a much smaller answer than List's).
type rowLister interface {
	ListRows(ctx context.Context) ([]api.Proc, error)
}

// listRows lists the instances for writeList: only the fields it prints when b can (rowLister).
func listRows(ctx context.Context, b api.Backend) ([]api.Proc, error) {
	if rl, ok := b.(rowLister); ok {
		return rl.ListRows(ctx)
	}
	return b.List(ctx)
}

// sortProcs sorts by PM2's --sort field[:asc|desc].
func sortProcs(procs []api.Proc, spec string) error {
	if spec == "" {
		return nil
	}
	field, order, _ := strings.Cut(spec, ":")
	var less func(x, y api.Proc) bool
	switch field {
	case "id":
		less = func(x, y api.Proc) bool { return x.PMID < y.PMID }
	case "name":
		less = func(x, y api.Proc) bool { return x.Name < y.Name }
	case "pid":
		less = func(x, y api.Proc) bool { return x.PID < y.PID }
	case "uptime":
		less = func(x, y api.Proc) bool { return x.StartedAt.After(y.StartedAt) }
	case "restarts":
		less = func(x, y api.Proc) bool { return x.Restarts < y.Restarts }
	case "status":
		less = func(x, y api.Proc) bool { return x.Status < y.Status }
	case "cpu":
		less = func(x, y api.Proc) bool { return x.CPU < y.CPU }
	case "memory", "mem":
		less = func(x, y api.Proc) bool { return x.Memory < y.Memory }
	default:
		return fmt.Errorf("--sort %s: unknown field %q", spec, field)
	}
	switch order {
	case "", "asc":
		sort.SliceStable(procs, func(i, j int) bool { return less(procs[i], procs[j]) })
	case "desc":
		sort.SliceStable(procs, func(i, j int) bool { return less(procs[j], procs[i]) })
	default:
		return fmt.Errorf("--sort %s: order %q: want asc or desc", spec, order)
	}
	return nil
}

func (a *app) jlistCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "jlist",
		Short: "list processes as PM2's JSON (one line)",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			if jl, ok := b.(api.JLister); ok { // the daemon renders it (api/fastlist.go)
				out, err := jl.JList(ctx)
				if err == nil {
					_, err = a.stdout.Write(out)
					return err
				}
				if !errors.Is(err, errors.ErrUnsupported) {
					return err
				}
			}
			procs, err := b.List(ctx)
			if err != nil {
				return err
			}
			out, err := pm2json.JList(procs)
			if err != nil {
				return fmt.Errorf("jlist: %w", err)
			}
			_, err = a.stdout.Write(out)
			return err
		}),
	}
}

func (a *app) prettylistCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "prettylist",
		Short: "list processes as PM2's prettylist (Node util.inspect layout)",
		Args:  cobra.NoArgs,
		RunE: a.withProcs(func(procs []api.Proc, args []string) error {
			_, err := fmt.Fprint(a.stdout, pm2json.PrettyList(procs))
			return err
		}),
	}
}

func (a *app) showCommand() *cobra.Command {
	var showEnv bool
	cmd := &cobra.Command{
		Use:     "show <id|name>",
		Aliases: []string{"describe", "desc", "info"},
		Short:   "describe a process",
		Long: "Describe a process. Environment variables that differ from this shell's are listed,\n" +
			"with the values of names that look secret (SECRET, TOKEN, PASSWORD, KEY, ...) masked;\n" +
			"--env prints the whole environment unmasked.",
		Args: cobra.ExactArgs(1),
		RunE: a.withProcs(func(procs []api.Proc, args []string) error {
			match := api.Lookup(procs, args[0])
			if match == nil {
				return api.UnknownTargetError(args[0])
			}
			now := time.Now()
			for _, p := range match {
				a.describe(p, now, showEnv)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&showEnv, "env", false, "print the whole environment, unmasked")
	return cmd
}

func (a *app) describe(p api.Proc, now time.Time, showEnv bool) {
	w := a.stdout
	fmt.Fprintf(w, " Describing process with id %d - name %s\n", p.PMID, p.Name)
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	t := &table{}
	t.add("status", p.Status)
	t.add("name", p.Name)
	t.add("namespace", ns)
	t.add("pid", strconv.Itoa(p.PID))
	t.add("restarts", strconv.Itoa(p.Restarts))
	t.add("uptime", uptime(p, now))
	t.add("script path", orNA(p.ExecPath))
	t.add("script args", joinOrNA(p.App.Args))
	t.add("error log path", orNA(p.ErrLog))
	t.add("out log path", orNA(p.OutLog))
	if p.CombinedLog != "" {
		t.add("log path", p.CombinedLog)
	}
	t.add("pid path", orNA(p.PidFile))
	t.add("interpreter", orNA(p.Interpreter))
	t.add("interpreter args", joinOrNA(p.App.InterpreterArgs))
	t.add("script id", strconv.Itoa(p.PMID))
	t.add("exec cwd", orNA(p.Cwd))
	t.add("exec mode", pm2json.ExecMode(p.App.ExecMode))
	t.add("instances", strconv.Itoa(max(p.App.Instances, 1)))
	t.add("instance", fmt.Sprintf("%s=%d", orDefaultStr(p.App.InstanceVar, "NODE_APP_INSTANCE"), p.Instance))
	if len(p.App.Listen) > 0 {
		t.add("listen", strings.Join(p.App.Listen, ", "))
	}
	watch := "✘"
	if len(p.App.Watch) > 0 {
		watch = "✔ " + strings.Join(p.App.Watch, ", ")
	}
	t.add("watch & reload", watch)
	t.add("autorestart", strconv.FormatBool(p.App.AutorestartOn()))
	t.add("unstable restarts", strconv.Itoa(p.UnstableRestarts))
	exit := strconv.Itoa(p.ExitCode)
	if p.ExitSignal != "" {
		exit += " (" + p.ExitSignal + ")"
	}
	t.add("last exit", exit)
	if p.App.ReadinessProbe != nil {
		t.add("readiness probe", p.App.ReadinessProbe.String())
	}
	if p.Readiness != "" {
		t.add("readiness", p.Readiness)
	}
	if p.App.LivenessProbe != nil {
		t.add("liveness probe", p.App.LivenessProbe.String())
	}
	if p.LivenessRestarts > 0 || p.RestartReason != "" {
		t.add("liveness restarts", strconv.Itoa(p.LivenessRestarts))
		t.add("restart reason", p.RestartReason)
	}
	t.add("created at", fmtTime(p.CreatedAt))
	if d := p.Drain; d != nil {
		t.add("last drain", fmt.Sprintf("%d connections drained, %d cut, %d ms (pid %d, %s)", d.Drained, d.Cut, d.Ms, d.PID, fmtTime(d.At)))
	}
	t.add("cpu", humanCPU(p.CPU))
	t.add("memory", humanBytes(p.Memory))
	if b := p.Balancer; b != nil {
		t.add("balancer", fmt.Sprintf("%d handed off, %d in flight, %d refused, %d re-routed", b.HandedOff, b.InFlight, b.Refused, b.Rerouted))
		t.add("waiting for a worker", strconv.Itoa(b.Waiting))
	}
	t.write(w)
	for _, n := range p.Notes {
		fmt.Fprintf(w, " note: %s\n", n)
	}

	keys := make([]string, 0, len(p.Env))
	local := a.envMap()
	for k, v := range p.Env {
		if showEnv {
			keys = append(keys, k)
		} else if lv, ok := local[k]; !ok || lv != v {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if showEnv {
		fmt.Fprintln(w, " Environment")
	} else {
		fmt.Fprintln(w, " Divergent env variables from local env (secret-looking values masked; --env shows all)")
	}
	if len(keys) == 0 {
		fmt.Fprintln(w, " (none)")
		return
	}
	et := &table{}
	for _, k := range keys {
		v := p.Env[k]
		if !showEnv {
			v = maskValue(k, v)
		}
		et.add(k, v)
	}
	et.write(w)
}

func orDefaultStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// warnOutOfDate tells, as PM2's ls does, when the daemon runs another version than this CLI
// (after an upgrade of the binary on disk): `corral update` hands the apps over to the new one.
func (a *app) warnOutOfDate(ctx context.Context, b api.Backend) {
	p, ok := b.(pinger)
	if !ok {
		return
	}
	var pong api.PingResponse
	var err error
	cached := false
	if lp, ok := b.(interface {
		LastPong() (api.PingResponse, bool)
	}); ok {
		pong, cached = lp.LastPong() // the ping that found the daemon a moment ago (daemonproc.Ensure)
	}
	if !cached {
		pong, err = p.Ping(ctx)
	}
	if err != nil {
		return
	}
	if w := lstable.OutOfDate(pong.Version, Version); w != "" {
		io.WriteString(a.stdout, w)
	}
}
