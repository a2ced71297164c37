package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/ecosystem"
	"github.com/spf13/cobra"
)

// report prints one confirmation line per process, the notes, then the table.
func (a *app) report(ctx context.Context, b api.Backend, procs []api.Proc, notes []string) error {
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
	all, err := listRows(ctx, b)
	if err != nil {
		return err
	}
	writeList(a.stdout, all, time.Now())
	return nil
}

// targetsCommand builds stop, delete and reset.
func (a *app) targetsCommand(use, short string, aliases []string, verb string, f func(api.Backend) func(context.Context, []string) ([]api.Proc, error)) *cobra.Command {
	var only string
	var watch bool
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
			if use == "stop" && watch { // PM2's stop --watch: watching off for good
				if u, ok := b.(api.Unwatcher); ok {
					if procs, err = u.Unwatch(ctx, targets); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(a.stdout, "[corral] %s %s\n", verb, strings.Join(targets, " "))
			return a.report(ctx, b, procs, nil)
		}),
	}
	cmd.Flags().StringVar(&only, "only", "", "with an ecosystem file: only these apps (a,b)")
	if use == "stop" {
		cmd.Flags().BoolVar(&watch, "watch", false, "also turn file watching off for good (restart --watch turns it on)")
	} else {
		cmd.Flags().BoolVar(&watch, "watch", false, "accepted for PM2 compatibility")
	}
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
				done := a.progress(ctx, b, func() []string { return []string{args[0]} })
				procs, err := b.Scale(ctx, args[0], spec)
				done()
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "[corral] Scaling %s to %s\n", args[0], spec)
				return a.report(ctx, b, procs, nil)
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
				var err error
				if procs, err = api.Match(procs, args); err != nil {
					return err
				}
			}
			for _, p := range procs {
				fmt.Fprintln(a.stdout, p.PID)
			}
			return nil
		}),
	}
}

// pinger is a Backend that can tell that it answers without waiting for its
// process table (api.Client asks the daemon's server, which answers ping
// itself).
type pinger interface {
	Ping(ctx context.Context) (api.PingResponse, error)
}

func (a *app) pingCommand() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "ping",
		Short: "start the daemon if needed and check that it answers",
		Args:  cobra.NoArgs,
		RunE: a.withBackend(func(ctx context.Context, b api.Backend, args []string) error {
			resp := api.PingResponse{Pong: true}
			if p, ok := b.(pinger); ok {
				r, err := p.Ping(ctx)
				if err != nil {
					return err
				}
				resp = r
			} else if _, err := b.List(ctx); err != nil {
				return err
			}
			if jsonOut {
				// The daemon's answer as is: {"pong":true,"pid":…,"version":…,"goroutines":…}.
				out, err := json.Marshal(resp)
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, string(out))
				return nil
			}
			fmt.Fprintln(a.stdout, "pong")
			return nil
		}),
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the daemon's answer as JSON (pid, version, goroutines)")
	return cmd
}

// killGrace bounds how long kill waits for the daemon to exit after SIGTERM.
const killGrace = 30 * time.Second

// killPingTimeout bounds how long kill waits for the daemon to answer before it takes it for
// unresponsive (and stops it by signal: SIGTERM, which stops the apps, then SIGKILL after killGrace).
const killPingTimeout = 3 * time.Second

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
			// Bounded: a daemon stopped by SIGSTOP takes the connection and never answers.
			pong, err := daemonproc.Ping(ctx, p, killPingTimeout)
			if err != nil {
				var hung *daemonproc.NoAnswerError
				if !api.IsUnreachable(err) && !errors.As(err, &hung) {
					return err
				}
				pid, _ := daemonproc.ReadPid(p.PidFile)
				if pid > 0 && daemonproc.Alive(pid) && daemonproc.IsDaemon(pid) && pid != os.Getpid() {
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
