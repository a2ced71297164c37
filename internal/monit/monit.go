// Package monit is `corral monit` (alias `dashboard`): a terminal dashboard of the daemon's
// processes, built on bubbletea. It shows the process table (grouped by app, sortable,
// filterable), CPU and memory sparklines, PM2's metadata, a live log pane and the event feed, and
// acts on the selected process or app (restart, reload, stop, start, delete, scale, signal,
// flush) after a confirmation.
//
// # Data
//
// Everything comes from the daemon's API over three streams opened once per connection: the
// watch stream (a list snapshot per sample tick and after each change, api.WatchSource), the
// event feed (api.EventSource) and the log stream of every process (Backend.Logs with no
// target); plus one history query at connect (api.HistorySource) whose samples the frames then
// extend. The log pane opens with the last lines of the process's log files (read directly, as
// `corral logs` does: the TUI runs on the daemon's host as its user).
//
// # Concurrency
//
// The bubbletea program's goroutine owns the model; the streams are read by tea.Cmd functions
// (bubbletea's goroutines) that return one message per batch, and each message carries the
// connection generation it belongs to, so that a message from a closed connection is dropped.
// Actions run as tea.Cmd too, with their own timeout; the model never blocks on the daemon.
package monit

import (
	"context"
	"errors"
	"io"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/corralhq/corral/internal/api"
)

// Backend is what the dashboard needs from the daemon; *api.Client implements it.
type Backend interface {
	api.Backend
	api.WatchSource
	api.HistorySource
	api.EventSource
}

// Options configure Run.
type Options struct {
	In  io.Reader
	Out io.Writer
	// Version is the CLI's version, shown in the title bar.
	Version string
}

// Run runs the dashboard until the user quits (q, ctrl+c) or ctx is done. The terminal is put
// in the alternate screen and raw mode, and restored on every way out (bubbletea restores it on
// panics too).
func Run(ctx context.Context, b Backend, o Options) error {
	m := New(b, o.Version)
	opts := []tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx)}
	if o.In != nil {
		opts = append(opts, tea.WithInput(o.In))
	}
	if o.Out != nil {
		opts = append(opts, tea.WithOutput(o.Out))
	}
	p := tea.NewProgram(m, opts...)
	_, err := p.Run()
	m.closeConn()
	m.stop()
	switch {
	case errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil: // SIGHUP, or the caller's end
		return nil
	case errors.Is(err, tea.ErrInterrupted): // SIGINT from kill (ctrl+c is a key here)
		return nil
	}
	return err
}
