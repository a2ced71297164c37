package monit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/logs"
)

// conn is one connection's streams. Its channels are read only by the Cmds of its generation.
type conn struct {
	gen      int
	ctx      context.Context
	cancel   context.CancelFunc
	reopened map[string]int // events or logs streams opened again
	frames   <-chan api.WatchFrame
	events   <-chan events.Event
	logs     <-chan api.LogLine
}

// Messages from the streams; gen is the connection they came from.
type (
	connectedMsg struct {
		c    *conn
		hist []api.ProcHistory
	}
	connectFailedMsg struct {
		gen int
		err error
	}
	frameMsg struct {
		gen int
		f   api.WatchFrame
	}
	eventsMsg struct {
		gen int
		evs []events.Event
	}
	logsMsg struct {
		gen   int
		lines []api.LogLine
	}
	// streamEndMsg: a stream of generation gen ended (the daemon went away, or dropped a reader
	// that fell behind).
	streamEndMsg struct {
		gen  int
		what string
	}
	// reopenedMsg: the events or logs stream of generation gen, opened again.
	reopenedMsg struct {
		gen    int
		events <-chan events.Event
		logs   <-chan api.LogLine
		err    error
	}
	reconnectMsg struct{ gen int }
	seedMsg      struct {
		pmid  int
		after int64 // live lines of pmid received before the seed was asked are dropped
		lines []logEntry
		err   error
	}
	actionDoneMsg struct {
		what  string
		notes []string
		err   error
	}
	clockMsg time.Time
)

// eventBacklog is how many past events the events pane opens with.
const eventBacklog = 300

// connect opens the three streams and reads the history, as generation gen.
func connect(parent context.Context, b Backend, gen int) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithCancel(parent)
		fail := func(err error) tea.Msg {
			cancel()
			return connectFailedMsg{gen: gen, err: err}
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		if _, err := b.List(pctx); err != nil {
			return fail(err)
		}
		frames, err := b.Watch(ctx, api.WatchRequest{})
		if err != nil {
			return fail(fmt.Errorf("watch: %w", err))
		}
		evs, err := b.Events(ctx, api.EventsRequest{Backlog: eventBacklog, Follow: true})
		if err != nil {
			return fail(fmt.Errorf("events: %w", err))
		}
		lines, err := b.Logs(ctx, nil)
		if err != nil {
			return fail(fmt.Errorf("logs: %w", err))
		}
		hist, err := b.History(pctx, api.HistoryRequest{})
		if err != nil {
			hist = nil // an older daemon: the sparklines start empty
		}
		c := &conn{gen: gen, ctx: ctx, cancel: cancel, reopened: map[string]int{}, frames: frames, events: evs, logs: lines}
		return connectedMsg{c: c, hist: hist}
	}
}

// readFrame waits for the next frame; a frame already queued behind it replaces it (only the
// newest snapshot matters).
func readFrame(c *conn) tea.Cmd {
	return func() tea.Msg {
		f, ok := <-c.frames
		if !ok {
			return streamEndMsg{gen: c.gen, what: "watch"}
		}
		for {
			select {
			case g, ok := <-c.frames:
				if !ok {
					return frameMsg{gen: c.gen, f: f}
				}
				f = g
			default:
				return frameMsg{gen: c.gen, f: f}
			}
		}
	}
}

// readEvents waits for the next event and takes those queued behind it.
func readEvents(c *conn) tea.Cmd {
	return func() tea.Msg {
		e, ok := <-c.events
		if !ok {
			return streamEndMsg{gen: c.gen, what: "events"}
		}
		evs := []events.Event{e}
		for len(evs) < 500 {
			select {
			case e, ok := <-c.events:
				if !ok {
					return eventsMsg{gen: c.gen, evs: evs}
				}
				evs = append(evs, e)
			default:
				return eventsMsg{gen: c.gen, evs: evs}
			}
		}
		return eventsMsg{gen: c.gen, evs: evs}
	}
}

// readLogs waits for the next log line and takes those that follow within a short window (a
// chatty app makes a few screen updates a second, not one per line).
func readLogs(c *conn) tea.Cmd {
	return func() tea.Msg {
		l, ok := <-c.logs
		if !ok {
			return streamEndMsg{gen: c.gen, what: "logs"}
		}
		lines := []api.LogLine{l}
		deadline := time.NewTimer(50 * time.Millisecond)
		defer deadline.Stop()
		for len(lines) < 2000 {
			select {
			case l, ok := <-c.logs:
				if !ok {
					return logsMsg{gen: c.gen, lines: lines}
				}
				lines = append(lines, l)
			case <-deadline.C:
				return logsMsg{gen: c.gen, lines: lines}
			}
		}
		return logsMsg{gen: c.gen, lines: lines}
	}
}

// seedLines is how many lines of each log file the log pane opens with.
const seedLines = 200

// seed reads the last lines of p's log files.
func seed(p api.Proc, after int64) tea.Cmd {
	return func() tea.Msg {
		msg := seedMsg{pmid: p.PMID, after: after}
		seen := map[string]bool{}
		for _, f := range []struct{ path, stream string }{{p.OutLog, "out"}, {p.ErrLog, "err"}} {
			if f.path == "" || f.path == "/dev/null" || seen[f.path] {
				continue
			}
			seen[f.path] = true
			lines, err := logs.Tail(f.path, seedLines)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					msg.err = err
				}
				continue
			}
			for _, l := range lines {
				msg.lines = append(msg.lines, logEntry{pmid: p.PMID, stream: f.stream, text: l})
			}
		}
		return msg
	}
}

// reopen opens the events or logs stream of c again, after the daemon ended it while the watch
// stream went on (a reader that fell behind a flood of log lines is dropped by the daemon).
func reopen(ctx context.Context, b Backend, gen int, what string) tea.Cmd {
	return func() tea.Msg {
		msg := reopenedMsg{gen: gen}
		if what == "events" {
			msg.events, msg.err = b.Events(ctx, api.EventsRequest{Follow: true})
		} else {
			msg.logs, msg.err = b.Logs(ctx, nil)
		}
		return msg
	}
}

func reconnectAfter(gen int, d time.Duration) tea.Cmd {
	return tea.Tick(d, func(time.Time) tea.Msg { return reconnectMsg{gen: gen} })
}

func clock() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return clockMsg(t) })
}
