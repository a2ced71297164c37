package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/logs"
	"github.com/spf13/cobra"
)

type logsFlags struct {
	lines            int
	nostream         bool
	errOnly, outOnly bool
	raw, jsonOut     bool
	timestamp        string
}

func (a *app) logsCommand() *cobra.Command {
	f := &logsFlags{}
	cmd := &cobra.Command{
		Use:   "logs [id|name|namespace|all]",
		Short: "print the last lines of the logs, then stream new ones",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := "all"
			if len(args) == 1 {
				target = args[0]
			}
			if f.errOnly && f.outOnly {
				return errors.New("logs: --err and --out exclude each other")
			}
			if f.lines < 0 {
				return fmt.Errorf("logs: --lines %d: must not be negative", f.lines)
			}
			return a.logs(cmd.Context(), target, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.lines, "lines", 15, "how many past lines to print per file")
	fl.BoolVar(&f.nostream, "nostream", false, "print the past lines and exit")
	fl.BoolVar(&f.errOnly, "err", false, "only stderr")
	fl.BoolVar(&f.outOnly, "out", false, "only stdout")
	fl.BoolVar(&f.raw, "raw", false, "lines without prefixes")
	fl.BoolVar(&f.jsonOut, "json", false, "JSON lines {message, timestamp, type, process_id, app_name}")
	fl.StringVar(&f.timestamp, "timestamp", "", "prefix streamed lines with their time (Go layout)")
	fl.Lookup("timestamp").NoOptDefVal = time.RFC3339
	return cmd
}

func (a *app) logs(ctx context.Context, target string, f *logsFlags) error {
	b, err := a.backend(ctx)
	if err != nil {
		return err
	}
	procs, err := b.List(ctx)
	if err != nil {
		return err
	}
	if target != "all" || len(procs) > 0 { // no process at all: "all" tails nothing
		if procs, err = api.Match(procs, []string{target}); err != nil {
			return err
		}
	}
	if f.lines > 0 {
		if !f.raw && !f.jsonOut {
			what := "processes"
			if len(procs) == 1 {
				what = "process"
			}
			fmt.Fprintf(a.stdout, "[TAILING] Tailing last %d lines for [%s] %s (change the value with --lines option)\n", f.lines, target, what)
		}
		seen := map[string]bool{}
		for _, p := range procs {
			files := []struct{ path, stream string }{{p.OutLog, "out"}, {p.ErrLog, "err"}}
			for _, file := range files {
				if file.path == "" || seen[file.path] || (f.errOnly && file.stream == "out") || (f.outOnly && file.stream == "err") {
					continue
				}
				seen[file.path] = true
				lines, err := logs.Tail(file.path, f.lines)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					fmt.Fprintf(a.stderr, "[corral] %s\n", oneLine(err.Error()))
					continue
				}
				if !f.raw && !f.jsonOut {
					fmt.Fprintf(a.stdout, "%s last %d lines:\n", file.path, f.lines)
				}
				for _, l := range lines {
					a.printLogLine(f, api.LogLine{PMID: p.PMID, Name: p.Name, Stream: file.stream, Text: l}, false)
				}
				if !f.raw && !f.jsonOut {
					fmt.Fprintln(a.stdout)
				}
			}
		}
	}
	if f.nostream {
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ch, err := b.Logs(ctx, []string{target})
	if err != nil {
		return err
	}
	for l := range ch {
		if (f.errOnly && l.Stream != "err") || (f.outOnly && l.Stream == "err") {
			continue
		}
		a.printLogLine(f, l, true)
	}
	return nil
}

func (a *app) printLogLine(f *logsFlags, l api.LogLine, live bool) {
	switch {
	case f.jsonOut:
		stream := "out"
		if l.Stream == "err" {
			stream = "err"
		}
		_ = logs.WriteJSON(a.stdout, logs.Line{App: l.Name, ID: l.PMID, Stream: stream, Text: l.Text, Time: l.Time}, "")
	case f.raw:
		fmt.Fprintln(a.stdout, l.Text)
	default:
		prefix := strconv.Itoa(l.PMID) + "|" + l.Name
		if live && f.timestamp != "" && !l.Time.IsZero() {
			prefix = l.Time.Format(f.timestamp) + ": " + prefix
		}
		fmt.Fprintf(a.stdout, "%s | %s\n", prefix, l.Text)
	}
}
