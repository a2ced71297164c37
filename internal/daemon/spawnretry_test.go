package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestTransientSpawnFailureIsRetried crashes an app while the daemon (this test process) is out of
// file descriptors (RLIMIT_NOFILE lowered), so that starting its replacement fails with EMFILE.
// The instance must wait and try again — visible in its notes and as spawn_failed events with
// reason "retry" — and come back online by itself once descriptors are available again. It used
// to become errored for good after the first failure.
func TestTransientSpawnFailureIsRetried(t *testing.T) {
	m := newTestManager(t, Config{})
	p := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))[0]
	transientSpawnRetried(t, m, p)
}

// TestTransientSpawnFailureIsRetriedCluster is the same with a cluster worker (corral's cluster
// package): once forked, it serves again.
func TestTransientSpawnFailureIsRetriedCluster(t *testing.T) {
	m := newTestManager(t, Config{})
	port := testutil.FreePort(t)
	a := goApp(t, "sleeper", "cluster-http", map[string]string{"PORT": strconv.Itoa(port)})
	a.ExecMode = "cluster"
	p := start(t, m, a)[0]
	p = waitProc(t, m, p.PMID, "online", func(q api.Proc) bool { return q.Status == string(StatusOnline) && q.PID != 0 })
	transientSpawnRetried(t, m, p)
	// The only worker's listen reopens the socket (its primary closed it with the last worker).
	testutil.WaitFor(t, 15*time.Second, "the new worker to serve", func() bool {
		return httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)) == nil
	})
}

// transientSpawnRetried SIGKILLs p's process with RLIMIT_NOFILE lowered, checks that its
// replacement is tried again (not errored), raises the limit again and waits for it to be online.
func transientSpawnRetried(t *testing.T, m *Manager, p api.Proc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, err := m.Events(ctx, api.EventsRequest{Follow: true, Apps: []string{p.Name}})
	if err != nil {
		t.Fatal(err)
	}

	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	defer restore() // also when the test fails below
	low := orig
	low.Cur = 3 // every descriptor is taken already: no new one can be made
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		restore()
		t.Fatal(err)
	}
	// Two failed attempts: the instance was tried again after the first.
	var failures []events.Event
	timeout := time.After(20 * time.Second)
	for len(failures) < 2 {
		select {
		case e := <-live:
			if e.Type == events.SpawnFailed {
				failures = append(failures, e)
			}
			if e.Type == events.Status && e.To == string(StatusErrored) {
				restore()
				t.Fatalf("the instance became errored: %+v", e)
			}
		case <-timeout:
			restore()
			t.Fatalf("%d spawn_failed events in 20 s, want 2 (a retry)", len(failures))
		}
	}
	for _, e := range failures {
		if e.Reason != "retry" || !strings.Contains(e.Message, "too many open files") || !strings.Contains(e.Message, "retrying in") {
			t.Errorf("spawn_failed event %+v, want reason retry and the EMFILE error", e)
		}
	}
	procs, _ := m.List(context.Background())
	q := procs[0]
	if len(procs) != 1 || q.Status != string(StatusWaitingRestart) || len(q.Notes) == 0 ||
		!strings.Contains(q.Notes[len(q.Notes)-1], "could not start for want of resources, retrying") {
		t.Errorf("while out of fds: status %q, notes %q", q.Status, q.Notes)
	}
	restore()
	q = waitProc(t, m, p.PMID, "online again once fds are back", func(q api.Proc) bool {
		return q.Status == string(StatusOnline) && q.PID != 0 && q.PID != p.PID
	})
	if q.Restarts != 1 {
		t.Errorf("restarts = %d, want 1 (the crash; retries do not count)", q.Restarts)
	}
	t.Logf("%d failed attempts seen, then online as pid %d", len(failures), q.PID)
}

// TestMissingScriptStillErrors checks that a spawn error that does not pass by itself (the script
// is gone: ENOENT) still makes the instance errored at once, without retries.
func TestMissingScriptStillErrors(t *testing.T) {
	m := newTestManager(t, Config{})
	dir := t.TempDir()
	script := filepath.Join(dir, "sleeper")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho started $$\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := startSleepers(t, m, appspec.App{Name: "gone", Script: script, Cwd: dir})[0]
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	q := waitProc(t, m, p.PMID, "errored", func(q api.Proc) bool { return q.Status == string(StatusErrored) })
	if len(q.Notes) == 0 || strings.Contains(strings.Join(q.Notes, "\n"), "retrying") ||
		!strings.Contains(q.Notes[len(q.Notes)-1], "no such file") {
		t.Errorf("notes %q, want the ENOENT error and no retry", q.Notes)
	}
}
