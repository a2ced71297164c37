// Package container is corral's container mode (`corral runtime`, PM2's pm2-runtime): it runs apps in
// the foreground of the calling process, with the daemon's process manager in-process, logs on stdout
// and stderr, graceful stop on SIGTERM/SIGINT, an exit code that says how the apps ended, and HTTP
// probes (/healthz, /readyz, /metrics) for Kubernetes.
//
// Init splits the process in two, as tini does: the first process (PID 1 in a container) becomes the
// child subreaper, forwards signals and reaps every zombie re-parented to it, while its child runs the
// apps. Processes that apps orphan are therefore always reaped, whatever process group they are in.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/daemon"
	"github.com/corralhq/corral/internal/fdhygiene"
	"github.com/corralhq/corral/internal/logs"
	"github.com/corralhq/corral/internal/metrics"
	"golang.org/x/sys/unix"
)

// Options configures Run.
type Options struct {
	// Home is the state directory for log files; a fresh temporary directory when empty.
	Home string
	// Self is the corral binary, for apps that use listen (see daemon.Config.Self).
	Self string
	// ProbeAddr, when set, serves /healthz, /readyz and /metrics there (e.g. ":9615").
	ProbeAddr string
	// Raw prints app output as is; JSON prints one JSON object per line; otherwise each line is
	// prefixed with "<pm_id>|<name> | ".
	Raw, JSON bool
	// NoAutoExit keeps running when every app has stopped.
	NoAutoExit bool
	// Stdout and Stderr receive the apps' output; os.Stdout and os.Stderr when nil.
	Stdout, Stderr io.Writer
	// Logger receives the runtime's own messages; they go to Stderr when nil.
	Logger *slog.Logger
	// Signals are the signals that stop the runtime gracefully; SIGTERM and SIGINT when nil.
	Signals []os.Signal
	// Ready, if set, is called with the probe listener's address once apps were started.
	Ready func(probeAddr string)
}

// Run starts apps and runs them until a stop signal arrives or (unless NoAutoExit) every app has
// stopped for good. It returns the process exit code: 0 when the apps were stopped by a signal or all
// exited 0, otherwise the first non-zero exit code of an app (128+signal for a signal), or 1 when an app
// could not be started.
func Run(ctx context.Context, apps []appspec.App, o Options) int {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(o.Stderr, nil)).With("component", "corral-runtime")
	}
	if o.Home == "" {
		dir, err := os.MkdirTemp("", "corral-runtime-")
		if err != nil {
			lg.Error("state directory", "err", err)
			return 1
		}
		defer os.RemoveAll(dir)
		o.Home = dir
	}
	m, err := daemon.New(daemon.Config{Home: o.Home, Logger: lg, Self: o.Self})
	if err != nil {
		lg.Error("start", "err", err)
		return 1
	}
	defer m.Close()

	sigs := o.Signals
	if sigs == nil {
		sigs = []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, sigs...)
	defer signal.Stop(sigc)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines, err := m.Logs(ctx, nil) // every app, including those started later
	if err != nil {
		lg.Error("logs", "err", err)
		return 1
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for l := range lines {
			printLine(o, l)
		}
	}()

	var probe net.Listener
	if o.ProbeAddr != "" {
		probe, err = net.Listen("tcp", o.ProbeAddr)
		if err != nil {
			lg.Error("probe listener", "addr", o.ProbeAddr, "err", err)
			return 1
		}
		srv := &http.Server{Handler: Handler(m), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(probe)
		defer srv.Close()
	}

	if _, err := m.Start(ctx, apps, api.StartOptions{}); err != nil {
		lg.Error("start apps", "err", err)
		m.Shutdown(context.Background())
		return 1
	}
	if o.Ready != nil {
		addr := ""
		if probe != nil {
			addr = probe.Addr().String()
		}
		o.Ready(addr)
	}

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	code := 0
loop:
	for {
		select {
		case s := <-sigc:
			lg.Info("stopping every app", "signal", s.String())
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
			procs, _ := m.List(ctx)
			if done, c := finished(procs); done && !o.NoAutoExit {
				lg.Info("every app has stopped; exiting", "code", c)
				code = c
				break loop
			}
		}
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer stopCancel()
	if err := m.Shutdown(stopCtx); err != nil {
		lg.Error("stop", "err", err)
		if code == 0 {
			code = 1
		}
	}
	cancel()
	<-printed
	return code
}

// finished reports whether no instance can run again, and the exit code that reports it.
func finished(procs []api.Proc) (bool, int) {
	if len(procs) == 0 {
		return true, 0
	}
	code := 0
	for _, p := range procs {
		switch p.Status {
		case string(daemon.StatusStopped), string(daemon.StatusErrored):
			if code == 0 {
				code = p.ExitCode
				if p.Status == string(daemon.StatusErrored) && code == 0 {
					code = 1
				}
			}
		default:
			return false, 0
		}
	}
	return true, code
}

// printLine writes an app's line to Stdout, or Stderr for its stderr, in the chosen format.
func printLine(o Options, l api.LogLine) {
	w := o.Stdout
	if l.Stream == "err" {
		w = o.Stderr
	}
	switch {
	case o.JSON:
		logs.WriteJSON(w, logs.Line{App: l.Name, ID: l.PMID, Stream: l.Stream, Text: l.Text, Time: l.Time}, "")
	case o.Raw:
		fmt.Fprintln(w, l.Text)
	default:
		fmt.Fprintf(w, "%d|%s | %s\n", l.PMID, l.Name, l.Text)
	}
}

// Handler serves the probes: /healthz answers 200 while the runtime runs; /readyz answers 200 when
// every instance is online (past its readiness probe, if any) and has not failed that probe since
// (503 with the list otherwise); /metrics is Prometheus text.
func Handler(b api.Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		procs, err := b.List(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var notReady []string
		for _, p := range procs {
			switch {
			case p.Status != string(daemon.StatusOnline):
				notReady = append(notReady, fmt.Sprintf("%d|%s: %s", p.PMID, p.Name, p.Status))
			case strings.HasPrefix(p.Readiness, "not ready"): // online, then failed its readiness probe
				notReady = append(notReady, fmt.Sprintf("%d|%s: %s", p.PMID, p.Name, p.Readiness))
			}
		}
		if len(procs) == 0 || len(notReady) > 0 {
			sort.Strings(notReady)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %d of %d instances: %v\n", len(notReady), len(procs), notReady)
			return
		}
		fmt.Fprintf(w, "ready: %d instances online\n", len(procs))
	})
	mux.Handle("/metrics", metrics.Handler(func() []metrics.Proc { return snapshot(b) }))
	return mux
}

