package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"github.com/spf13/cobra"
)

type eventsFlags struct {
	lines    int
	nostream bool
	jsonOut  bool
}

func (a *app) eventsCommand() *cobra.Command {
	f := &eventsFlags{}
	cmd := &cobra.Command{
		Use:   "events [app...]",
		Short: "print what happened to the processes (started, exited, restarted, errored, reloads), then follow",
		Long: "events prints the daemon's recent events (the last --lines of them), oldest first, then every new\n" +
			"one as it happens: status changes, exits (code, signal, uptime), restarts and their reason, failed\n" +
			"starts, and what users asked for (start, stop, restart, reload, scale, delete).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.lines < 0 {
				return fmt.Errorf("events: --lines %d: must not be negative", f.lines)
			}
			return a.events(cmd.Context(), args, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.lines, "lines", 50, "how many past events to print first")
	fl.BoolVar(&f.nostream, "nostream", false, "print the past events and exit")
	fl.BoolVar(&f.jsonOut, "json", false, "one JSON object per line")
	return cmd
}

func (a *app) events(ctx context.Context, apps []string, f *eventsFlags) error {
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	src, ok := b.(api.EventSource)
	if !ok {
		return errors.New("events: this daemon keeps no event feed")
	}
	if len(apps) > 0 {
		procs, err := b.List(ctx)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, p := range procs {
			known[p.Name] = true
		}
		for _, n := range apps {
			if !known[n] {
				return fmt.Errorf("events: %w", api.UnknownTargetError(n))
			}
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ch, err := src.Events(ctx, api.EventsRequest{Backlog: f.lines, Follow: !f.nostream, Apps: apps})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(a.stdout)
	for e := range ch {
		if f.jsonOut {
			if err := enc.Encode(e); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(a.stdout, FormatEvent(e))
	}
	return nil
}

// FormatEvent renders one event as a line a person reads after an incident:
//
//	2026-11-30 11:58:02.114  api[2] pid 4242  exit  code 1, after 3.2s (unexpected)
func FormatEvent(e events.Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("2006-01-02 15:04:05.000"))
	b.WriteString("  ")
	who := e.App
	if e.PMID != nil {
		who = fmt.Sprintf("%s[%d]", e.App, *e.PMID)
	}
	if who == "" {
		who = "-"
	}
	b.WriteString(who)
	if e.PID > 0 {
		fmt.Fprintf(&b, " pid %d", e.PID)
	}
	b.WriteString("  ")
	b.WriteString(string(e.Type))
	var what []string
	switch e.Type {
	case events.Status:
		from := e.From
		if from == "" {
			from = "new"
		}
		what = append(what, from+" → "+e.To)
	case events.Exit:
		if e.Signal != "" {
			what = append(what, "signal "+e.Signal)
		} else if e.Code != nil {
			what = append(what, fmt.Sprintf("code %d", *e.Code))
		}
		what = append(what, "after "+(time.Duration(e.Uptime)*time.Millisecond).String())
	case events.Health:
		what = append(what, e.To)
	}
	if e.Reason != "" {
		what = append(what, "("+e.Reason+")")
	}
	if e.Message != "" {
		what = append(what, e.Message)
	}
	if len(what) > 0 {
		b.WriteString("  ")
		b.WriteString(strings.Join(what, " "))
	}
	for _, l := range e.Stderr {
		b.WriteString("\n    ")
		b.WriteString(l)
	}
	return b.String()
}
