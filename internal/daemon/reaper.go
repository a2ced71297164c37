package daemon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/procstat"
	"golang.org/x/sys/unix"
)

// reapSweep is how often the reaper looks for orphans without being told by SIGCHLD.
const reapSweep = 10 * time.Second

// children records the processes the Manager started itself (fork and listen processes,
// cluster workers). Their own Wait reaps them, so the orphan reaper must leave them alone. Start
// paths hold mu from before the process is created until it is registered, and the reaper holds
// mu while it decides and reaps, so a child that exits at once is never mistaken for an orphan.
// A cluster worker is forked without mu (ForkWith may wait for its primary's lock, see
// forkWorker): forking counts those forks, and the reaper does nothing while it is not zero.
//
// It also keeps, per started process, what the daemon knows of the processes that process
// started in turn (trees, see tree), from its registration until its supervisor is done with it.
//
// Lock order: m.mu, then children.mu, then a tree's mu; the reaper takes children.mu alone.
type children struct {
	mu      sync.Mutex
	pids    map[int]*run
	forking int
	trees   map[*run]*tree
	helpers map[int]bool // helper processes the daemon waits for itself (exec probes)
}

// startHelper starts cmd, a helper process of the daemon's own (an exec probe) that the caller
// waits for, and keeps the orphan reaper away from it until waited is called. Like a cluster
// fork it counts as forking while it starts, so that one that exits at once is never reaped
// before it is registered. It takes c.mu, never m.mu.
func (c *children) startHelper(cmd *exec.Cmd) (waited func(), err error) {
	c.mu.Lock()
	c.forking++
	c.mu.Unlock()
	err = cmd.Start()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forking--
	if err != nil {
		return func() {}, err
	}
	pid := cmd.Process.Pid
	if c.helpers == nil {
		c.helpers = map[int]bool{}
	}
	c.helpers[pid] = true
	return func() {
		c.mu.Lock()
		delete(c.helpers, pid)
		c.mu.Unlock()
	}, nil
}

// add registers r under its pid, and starts its tree record. The caller holds c.mu and m.mu
// (the instance's environment is read).
func (c *children) add(r *run) {
	if c.pids == nil {
		c.pids = make(map[int]*run)
		c.trees = make(map[*run]*tree)
	}
	c.pids[r.pid] = r
	// The run's process and its start time, which its descendants start at or after (and have
	// higher pids, barring a wrap-around of the pid space within a clock tick). Read while the
	// process cannot have been reaped (fork, listen) or just after (a cluster worker, whose
	// primary reaps it): when it is gone already, an estimate that errs early.
	since := procKey{pid: r.pid}
	if st, err := procstat.ReadStat(r.pid); err == nil {
		since.start = st.Start
	} else {
		since = procKey{start: procstat.BootTicks(time.Now().Add(-treeStartMargin))}
	}
	c.trees[r] = &tree{r: r, uniqueID: r.in.st.Env["unique_id"], since: since}
	for o, t := range c.trees {
		if o != r && o.in == r.in && (t.until == (procKey{}) || since.before(t.until)) {
			t.until = since // a reload's replacement: what starts from now on is its own
		}
	}
}

// forget unregisters r once its Wait has reaped it (a reused pid registered meanwhile stays).
func (c *children) forget(r *run) {
	c.mu.Lock()
	if c.pids[r.pid] == r {
		delete(c.pids, r.pid)
	}
	c.mu.Unlock()
}

// treeOf returns r's tree record, nil if it has none (it was never started, or is done).
func (c *children) treeOf(r *run) *tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trees[r]
}

// dropTree forgets r's tree record, once nothing of r's tree is left to stop.
func (c *children) dropTree(r *run) {
	c.mu.Lock()
	delete(c.trees, r)
	c.mu.Unlock()
}

// treeStartMargin is subtracted from the time a process was registered to estimate its start
// when it can no longer be read (tree.since).
const treeStartMargin = 100 * time.Millisecond

