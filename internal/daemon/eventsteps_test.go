package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
)

// feedUntil reads the feed until ok holds for an event, failing after a deadline with what it
// saw.
func feedUntil(t *testing.T, feed <-chan events.Event, what string, ok func(events.Event) bool) events.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	var seen []string
	for {
		select {
		case e, open := <-feed:
			if !open {
				t.Fatalf("feed closed before %s; saw:\n%s", what, strings.Join(seen, "\n"))
			}
			seen = append(seen, fmt.Sprintf("%+v", e))
			if ok(e) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s in the feed; saw:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

// An exit event carries the process's last stderr lines; a user's restart says "user"; a
// reload reports its steps; the watch stream shows the change.
func TestEventFeedStderrUserRestartAndReloadSteps(t *testing.T) {
	m := newTestManager(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed, err := m.Events(ctx, api.EventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	crash := goApp(t, "crasher", "crash", map[string]string{"CRASH_AFTER_MS": "300", "EXIT_CODE": "7"})
	crash.Autorestart = &off
	start(t, m, crash)
	e := feedUntil(t, feed, "the crasher's exit", func(e events.Event) bool { return e.Type == events.Exit && e.App == "crasher" })
	if e.Code == nil || *e.Code != 7 || e.Reason != "unexpected" || !slices.Contains(e.Stderr, "oops") {
		t.Errorf("exit event %+v: want code 7, reason unexpected, stderr [oops]", e)
	}

	sleeper := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))[0]
	watch, err := m.Watch(ctx, api.WatchRequest{IntervalMS: 60000})
	if err != nil {
		t.Fatal(err)
	}
	<-watch // the frame sent at once
	if _, _, err := m.Restart(context.Background(), []string{"sleeper"}, api.RestartOptions{}); err != nil {
		t.Fatal(err)
	}
	feedUntil(t, feed, "a user restart", func(e events.Event) bool {
		return e.Type == events.Restart && e.App == "sleeper" && e.Reason == "user" && e.PID == sleeper.PID
	})
	// Long before the interval, a frame shows the new process.
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case f := <-watch:
			for _, p := range f.Procs {
				seen = seen || (p.Name == "sleeper" && p.PID != sleeper.PID && p.PID > 0 && p.Status == "online")
			}
		case <-deadline:
			t.Fatal("no watch frame with the restarted sleeper")
		}
	}

	svc := goApp(t, "svc", "http", nil)
	svc.Listen = []string{"127.0.0.1:0"}
	svc.ListenTimeout = 2000
	old := start(t, m, svc)[0]
	if _, _, err := m.Reload(context.Background(), []string{"svc"}, api.RestartOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"starting a replacement", "ready; stopping the old pid " + fmt.Sprint(old.PID), "done"} {
		feedUntil(t, feed, "reload step "+step, func(e events.Event) bool {
			return e.Type == events.Reload && e.App == "svc" && strings.Contains(e.Message, step)
		})
	}
}

// Automatic restarts name their cause: "memory" (max_memory_restart) and "cron" (cron_restart),
// with the details in the message.
func TestEventFeedAutomaticRestartReasons(t *testing.T) {
	m := newTestManager(t, Config{}) // default sampling: every second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed, err := m.Events(ctx, api.EventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	hog := goApp(t, "hog", "hog", map[string]string{"HOG_MB": "100"})
	hog.MaxMemoryRestart = 50 << 20
	cron := goApp(t, "cronned", "sleep", nil)
	cron.CronRestart = "*/1 * * * * *"
	start(t, m, hog, cron)
	e := feedUntil(t, feed, "a memory restart", func(e events.Event) bool { return e.Type == events.Restart && e.App == "hog" })
	if e.Reason != "memory" || !strings.Contains(e.Message, "over max_memory_restart 50.0MiB") {
		t.Errorf("memory restart event %+v", e)
	}
	e = feedUntil(t, feed, "a cron restart", func(e events.Event) bool { return e.Type == events.Restart && e.App == "cronned" })
	if e.Reason != "cron" || e.Message != "cron_restart */1 * * * * *" {
		t.Errorf("cron restart event %+v", e)
	}
}
