package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"golang.org/x/sys/unix"
)

// TestEventFeedTellsTheStoryOfACrash follows the feed while a process starts, is SIGKILLed, is
// restarted and is stopped, and reads the same story again from the history.
func TestEventFeedTellsTheStoryOfACrash(t *testing.T) {
	m := newTestManager(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, err := m.Events(ctx, api.EventsRequest{Follow: true, Apps: []string{"sleeper"}})
	if err != nil {
		t.Fatal(err)
	}
	p := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))[0]
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitProc(t, m, p.PMID, "a restart", func(q api.Proc) bool { return q.Status == "online" && q.Restarts == 1 })
	if _, err := m.Stop(context.Background(), []string{"sleeper"}); err != nil {
		t.Fatal(err)
	}

	// The story, in order (other events may come between these).
	want := []struct {
		desc string
		ok   func(e events.Event) bool
	}{
		{"app start", func(e events.Event) bool { return e.Type == events.App && e.Reason == "start" }},
		{"launching → online", func(e events.Event) bool { return e.Type == events.Status && e.To == "online" && e.PID == p.PID }},
		{"exit by SIGKILL", func(e events.Event) bool {
			return e.Type == events.Exit && e.PID == p.PID && e.Signal == "SIGKILL" && e.Reason == "unexpected" && e.Code != nil && *e.Code == 137
		}},
		{"restart after a crash", func(e events.Event) bool { return e.Type == events.Restart && e.Reason == "crash" }},
		{"online again", func(e events.Event) bool { return e.Type == events.Status && e.To == "online" && e.PID != p.PID }},
		{"stop asked", func(e events.Event) bool { return e.Type == events.App && e.Reason == "stop" }},
		{"exit when stopped", func(e events.Event) bool { return e.Type == events.Exit && e.Reason == "stopped" }},
		{"stopping → stopped", func(e events.Event) bool { return e.Type == events.Status && e.To == "stopped" }},
	}
	check := func(name string, next func() (events.Event, bool)) {
		t.Helper()
		var seen []string
		for _, w := range want {
			for {
				e, ok := next()
				if !ok {
					t.Fatalf("%s: no %q event; saw:\n%v", name, w.desc, seen)
				}
				seen = append(seen, fmt.Sprintf("%+v", e))
				if w.ok(e) {
					break
				}
			}
		}
	}
	timeout := time.After(10 * time.Second)
	check("live feed", func() (events.Event, bool) {
		select {
		case e, ok := <-live:
			return e, ok
		case <-timeout:
			return events.Event{}, false
		}
	})
	hist, err := m.Events(ctx, api.EventsRequest{Backlog: -1})
	if err != nil {
		t.Fatal(err)
	}
	check("history", func() (events.Event, bool) { e, ok := <-hist; return e, ok })
}