// tree is what the daemon knows of the processes one run started, so that stopping the run ends
// all of them, including those that left its process group (setsid, setpgid) and those whose
// parent died, which the kernel re-parents to the daemon as child subreaper (or to init). A walk
// of the process tree by parent pid (procstat.Descendants) finds the descendants whose chain of
// parents up to the run's process is unbroken; the others are recognised by
//   - having been seen in an earlier walk (seen: pid and start time, against pid reuse), or
//   - being a child of the daemon that it did not start, outside the daemon's own process group
//     (a re-parented orphan), that is in the run's process group or session, or that carries
//     the instance's unique_id in its environment (PM2 sets it for every app process, and
//     children inherit the environment) and started while the run was the instance's newest
//     process ([since, until)).
//
// What cannot be recognised is a process that left both the group and the environment behind
// and was orphaned before any walk saw it (a double fork that scrubs its environment, completed
// between two walks): it is reaped when it exits, but not stopped with the app. A cgroup per
// app would catch it too; corral does not create cgroups.
type tree struct {
	r        *run
	uniqueID string // the unique_id the run's process got in its environment

	// Guarded by children.mu: bounds of the processes the run started, in the order of procKey.before:
	// the run's own process, and the process of the same instance registered after it (a reload's
	// replacement), zero until there is one.
	since, until procKey

	mu        sync.Mutex
	seen      map[procKey]bool // descendants seen in a walk
	verdict   map[procKey]bool // re-parented orphans judged: whether they came from the run
	stopSig   syscall.Signal   // the stop signal, once sent to the group; 0 before
	signalled map[procKey]bool // processes outside the group sent stopSig individually
}

// procKey names a process across pid reuse: its pid and its start time.
type procKey struct {
	pid   int
	start uint64
}

// before orders processes by start time and, within a clock tick, by pid: a process started
// before another, as far as /proc can tell (pids grow until they wrap around).
func (k procKey) before(o procKey) bool {
	return k.start < o.start || k.start == o.start && k.pid < o.pid
}

func keyOf(st procstat.Stat) procKey { return procKey{st.PID, st.Start} }

// members returns every live process of t's tree except the run's own process, and records
// them (see tree): the run's descendants, while its process is alive; the processes seen before
// that still exist, and their descendants; and the daemon's re-parented orphans that came from
// the run, and their descendants. The caller holds t.mu, not m.mu.
func (m *Manager) members(t *tree) []procstat.Stat {
	r := t.r
	if t.seen == nil {
		t.seen = map[procKey]bool{}
		t.verdict = map[procKey]bool{}
		t.signalled = map[procKey]bool{}
	}
	var roots []int
	var out []procstat.Stat
	select {
	case <-r.done: // reaped: r.pid may name another process by now
	default:
		roots = append(roots, r.pid)
	}
	inRoots := map[int]bool{r.pid: true}
	for k := range t.seen {
		st, err := procstat.ReadStat(k.pid)
		if err != nil || st.Start != k.start || st.State == 'Z' || st.State == 'X' {
			delete(t.seen, k)
			continue
		}
		if !inRoots[k.pid] {
			inRoots[k.pid] = true
			roots = append(roots, k.pid)
			out = append(out, st)
		}
	}
	if m.cfg.Subreaper {
		for _, st := range m.orphansOf(t) {
			if !inRoots[st.PID] {
				inRoots[st.PID] = true
				roots = append(roots, st.PID)
				out = append(out, st)
				t.seen[keyOf(st)] = true
			}
		}
	}
	for _, st := range procstat.Descendants(roots...) {
		if st.State == 'Z' || st.State == 'X' {
			continue
		}
		out = append(out, st)
		t.seen[keyOf(st)] = true
	}
	return out
}

// orphansOf returns the live children of the daemon that came from t's run (see tree): the
// daemon's knowledge of the processes re-parented to it as child subreaper. The caller holds t.mu.
func (m *Manager) orphansOf(t *tree) []procstat.Stat {
	self := os.Getpid()
	pgrp := unix.Getpgrp()
	pids, err := childPIDs(self)
	if err != nil {
		m.log.Debug("list child processes", "err", err)
		return nil
	}
	m.kids.mu.Lock()
	forking := m.kids.forking > 0
	since, until := t.since, t.until
	ours := make(map[int]bool, len(pids))
	for _, pid := range pids {
		ours[pid] = m.kids.pids[pid] != nil
	}
	m.kids.mu.Unlock()
	var out []procstat.Stat
	for _, pid := range pids {
		if ours[pid] {
			continue // started by the Manager: a run of its own
		}
		st, err := procstat.ReadStat(pid)
		if err != nil || st.PPID != self || st.PGRP == pgrp || st.State == 'Z' || st.State == 'X' {
			continue
		}
		k := keyOf(st)
		v, judged := t.verdict[k]
		if !judged {
			if forking {
				continue // it may be a cluster worker being forked, not registered yet: judge later
			}
			v = st.PGRP == t.r.pid || st.Session == t.r.pid ||
				(t.uniqueID != "" && !k.before(since) && (until == (procKey{}) || k.before(until)) &&
					environHas(pid, "unique_id="+t.uniqueID))
			t.verdict[k] = v
		}
		if v {
			out = append(out, st)
		}
	}
	return out
}

