package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/procstat"
	"golang.org/x/sys/unix"
)

// A process of a test tree: its pid and start time, so that a reused pid is not taken for it.
type treeProc struct {
	name  string
	pid   int
	start uint64
}

// running reports whether p still exists as a live process: kill(pid, 0) succeeds and
// /proc/<pid>/stat names the same process, not a zombie.
func (p treeProc) running() bool {
	return unix.Kill(p.pid, 0) == nil && procstat.Same(p.pid, p.start)
}

func (p treeProc) String() string { return fmt.Sprintf("%s %d", p.name, p.pid) }

// treeOf waits for the n-th "tree <grandchild> <great-grandchild>" line of lines (from the "tree"
// app, whose process is leader) and returns the app, the great-grandchild and, unless it has
// exited (TREE_G_EXIT), the grandchild. They are SIGKILLed when the test ends, if they still run.
func treeOf(t *testing.T, lines *logLines, n, leader int) []treeProc {
	t.Helper()
	got := lines.waitCount(t, n, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "tree ") })
	lines.waitCount(t, 1, func(l api.LogLine) bool { return l.Text == fmt.Sprintf("started %d", leader) })
	var g, gg int
	if _, err := fmt.Sscanf(got[n-1].Text, "tree %d %d", &g, &gg); err != nil {
		t.Fatalf("%q: %v", got[n-1].Text, err)
	}
	var out []treeProc
	for i, pid := range []int{leader, gg, g} {
		st, err := procstat.ReadStat(pid)
		if pid == g && (err != nil || st.State == 'Z') && st.PPID != leader {
			break // exited, and reaped (or a zombie the daemon will reap)
		}
		if err != nil || st.State == 'Z' {
			t.Fatalf("process %d of the tree is not running: %+v %v", pid, st, err)
		}
		if pid == g && (st.Session != g || st.PGRP == leader) {
			t.Fatalf("grandchild %d: session %d group %d; want its own session, outside the app's group %d", g, st.Session, st.PGRP, leader)
		}
		p := treeProc{name: []string{"app", "great-grandchild", "grandchild"}[i], pid: pid, start: st.Start}
		out = append(out, p)
		t.Cleanup(func() {
			if p.running() {
				procstat.Signal(p.pid, p.start, unix.SIGKILL)
			}
		})
	}
	return out
}

// checkGone fails the test for each process of ps that still runs.
func checkGone(t *testing.T, what string, ps []treeProc) {
	t.Helper()
	for _, p := range ps {
		if p.running() {
			t.Errorf("after %s: %s still runs", what, p)
		}
	}
}

// treeTestApp returns the "tree" app (see testApp) with kill_signal SIGTERM, the kill_timeout
// given in milliseconds and the environment env.
func treeTestApp(t *testing.T, name string, killTimeout int64, env map[string]string) appspec.App {
	a := goApp(t, name, "tree", env)
	a.KillTimeout = killTimeout
	a.KillSignal = "SIGTERM"
	return a
}

// Stop, Delete and Shutdown end the app's whole tree: a grandchild that called setsid() (outside
// the app's process group) and its child get the kill signal too, and the operation returns once
// they are gone — long before kill_timeout, since they exit on the signal.
func TestStopEndsWholeTree(t *testing.T) {
	ops := map[string]func(m *Manager) error{
		"stop": func(m *Manager) error {
			_, err := m.Stop(context.Background(), []string{"tree"})
			return err
		},
		"delete": func(m *Manager) error {
			_, err := m.Delete(context.Background(), []string{"tree"})
			return err
		},
		"shutdown": func(m *Manager) error { return m.Shutdown(context.Background()) },
	}
	for _, op := range []string{"stop", "delete", "shutdown"} {
		t.Run(op, func(t *testing.T) {
			m := newTestManager(t, Config{Subreaper: true})
			lines := followLogs(t, m)
			p := start(t, m, treeTestApp(t, "tree", 20000, nil))[0]
			ps := treeOf(t, lines, 1, p.PID)
			t0 := time.Now()
			if err := ops[op](m); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(t0); d > 10*time.Second {
				t.Errorf("%s took %v; every process exits on SIGTERM, kill_timeout is 20s", op, d)
			}
			checkGone(t, op, ps)
		})
	}
}

