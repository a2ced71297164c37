package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/x/term"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
)

// stdoutIsTerminal reports whether the CLI's stdout is a terminal (a person watching), not a
// pipe or a file (a script reading).
func (a *app) stdoutIsTerminal() bool {
	f, ok := a.stdout.(*os.File)
	return ok && term.IsTerminal(f.Fd())
}

// progressQuiet is how long the progress printer keeps reading after the operation returned,
// for the events still on their way; progressMax bounds that wait.
const (
	progressQuiet = 150 * time.Millisecond
	progressMax   = time.Second
)

// progress prints, while an operation that takes time runs (reload, scale, a start of many
// instances, resurrect), one line per instance step from the daemon's event feed: online,
// reload steps, exits, failed starts. Only on a terminal: piped or redirected output stays
// exactly what it was. apps, if not nil, names the apps to follow (nil: every app). Call the
// returned function when the operation returned; it prints what is still on its way and stops.
func (a *app) progress(ctx context.Context, b api.Backend, apps func() []string) (done func()) {
	src, ok := b.(api.EventSource)
	if !ok || !a.stdoutIsTerminal() {
		return func() {}
	}
	var names []string
	if apps != nil {
		names = apps()
	}
	ctx, cancel := context.WithCancel(ctx)
	ch, err := src.Events(ctx, api.EventsRequest{Follow: true, Apps: names})
	if err != nil {
		cancel()
		return func() {}
	}
	finishing := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		var quiet, limit <-chan time.Time
		for {
			select {
			case e, ok := <-ch:
				if !ok {
					return
				}
				if line := progressLine(e); line != "" {
					fmt.Fprintln(a.stdout, line)
				}
				if quiet != nil {
					quiet = time.After(progressQuiet)
				}
			case <-finishing:
				finishing = nil
				quiet, limit = time.After(progressQuiet), time.After(progressMax)
			case <-quiet:
				return
			case <-limit:
				return
			}
		}
	}()
	return func() {
		close(finishing)
		wg.Wait()
	}
}

// progressLine renders an event as a progress line, or "" for the events not worth one.
func progressLine(e events.Event) string {
	who := e.App
	if e.PMID != nil {
		who = fmt.Sprintf("%s[%d]", e.App, *e.PMID)
	}
	var s string
	switch e.Type {
	case events.Status:
		switch e.To {
		case "online":
			s = fmt.Sprintf("  ✓ %s online (pid %d)", who, e.PID)
		case "errored":
			s = fmt.Sprintf("  ✗ %s errored", who)
		case "stopped":
			s = fmt.Sprintf("  ■ %s stopped", who)
		}
	case events.Reload:
		s = fmt.Sprintf("  ⟳ %s %s", who, e.Message)
	case events.SpawnFailed:
		s = fmt.Sprintf("  ✗ %s could not start: %s", who, e.Message)
	case events.Exit:
		if e.Reason != "unexpected" {
			return ""
		}
		how := "code " + fmt.Sprint(derefInt(e.Code))
		if e.Signal != "" {
			how = "signal " + e.Signal
		}
		s = fmt.Sprintf("  ✗ %s exited (%s)", who, how)
		for _, l := range e.Stderr {
			s += "\n      " + l
		}
	default:
		return ""
	}
	if s == "" {
		return ""
	}
	return "[corral]" + strings.TrimPrefix(s, " ")
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// appNames returns a function listing the names of the apps targets match (none when they
// cannot be resolved: then the progress shows every app).
func appNames(ctx context.Context, b api.Backend, targets []string) func() []string {
	return func() []string { return matchNames(ctx, b, targets) }
}

func matchNames(ctx context.Context, b api.Backend, targets []string) []string {
	procs, err := b.List(ctx)
	if err != nil {
		return nil
	}
	m, err := api.Match(procs, targets)
	if err != nil {
		return nil
	}
	var names []string
	seen := map[string]bool{}
	for _, p := range m {
		if !seen[p.Name] {
			seen[p.Name] = true
			names = append(names, p.Name)
		}
	}
	return names
}