func snapshot(b api.Backend) []metrics.Proc {
	procs, err := b.List(context.Background())
	if err != nil {
		return nil
	}
	out := make([]metrics.Proc, 0, len(procs))
	for _, p := range procs {
		mp := metrics.Proc{Name: p.Name, Namespace: p.Namespace, ID: p.PMID, PID: p.PID, Status: p.Status,
			CPU: p.CPU, Memory: p.Memory, Restarts: p.Restarts, LivenessRestarts: p.LivenessRestarts}
		if b := p.Balancer; b != nil {
			mp.Balancer = &metrics.Balancer{HandedOff: b.HandedOff, InFlight: b.InFlight, Refused: b.Refused, Rerouted: b.Rerouted, Waiting: b.Waiting}
		}
		if p.Status == string(daemon.StatusOnline) && !p.StartedAt.IsZero() {
			mp.Uptime = time.Since(p.StartedAt)
		}
		out = append(out, mp)
	}
	return out
}

// ChildEnv marks the child process of Init.
const ChildEnv = "CORRAL_RUNTIME_CHILD"

// Init makes the runtime safe as PID 1: unless this process is already Init's child, it becomes the
// child subreaper, re-executes itself (same arguments) as a child, forwards every catchable signal to
// it, reaps every zombie, and returns the child's exit code with ok true; the caller exits with it.
// In the child it returns ok false and the caller runs the apps.
func Init() (code int, ok bool) {
	// Descriptors inherited from whoever started the runtime are closed, so that neither the
	// child nor the apps get them.
	if err := fdhygiene.CloseInherited(); err != nil {
		fmt.Fprintln(os.Stderr, "corral-runtime:", err)
	} else if err := fdhygiene.CloexecFrom(3); err != nil {
		fmt.Fprintln(os.Stderr, "corral-runtime:", err)
	}
	if os.Getenv(ChildEnv) != "" {
		return 0, false
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "corral-runtime: cannot become child subreaper:", err)
		}
	}
	return initLoop(), true
}

func initLoop() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-runtime: ", err)
		return 1
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc) // everything catchable, SIGCHLD included
	child, err := os.StartProcess(exe, os.Args, &os.ProcAttr{
		Env:   append(os.Environ(), ChildEnv+"=1"),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-runtime: start:", err)
		return 1
	}
	for {
		// Reap everything that has exited; the child's status ends the loop.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				if errors.Is(err, syscall.ECHILD) {
					return 1
				}
				break
			}
			if pid == child.Pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
		s := <-sigc
		if s != syscall.SIGCHLD && s != syscall.SIGURG {
			child.Signal(s)
		}
	}
}