// A descendant outside the process group that ignores the kill signal is SIGKILLed after
// kill_timeout, and the stop waits for it.
func TestStopKillsStubbornDescendantsAfterKillTimeout(t *testing.T) {
	m := newTestManager(t, Config{Subreaper: true})
	lines := followLogs(t, m)
	const killTimeout = 500 * time.Millisecond
	a := treeTestApp(t, "tree", killTimeout.Milliseconds(), map[string]string{"TREE_G_IGNORE": "1", "TREE_GG_IGNORE": "1"})
	p := start(t, m, a)[0]
	ps := treeOf(t, lines, 1, p.PID)
	t0 := time.Now()
	if _, err := m.Stop(context.Background(), []string{"tree"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < killTimeout || d > killTimeout+5*time.Second {
		t.Errorf("stop took %v; the descendants ignore SIGTERM, so it should take kill_timeout (%v) and little more", d, killTimeout)
	}
	checkGone(t, "stop", ps)
}

// Descendants whose parent died are re-parented to the daemon (the child subreaper); they are
// still the app's, and stopped with it.
func TestStopEndsReparentedDescendants(t *testing.T) {
	t.Run("orphaned before the stop", func(t *testing.T) {
		// The grandchild exits at once (a double fork): its child is re-parented to the daemon
		// before the stop, and is recognised by the instance's unique_id in its environment.
		m := newTestManager(t, Config{Subreaper: true})
		lines := followLogs(t, m)
		p := start(t, m, treeTestApp(t, "tree", 20000, map[string]string{"TREE_G_EXIT": "1"}))[0]
		ps := treeOf(t, lines, 1, p.PID)
		if st, err := procstat.ReadStat(ps[1].pid); err != nil || st.PPID != os.Getpid() {
			t.Fatalf("great-grandchild: %+v %v; want it re-parented to the daemon (%d)", st, err, os.Getpid())
		}
		t0 := time.Now()
		if _, err := m.Stop(context.Background(), []string{"tree"}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("stop took %v; the orphan exits on SIGTERM, kill_timeout is 20s", d)
		}
		checkGone(t, "stop", ps)
	})
	t.Run("orphaned during the stop, without the environment", func(t *testing.T) {
		// The grandchild exits on the signal; its child ignores it and has an empty environment:
		// only the walk of the tree at the stop knows it is the app's once it is re-parented.
		m := newTestManager(t, Config{Subreaper: true})
		lines := followLogs(t, m)
		const killTimeout = 500 * time.Millisecond
		a := treeTestApp(t, "tree", killTimeout.Milliseconds(), map[string]string{"TREE_GG_IGNORE": "1", "TREE_GG_SCRUB": "1"})
		p := start(t, m, a)[0]
		ps := treeOf(t, lines, 1, p.PID)
		if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ps[1].pid)); strings.Contains(string(env), "unique_id=") {
			t.Fatal("the great-grandchild has a unique_id")
		}
		t0 := time.Now()
		if _, err := m.Stop(context.Background(), []string{"tree"}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < killTimeout || d > killTimeout+5*time.Second {
			t.Errorf("stop took %v; want kill_timeout (%v) and little more", d, killTimeout)
		}
		checkGone(t, "stop", ps)
	})
	t.Run("after a crash", func(t *testing.T) {
		// The app dies without being asked to: what it started is killed at once, like the rest
		// of its process group, before the exit is applied.
		m := newTestManager(t, Config{Subreaper: true})
		lines := followLogs(t, m)
		a := treeTestApp(t, "tree", 20000, map[string]string{"TREE_G_IGNORE": "1", "TREE_GG_IGNORE": "1"})
		a.Autorestart = new(bool)
		p := start(t, m, a)[0]
		ps := treeOf(t, lines, 1, p.PID)
		if err := unix.Kill(p.PID, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitProc(t, m, p.PMID, "stopped", func(q api.Proc) bool { return q.Status == "stopped" })
		checkGone(t, "the crash", ps)
	})
}

// Reload's stop of the old process ends the old tree, orphans included, and leaves the
// replacement's alone, though its orphans carry the same unique_id.
func TestReloadEndsOnlyTheOldTree(t *testing.T) {
	m := newTestManager(t, Config{Subreaper: true})
	lines := followLogs(t, m)
	a := treeTestApp(t, "tree", 20000, map[string]string{"TREE_G_EXIT": "1"})
	a.Listen = []string{"127.0.0.1:0"}
	a.ListenTimeout = 2000
	p := start(t, m, a)[0]
	old := treeOf(t, lines, 1, p.PID)
	procs, _, err := m.Reload(context.Background(), []string{"tree"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if procs[0].PID == p.PID {
		t.Fatalf("reload kept pid %d", p.PID)
	}
	checkGone(t, "reload", old)
	cur := treeOf(t, lines, 2, procs[0].PID)
	for _, q := range cur {
		if !q.running() {
			t.Errorf("after reload: %s of the replacement is gone", q)
		}
	}
	if st, err := procstat.ReadStat(cur[1].pid); err != nil || st.PPID != os.Getpid() {
		t.Fatalf("the replacement's great-grandchild: %+v %v; want it re-parented to the daemon", st, err)
	}
	if _, err := m.Stop(context.Background(), []string{"tree"}); err != nil {
		t.Fatal(err)
	}
	checkGone(t, "stop", cur)
}
