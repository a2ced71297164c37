package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reapSweep is how often the reaper looks for orphans without being told by SIGCHLD.
const reapSweep = 10 * time.Second

// children records the processes the Manager started itself (fork and listen processes,
// cluster workers). Their own Wait reaps them, so the orphan reaper must leave them alone. Start
// paths hold mu from before the process is created until it is registered, and the reaper holds
// mu while it decides and reaps, so a child that exits at once is never mistaken for an orphan.
type children struct {
	mu   sync.Mutex
	pids map[int]*run
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
		st, err := readStat(pid)
		if err != nil || st.state != 'Z' || st.ppid != self || st.pgrp == pgrp {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got != pid {
			continue
		}
		n++
		m.log.Debug("reaped orphan", "pid", pid, "pgid", st.pgrp, "exit", ws.ExitStatus(), "signaled", ws.Signaled())
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
		if st, err := readStat(pid); err == nil && st.ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// procStat is the part of /proc/<pid>/stat the reaper needs.
type procStat struct {
	state byte
	ppid  int
	pgrp  int
}

// readStat reads the state, parent and process group of pid from /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses, so
// the fields start after the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no command field")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat: malformed %q", b)
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("stat: %w", err)
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp}, nil
}
