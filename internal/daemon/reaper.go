package daemon

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
// Lock order: m.mu, then children.mu; the reaper takes children.mu alone.
type children struct {
	mu      sync.Mutex
	pids    map[int]*run
	forking int
}

// add registers r under its pid. The caller holds c.mu.
func (c *children) add(r *run) {
	if c.pids == nil {
		c.pids = make(map[int]*run)
	}
	c.pids[r.pid] = r
}

// forget unregisters r once its Wait has reaped it (a reused pid registered meanwhile stays).
func (c *children) forget(r *run) {
	c.mu.Lock()
	if c.pids[r.pid] == r {
		delete(c.pids, r.pid)
	}
	c.mu.Unlock()
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
		if m.kids.pids[pid] != nil {
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
// /proc/self/task/*/children, or by scanning /proc when the kernel lacks that file.
func childPIDs(self int) ([]int, error) {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var pids []int
	read := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended meanwhile
		}
		read++
		for _, field := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(field); err == nil {
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
