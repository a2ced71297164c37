package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// markedPids returns the pids of the processes whose environment holds mark (KEY=value).
func markedPids(mark string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == mark {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// TestDeleteRacingStartLeavesNoOrphan deletes every app again and again while a start of many
// new fork-mode apps is running (their processes are exec'd by execFork, without m.mu): once the
// start has returned and a last delete is done, none of the processes it started may be left.
func TestDeleteRacingStartLeavesNoOrphan(t *testing.T) {
	m := newTestManager(t, Config{})
	dir := t.TempDir()
	script := filepath.Join(dir, "sleeper")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mark := fmt.Sprintf("CORRAL_ORPHAN_MARK=%d-%d", os.Getpid(), time.Now().UnixNano())
	k, v, _ := strings.Cut(mark, "=")
	t.Cleanup(func() { // whatever the outcome, nothing of this test survives it
		for _, pid := range markedPids(mark) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	const n = 40
	var apps []appspec.App
	for i := 0; i < n; i++ {
		apps = append(apps, appspec.App{Name: fmt.Sprintf("race%02d", i), Script: script, Cwd: dir, Env: map[string]string{k: v}})
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		_, _ = m.Start(ctx, apps, api.StartOptions{}) // errors expected: apps deleted meanwhile
	})
	deletes := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if _, err := m.Delete(ctx, []string{"all"}); err == nil {
			deletes++
		}
	}
	wg.Wait()
	if _, err := m.Delete(ctx, []string{"all"}); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Logf("last delete: %v", err)
	}
	procs, err := m.List(ctx)
	if err != nil || len(procs) != 0 {
		t.Fatalf("after the last delete: %d instances (%v)", len(procs), err)
	}
	testutil.WaitFor(t, 20*time.Second, "no process of the start left", func() bool {
		return len(markedPids(mark)) == 0
	})
	t.Logf("%d deletes during the start", deletes)
}

// TestStartExecFailureReported: a new app whose program cannot be exec'd (ENOEXEC) makes Start
// fail with the spawn error, once, and leaves the instance errored with the error in its notes, as
// when the daemon exec'd it under m.mu; the other apps of the same start are online.
func TestStartExecFailureReported(t *testing.T) {
	m := newTestManager(t, Config{})
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("\x00\x01\x02 not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	apps := []appspec.App{
		{Name: "good1", Script: good, Cwd: dir, Interpreter: "none"},
		{Name: "bad", Script: bad, Cwd: dir, Interpreter: "none"},
		{Name: "good2", Script: good, Cwd: dir, Interpreter: "none"},
	}
	procs, err := m.Start(context.Background(), apps, api.StartOptions{})
	if err == nil {
		t.Fatal("start succeeded")
	}
	want := "start bad (pm_id 1): "
	if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), want) != 1 || !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("error %q, want one %q... exec format error", err, want)
	}
	if len(procs) != 3 {
		t.Fatalf("%d procs in the answer, want 3", len(procs))
	}
	for i, p := range procs {
		if p.PMID != i || p.Name != apps[i].Name {
			t.Errorf("answer %d: pm_id %d name %q", i, p.PMID, p.Name)
		}
	}
	if procs[1].Status != string(StatusErrored) || len(procs[1].Notes) == 0 || !strings.Contains(procs[1].Notes[len(procs[1].Notes)-1], "exec format error") {
		t.Errorf("bad: status %q notes %q, want errored with the error", procs[1].Status, procs[1].Notes)
	}
	for _, i := range []int{0, 2} {
		if procs[i].Status != string(StatusOnline) || procs[i].PID == 0 {
			t.Errorf("%s: status %q pid %d, want online", procs[i].Name, procs[i].Status, procs[i].PID)
		}
	}
}
