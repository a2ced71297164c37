// Package daemonlog is the daemon's own log, corral.log: a file rotated by size like the apps'
// logs, and a slog handler that lets only a few of the same warning through per minute and
// counts the rest, so that a fault that repeats (a full disk under an app that logs 1 MB/s, a
// crash loop) cannot grow the log without bound.
package daemonlog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/logs"
)

// corral.log is rotated before it would pass MaxSize; MaxFiles rotated files are kept
// (corral__<YYYY-MM-DD_HH-mm-ss>.log, the apps' naming), older ones deleted.
const (
	MaxSize  = 10 << 20
	MaxFiles = 3
)

// Open opens the daemon's log at path for appending, rotated by size. With stdio, the daemon's
// standard output and error follow the current file across rotations (a panic's trace lands in
// corral.log, not in a rotated or deleted file).
func Open(path string, stdio bool) (*logs.File, error) {
	f, err := logs.Open(logs.Options{Path: path, MaxSize: MaxSize, MaxFiles: MaxFiles, Stdio: stdio})
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	return f, nil
}

// Throttling: of the records at Warn and above that share a key (level, message and the pm_id,
// name and path attributes), Burst pass per Window; the others are counted, and a summary
// "<message> (N more like this in 1m0s)" with the last one's attributes is logged when the
// window is over (at the next record, or at Flush).
const (
	Burst  = 5
	Window = time.Minute
)

// keyAttrs are the attributes that tell one source of a warning from another.
var keyAttrs = map[string]bool{"pm_id": true, "name": true, "path": true, "app": true}

// Throttle is a slog.Handler that throttles repeated warnings before passing records on.
// Handlers derived from it (WithAttrs, WithGroup) share its counts. It is safe for concurrent use;
// the next handler is never called under its lock.
type Throttle struct {
	next slog.Handler
	st   *state
}

type state struct {
	mu        sync.Mutex
	now       func() time.Time
	windows   map[string]*window
	lastSweep time.Time
}

// window counts one key's records since start.
type window struct {
	start   time.Time
	passed  int
	dropped int
	last    slog.Record  // the last dropped record, for the summary
	h       slog.Handler // where it was going
}

// NewThrottle returns a Throttle passing records on to next. now is the clock (nil: time.Now).
func NewThrottle(next slog.Handler, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{next: next, st: &state{now: now, windows: map[string]*window{}}}
}

// Enabled reports whether the next handler takes records at level l.
func (t *Throttle) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

// WithAttrs returns a Throttle, sharing t's counts, over next.WithAttrs(as).
func (t *Throttle) WithAttrs(as []slog.Attr) slog.Handler {
	return &Throttle{next: t.next.WithAttrs(as), st: t.st}
}

// WithGroup returns a Throttle, sharing t's counts, over next.WithGroup(name).
func (t *Throttle) WithGroup(name string) slog.Handler {
	return &Throttle{next: t.next.WithGroup(name), st: t.st}
}

// Handle passes r on, unless it is one warning too many for its key in the current window.
func (t *Throttle) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return t.next.Handle(ctx, r)
	}
	key := keyOf(r)
	s := t.st
	s.mu.Lock()
	now := s.now()
	var due []summary
	if now.Sub(s.lastSweep) >= time.Second {
		s.lastSweep = now
		due = s.sweepLocked(now, false)
	}
	w := s.windows[key]
	if w == nil || now.Sub(w.start) >= Window {
		if w != nil && w.dropped > 0 {
			due = append(due, w.summary(now))
		}
		w = &window{start: now}
		s.windows[key] = w
	}
	pass := w.passed < Burst
	if pass {
		w.passed++
	} else {
		w.dropped++
		w.last, w.h = r.Clone(), t.next
	}
	s.mu.Unlock()
	for _, d := range due {
		_ = d.h.Handle(ctx, d.r)
	}
	if !pass {
		return nil
	}
	return t.next.Handle(ctx, r)
}

// Flush logs the summaries of every window with dropped records, at once; the daemon calls it
// before it exits.
func (t *Throttle) Flush(ctx context.Context) {
	t.st.mu.Lock()
	due := t.st.sweepLocked(t.st.now(), true)
	t.st.mu.Unlock()
	for _, d := range due {
		_ = d.h.Handle(ctx, d.r)
	}
}

type summary struct {
	h slog.Handler
	r slog.Record
}

// sweepLocked removes the windows that are over (all, with all) and returns the summaries of
// those that dropped records. The caller holds s.mu.
func (s *state) sweepLocked(now time.Time, all bool) []summary {
	var out []summary
	for k, w := range s.windows {
		if !all && now.Sub(w.start) < Window {
			continue
		}
		if w.dropped > 0 {
			out = append(out, w.summary(now))
		}
		delete(s.windows, k)
	}
	return out
}

// summary is the record that tells how many records like w.last were dropped.
func (w *window) summary(now time.Time) summary {
	r := slog.NewRecord(now, w.last.Level, fmt.Sprintf("%s (%d more like this in %s)", w.last.Message, w.dropped, now.Sub(w.start).Round(time.Second)), 0)
	w.last.Attrs(func(a slog.Attr) bool { r.AddAttrs(a); return true })
	r.AddAttrs(slog.Int("repeated", w.dropped))
	return summary{h: w.h, r: r}
}

// keyOf is r's throttling key: level, message and the attributes that name a source.
func keyOf(r slog.Record) string {
	key := r.Level.String() + "\x00" + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if keyAttrs[a.Key] {
			key += "\x00" + a.Key + "=" + a.Value.String()
		}
		return true
	})
	return key
}