// environHas reports whether the environment pid was started with holds the entry kv.
func environHas(pid int, kv string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, e := range bytes.Split(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// reapLoop collects orphans re-parented to the daemon (as child subreaper) whenever a child
// changes state (SIGCHLD), until stopReaper is closed.
func (m *Manager) reapLoop() {
	defer close(m.reaperDone)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	// A sweep now and then catches an orphan that exited while its pid still belonged to a
	// just-reaped child of ours (no further SIGCHLD would come for it).
	t := time.NewTicker(reapSweep)
	defer t.Stop()
	m.reapOrphans() // whatever exited before the notification was in place
	for {
		select {
		case <-m.stopReaper:
			return
		case <-ch:
		case <-t.C:
		}
		m.reapOrphans()
	}
}

// reapOrphans reaps every zombie child of this process that the Manager did not start itself
// and that is not in this process's own process group (where children started with os/exec's
// defaults elsewhere in the process live; their Wait must find them). It returns how many it
// reaped.
func (m *Manager) reapOrphans() int {
	self := os.Getpid()
	pgrp := unix.Getpgrp()
	m.kids.mu.Lock()
	defer m.kids.mu.Unlock()
	if m.kids.forking > 0 {
		return 0 // a worker being forked is not registered yet; the next SIGCHLD or sweep reaps
	}
	pids, err := childPIDs(self)
	if err != nil {
		m.log.Warn("list child processes", "err", err)
		return 0
	}
	n := 0
	for _, pid := range pids {
		if m.kids.pids[pid] != nil || m.kids.helpers[pid] {
			continue
		}
		st, err := procstat.ReadStat(pid)
		if err != nil || st.State != 'Z' || st.PPID != self || st.PGRP == pgrp {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got != pid {
			continue
		}
		n++
		m.log.Debug("reaped orphan", "pid", pid, "pgid", st.PGRP, "exit", ws.ExitStatus(), "signaled", ws.Signaled())
	}
	return n
}

// childPIDs lists the children of process self (this process): from
// /proc/self/task/*/children, or by scanning /proc when the kernel lacks that file. It runs for
// every crash (clearTree) and every SIGCHLD (reapOrphans): the task directory is listed once and
// each thread's children file read by name (a glob would list every task's own directory too,
// most of the cost: bench/crash.sh, BenchmarkChildPIDs).
func childPIDs(self int) ([]int, error) {
	var pids []int
	read := 0
	if d, err := os.Open("/proc/self/task"); err == nil {
		tids, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		buf := make([]byte, 0, 512)
		for _, tid := range tids {
			var ok bool
			if buf, ok = readProcFile("/proc/self/task/"+tid+"/children", buf[:0]); !ok {
				continue // the thread ended meanwhile
			}
			read++
			pid := -1
			for _, c := range buf {
				switch {
				case c >= '0' && c <= '9':
					pid = max(pid, 0)*10 + int(c-'0')
				case pid >= 0:
					pids = append(pids, pid)
					pid = -1
				}
			}
			if pid >= 0 {
				pids = append(pids, pid)
			}
		}
	}
	if read > 0 {
		return pids, nil
	}
	// No children files (CONFIG_PROC_CHILDREN off): scan every process.
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan /proc: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procstat.ReadStat(pid); err == nil && st.PPID == self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// readProcFile reads the whole of a small /proc file into buf (which it may grow) and reports
// whether it could.
func readProcFile(path string, buf []byte) ([]byte, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf, false
	}
	defer unix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, false
		}
		if n == 0 {
			return buf, true
		}
		buf = buf[:len(buf)+n]
	}
}
