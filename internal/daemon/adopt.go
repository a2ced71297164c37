package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/ipc"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/procstat"
	"golang.org/x/sys/unix"
)

// Recovery of a daemon started by the keeper after another one died or handed over
// (docs/keeper.md "Recovery", docs/architecture.md "How a daemon hand-over flows").
//
// The processes of the previous daemon are the keeper's children now: the new daemon cannot
// wait(2) for them. It watches a pidfd of each (readable at its exit) and takes the wait status
// from the keeper's exit records (exitWatcher, on a connection of its own, since a parked EXITS
// request blocks its connection). Everything else about an adopted process is as for one the
// daemon started: supervise, the stop path, the restart policy.

// RecoverReport says what Recover found.
type RecoverReport struct {
	State    bool // a state was found (the daemon is a restart, not a first start)
	Apps     int  // apps restored
	Adopted  int  // processes alive and adopted (current ones)
	Dead     int  // processes that died while no daemon ran: they go through the restart policy
	Strays   int  // old or replacement processes found, adopted to be stopped
	Exits    int  // exit records the keeper had kept
	Released int  // stored fds the state did not name (closed and removed)
}

// Recover rebuilds the process table from what the keeper kept (entries: FetchAll's result
// without the control socket; Recover owns their files) and adopts every process still alive. It
// must be called once, before the Manager is used. Without a keeper it fails. After an error the
// daemon must exit without READY: the keeper then restarts it, or rolls an update back (a state
// this binary cannot read), and the state it keeps is never replaced by this daemon's.
func (m *Manager) Recover(ctx context.Context, entries []keeper.Entry) (rep RecoverReport, err error) {
	if m.kp == nil {
		for _, e := range entries {
			e.File.Close()
		}
		return rep, errNoKeeper
	}
	defer func() {
		if err == nil {
			m.kp.recoveredNow() // the state may be stored from now on
		}
	}()
	files := map[string]*os.File{}
	var stateF *os.File
	for _, e := range entries {
		if e.Name == "state" {
			stateF = e.File
			continue
		}
		files[e.Name] = e.File
	}
	defer func() {
		// What the state does not name belongs to nobody (a resource stored after the last
		// state, whose owner is unknown): drop it.
		for name, f := range files {
			f.Close()
			m.kp.remove(name)
			rep.Released++
		}
	}()

	// The exits that happened while no daemon ran, then a watcher for the later ones.
	dead := map[int]uint32{}
	var ack uint64
	for {
		b, err := m.kp.c.Exits(ctx, ack, false)
		if err != nil {
			return rep, fmt.Errorf("daemon: recover: %w", err)
		}
		for _, e := range b.Exits {
			dead[e.PID] = e.Status
			ack = e.Seq
			rep.Exits++
		}
		if !b.More {
			break
		}
	}
	ew, err := newExitWatcher(m.kp.socket, ack, dead, m.log)
	if err != nil {
		return rep, fmt.Errorf("daemon: recover: %w", err)
	}
	m.kp.exits = ew
	// Only a daemon on trial after an update must leave the store alone until READY; any other
	// stores at once what it starts from now on (a relaunch during recovery, a resurrect).
	if st, err := m.kp.c.Ping(ctx); err == nil && !st.Updating {
		m.kp.unhold()
	}

	if stateF == nil {
		return rep, nil
	}
	data, err := keeper.ReadStateFile(stateF)
	stateF.Close()
	if err != nil {
		return rep, fmt.Errorf("daemon: recover: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return rep, fmt.Errorf("daemon: recover: bad state: %w", err)
	}
	if st.Version != stateVersion {
		return rep, fmt.Errorf("daemon: recover: state version %d, this daemon reads %d", st.Version, stateVersion)
	}
	rep.State = true

	// Phase 1, under m.mu: the apps and instances; the processes of fork and listen apps are
	// adopted at once; those of cluster apps wait for their primary (phase 2).
	m.mu.Lock()
	m.kp.mu.Lock()
	m.kp.seq = max(m.kp.seq, st.FDSeq)
	m.kp.mu.Unlock()
	m.nextID = st.NextID
	take := func(name string) *os.File {
		f := files[name]
		delete(files, name)
		return f
	}
	type pendingRun struct {
		in    *instance
		sr    *savedRun
		role  int // roleCurrent, roleNext, roleStray
		ch    *os.File
		w     *cluster.Worker
		alive bool
	}
	const (
		roleCurrent = iota
		roleNext
		roleStray
	)
	var pending []*pendingRun
	var prims []*primaryRecovery
	var later []func() // launches and stops, once every instance and worker exists
	place := func(in *instance, sr *savedRun, role int) {
		if in.app.res.mode == modeCluster {
			pr := &pendingRun{in: in, sr: sr, role: role}
			if pidfd, alive := openIfSame(sr.PID, sr.Start); alive {
				pidfd.Close()
				pr.alive = true
				pr.ch = take(sr.IPC)
			}
			pending = append(pending, pr)
			return
		}
		r, alive := m.adoptRun(in, sr, take, nil)
		m.placeRun(in, r, role == roleCurrent, sr.Stopping || role != roleCurrent, &later)
		switch {
		case role != roleCurrent:
			rep.Strays++
		case alive:
			rep.Adopted++
		default:
			rep.Dead++
		}
	}
	for _, sa := range st.Apps {
		if m.apps[sa.Spec.Name] != nil {
			continue
		}
		rep.Apps++
		a := &app{spec: sa.Spec, res: sa.Res.resolved(), workers: &workerSignals{}, notes: sa.Notes}
		a.spec.EnvSets = sa.EnvSets
		if a.res.mode == modeListen {
			m.recoverListeners(a, sa.Listeners, take)
		}
		m.apps[a.spec.Name] = a
		m.appOrder = append(m.appOrder, a.spec.Name)
		if a.res.mode == modeCluster && sa.Primary != nil {
			p := m.primaryFor(a)
			// Above every seq the old primary used, even after its last state (see SetNextSeq).
			p.SetNextSeq(sa.Primary.NextSeq + 1<<32)
			p.SetNextWorkerID(sa.Primary.NextWorkerID)
			pr := &primaryRecovery{a: a, p: p, gate: make(chan struct{}), files: map[string]*os.File{}, names: map[string]string{}}
			for key, name := range sa.Primary.Listeners {
				if f := take(name); f != nil {
					pr.files[key], pr.names[key] = f, name
				}
			}
			// No worker is forked before the kept sockets are the primary's (forkWorker waits
			// for a.released): a new one would bind the same address again.
			a.released = pr.gate
			prims = append(prims, pr)
		}
		for _, si := range sa.Instances {
			in := &instance{app: a, op: make(chan struct{}, 1), st: si.State, userStopped: si.UserStopped}
			in.st.PID, in.st.PGID = 0, 0
			in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = -1, -1, -1
			if err := m.openInstanceLogs(in); err != nil {
				in.st.Notes = appendNote(in.st.Notes, err.Error())
			}
			m.procs[in.st.PMID] = in
			a.instances = append(a.instances, in)
			m.nextID = max(m.nextID, in.st.PMID+1)
			if si.Run != nil {
				place(in, si.Run, roleCurrent)
			}
			if si.Next != nil { // an interrupted reload: the old process stays, the replacement goes
				place(in, si.Next, roleNext)
			}
			if si.Run == nil {
				later = append(later, m.resumeIdle(in))
			}
		}
	}
	for _, s := range st.Strays {
		if in := m.procs[s.PMID]; in != nil {
			place(in, &s.Run, roleStray)
		}
	}
	m.mu.Unlock()

	// Phase 2, without m.mu (AdoptListener and Adopt take the primary's lock): each cluster
	// app's kept sockets, then its live workers.
	status := func(pid int) (int, os.Signal, bool) {
		s, ok := ew.wait(pid, exitRecordWait)
		if !ok {
			return -1, nil, false
		}
		ws := syscall.WaitStatus(s)
		if ws.Signaled() {
			return -1, ws.Signal(), true
		}
		return ws.ExitStatus(), nil, true
	}
	for _, pr := range prims {
		for key, f := range pr.files {
			if err := pr.p.AdoptListener(key, f); err != nil {
				m.log.Warn("recover: cluster socket", "app", pr.a.spec.Name, "key", key, "err", err)
				m.kp.remove(pr.names[key])
				delete(pr.names, key)
			}
		}
	}
	for _, pr := range pending {
		if !pr.alive || pr.ch == nil {
			continue
		}
		p := primaryOf(prims, pr.in.app)
		if p == nil {
			pr.ch.Close()
			continue
		}
		w, err := p.Adopt(cluster.AdoptSpec{ID: pr.sr.WorkerID, Pid: pr.sr.PID, Channel: pr.ch, Keys: pr.sr.Keys,
			Listening: pr.sr.Listening, Status: status})
		if err != nil {
			m.log.Warn("recover: cluster worker; it is stopped and restarted", "pm_id", pr.in.st.PMID, "pid", pr.sr.PID, "err", err)
			m.kp.remove(pr.sr.IPC)
			continue
		}
		pr.w = w
	}

	// Phase 3, under m.mu: the cluster runs, then what waited for every process to be known.
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pr := range prims {
		pr.a.lnNames = pr.names
		close(pr.gate)
	}
	for _, pr := range pending {
		r, alive := m.adoptRun(pr.in, pr.sr, take, pr.w)
		// A live worker that could not be adopted has no primary to serve it: it is stopped.
		stop := pr.sr.Stopping || pr.role != roleCurrent || (alive && pr.w == nil)
		m.placeRun(pr.in, r, pr.role == roleCurrent, stop, &later)
		switch {
		case pr.role != roleCurrent:
			rep.Strays++
		case alive && pr.w != nil:
			rep.Adopted++
		default:
			rep.Dead++
		}
	}
	for _, f := range later {
		if f != nil {
			f()
		}
	}
	for _, name := range m.appOrder {
		m.syncAutomation(m.apps[name])
	}
	m.dirty()
	m.changed.Broadcast()
	return rep, nil
}

// primaryRecovery is a cluster app's primary being rebuilt by Recover.
type primaryRecovery struct {
	a     *app
	p     *cluster.Primary
	gate  chan struct{}       // the app's released channel until the sockets are adopted
	files map[string]*os.File // kept sockets by handle key
	names map[string]string   // their names in the store
}

func primaryOf(prims []*primaryRecovery, a *app) *cluster.Primary {
	for _, pr := range prims {
		if pr.a == a {
			return pr.p
		}
	}
	return nil
}

// placeRun attaches an adopted run to its instance (current) or leaves it aside (a reload's
// replacement, an old process being retired), and queues its stop when it is to be stopped. The
// caller holds m.mu.
func (m *Manager) placeRun(in *instance, r *run, current, stop bool, later *[]func()) {
	if current {
		m.adoptedHealth(r) // health.go: the probes of a process taken over run again
		m.adopt(in, r)
		if in.st.Status == StatusLaunching {
			m.bg.Go(func() { m.watchOnline(r) })
		}
	}
	if stop {
		*later = append(*later, func() { m.requestStop(r) })
	}
}

// recoverListeners gives a listen-mode app its kept sockets, binding again what is missing.
// The caller holds m.mu.
func (m *Manager) recoverListeners(a *app, names []string, take func(string) *os.File) {
	ok := len(names) == len(a.spec.Listen)
	var fs []*os.File
	for _, n := range names {
		f := take(n)
		if f == nil {
			ok = false
			continue
		}
		fs = append(fs, f)
	}
	if ok {
		a.listeners, a.listenerNames = fs, names
		return
	}
	for _, f := range fs {
		f.Close()
	}
	for _, n := range names {
		m.kp.remove(n)
	}
	files, err := activation.Listen(a.spec.Listen)
	if err != nil {
		a.notes = appendNote(a.notes, "recover: "+err.Error())
		return
	}
	a.listeners = files
	m.keepListeners(a)
}

// resumeIdle returns what to do, once every instance exists, for an instance that had no
// process in the state: a pending restart is armed again, a launch that had not forked yet is
// done now. The caller holds m.mu (also when calling the result).
func (m *Manager) resumeIdle(in *instance) func() {
	switch in.st.Status {
	case StatusWaitingRestart:
		delay := ms(in.st.PrevRestartDelay)
		if delay == 0 {
			delay = ms(in.app.spec.RestartDelay)
		}
		in.timerGen++
		gen := in.timerGen
		in.timer = time.AfterFunc(delay, func() { m.restartDue(in, gen) })
	case StatusLaunching, StatusOnline:
		return func() {
			if err := m.launch(in); err != nil {
				m.log.Warn("recover: launch", "pm_id", in.st.PMID, "err", err)
			}
		}
	case StatusStopping:
		m.setStatus(in, StatusStopped)
	}
	return nil
}

// adoptRun makes a run of a process the previous daemon started, alive (it is watched) or not (it
// ends at once with the exit status the keeper recorded). Its kept pipes are pumped again and its
// IPC channel read again. w is the adopted worker of a cluster app's live process (Primary.Adopt),
// nil otherwise. The caller holds m.mu.
func (m *Manager) adoptRun(in *instance, sr *savedRun, take func(string) *os.File, w *cluster.Worker) (*run, bool) {
	a := in.app
	spec := a.spec
	r := &run{
		in: in, mode: a.res.mode, sig: newSignals(), pid: sr.PID, startedAt: sr.StartedAt, procStart: sr.Start,
		waitReady: spec.WaitReady, listenTimeout: ms(spec.ListenTimeout), killTimeout: ms(spec.KillTimeout),
		killSignal: unix.SignalNum(spec.KillSignal), shutdownWithMessage: spec.ShutdownWithMessage || killUseMessage(),
		forked: make(chan struct{}), done: make(chan struct{}), stopReq: make(chan struct{}), finished: make(chan struct{}),
		ipcFD: -1, stdoutFD: -1, stderrFD: -1, adopted: true,
	}
	if r.killSignal == 0 {
		r.killSignal = syscall.SIGINT
	}
	close(r.forked)
	var pidfd *os.File
	alive := w != nil
	if w == nil {
		if pidfd, alive = openIfSame(sr.PID, sr.Start); alive {
			m.kp.exits.forget(sr.PID) // a record for this pid is an earlier process's
		}
	}

	out, errw := m.lineWriters(in)
	if f := take(sr.Out); f != nil {
		r.outName, r.stdoutFD = sr.Out, fdOf(f)
		m.startKeptPump(f, out, sr.Out)
	} else {
		out.Close()
	}
	if f := take(sr.Err); f != nil {
		r.errName, r.stderrFD = sr.Err, fdOf(f)
		m.startKeptPump(f, errw, sr.Err)
	} else {
		errw.Close()
	}
	switch {
	case w != nil:
		r.worker, r.workerID, r.keys, r.listening = w, w.ID, sr.Keys, sr.Listening
		r.ipcName = sr.IPC // Adopt took the file
		r.sig = a.workers.get(w)
	case a.res.mode != modeCluster && alive:
		m.adoptChannel(r, take(sr.IPC), sr.IPC)
	default:
		if f := take(sr.IPC); f != nil {
			f.Close()
			m.kp.remove(sr.IPC)
		}
	}
	r.sig.markOnline()
	m.kids.mu.Lock()
	m.kids.add(r)
	m.kids.mu.Unlock()
	if w != nil {
		ws := a.workers
		m.bg.Go(func() {
			<-w.Done()
			m.kids.forget(r)
			r.exitCode = w.ExitCode()
			if s, ok := w.ExitSignal().(syscall.Signal); ok {
				r.exitSig = s
			}
			ws.drop(w)
			m.dropIPC(r)
			close(r.done)
		})
	} else {
		ew := m.kp.exits
		m.bg.Go(func() {
			if pidfd != nil {
				waitPidfd(pidfd)
				pidfd.Close()
			}
			status, ok := ew.wait(r.pid, exitRecordWait)
			m.kids.forget(r)
			ws := syscall.WaitStatus(status)
			switch {
			case !ok:
				r.exitSig = syscall.SIGKILL // unknown: the keeper's record was lost; counted as a crash
				m.log.Warn("recover: no exit status for an adopted process", "pid", r.pid, "pm_id", in.st.PMID)
			case ws.Signaled():
				r.exitSig = ws.Signal()
			case ws.Exited():
				r.exitCode = ws.ExitStatus()
			}
			m.dropIPC(r)
			close(r.done)
		})
	}
	m.startSupervise(r) // at once, as before (its waiters above do not start it)
	return r, alive
}

// adoptChannel reads a fork-mode process's kept IPC channel again. The caller holds m.mu.
func (m *Manager) adoptChannel(r *run, f *os.File, name string) {
	if f == nil {
		return
	}
	c, err := net.FileConn(f)
	f.Close()
	uc, _ := c.(*net.UnixConn)
	if err != nil || uc == nil {
		if c != nil {
			c.Close()
		}
		m.kp.remove(name)
		m.log.Warn("recover: IPC channel", "pm_id", r.in.st.PMID, "err", err)
		return
	}
	r.ipcName, r.ipcFD = name, fdOf(uc)
	r.ch = ipc.New(uc, m.forkChannelOptions(r, true))
}

// exitRecordWait bounds the wait for the keeper's record of an adopted process's exit, after its
// pidfd said it exited (the keeper reaps on SIGCHLD: microseconds), or for a process found dead.
const exitRecordWait = 3 * time.Second

// openIfSame returns a pidfd of pid if it runs the process that started at start (clock ticks
// since boot), and has not exited.
func openIfSame(pid int, start uint64) (*os.File, bool) {
	if pid <= 0 {
		return nil, false
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, false
	}
	st, err := procstat.ReadStat(pid)
	if err != nil || st.Start != start || st.State == 'Z' || st.State == 'X' {
		unix.Close(fd)
		return nil, false
	}
	return os.NewFile(uintptr(fd), "pidfd"), true
}

// waitPidfd blocks until the process of the pidfd has exited, through the runtime's poller.
func waitPidfd(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	first := true
	_ = rc.Read(func(fd uintptr) bool {
		if first {
			first = false
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, 0)
			return err == nil && n > 0
		}
		return true
	})
}

// exitWatcher follows the keeper's exit records (EXITS with wait) on a connection of its own and
// hands each wait status to whoever waits for that pid.
type exitWatcher struct {
	c   *keeper.Client
	log *slog.Logger

	mu      sync.Mutex
	got     map[int]exitRec // recent records nobody has asked for yet
	waiters map[int][]chan uint32
	closed  bool
	done    chan struct{}
}

type exitRec struct {
	status uint32
	at     time.Time
}

// exitKeep is how long an unclaimed exit record is kept (the orphans of adopted apps, re-parented
// to the keeper, also have records nobody asks for).
const exitKeep = time.Minute

func newExitWatcher(socket string, ack uint64, known map[int]uint32, lg *slog.Logger) (*exitWatcher, error) {
	c, err := keeper.Dial(socket)
	if err != nil {
		return nil, err
	}
	w := &exitWatcher{c: c, log: lg, got: map[int]exitRec{}, waiters: map[int][]chan uint32{}, done: make(chan struct{})}
	now := time.Now()
	for pid, s := range known {
		w.got[pid] = exitRec{s, now}
	}
	go w.loop(ack)
	return w, nil
}

func (w *exitWatcher) loop(ack uint64) {
	defer close(w.done)
	for {
		b, err := w.c.Exits(context.Background(), ack, true)
		if err != nil {
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			if !closed {
				w.log.Warn("keeper: exit records", "err", err)
			}
			return
		}
		now := time.Now()
		w.mu.Lock()
		for _, e := range b.Exits {
			ack = e.Seq
			if chs := w.waiters[e.PID]; len(chs) > 0 {
				for _, ch := range chs {
					ch <- e.Status
				}
				delete(w.waiters, e.PID)
				continue
			}
			w.got[e.PID] = exitRec{e.Status, now}
		}
		for pid, r := range w.got {
			if now.Sub(r.at) > exitKeep {
				delete(w.got, pid)
			}
		}
		w.mu.Unlock()
	}
}

// wait returns the wait status recorded for pid, waiting up to timeout for it.
func (w *exitWatcher) wait(pid int, timeout time.Duration) (uint32, bool) {
	if w == nil {
		return 0, false
	}
	w.mu.Lock()
	if r, ok := w.got[pid]; ok {
		delete(w.got, pid)
		w.mu.Unlock()
		return r.status, true
	}
	ch := make(chan uint32, 1)
	w.waiters[pid] = append(w.waiters[pid], ch)
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s := <-ch:
		return s, true
	case <-t.C:
	case <-w.done:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.waiters[pid]
	for i, c := range chs {
		if c == ch {
			w.waiters[pid] = append(chs[:i:i], chs[i+1:]...)
			break
		}
	}
	if len(w.waiters[pid]) == 0 {
		delete(w.waiters, pid)
	}
	select {
	case s := <-ch:
		return s, true
	default:
		return 0, false
	}
}

// forget drops a record kept for pid.
func (w *exitWatcher) forget(pid int) {
	w.mu.Lock()
	delete(w.got, pid)
	w.mu.Unlock()
}

func (w *exitWatcher) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.c.Close()
	<-w.done
}

// Handover prepares the daemon's exit for an update (keeper.HandoverSignal): no process is
// started from now on, the pumps of the kept pipes stop between two chunks, the daemon's ends of
// the fork-mode IPC channels close (the keeper holds them: the apps see nothing), and the final
// state is stored. The apps keep running; the caller then exits without Close.
func (m *Manager) Handover(ctx context.Context) error {
	if m.kp == nil {
		return errNoKeeper
	}
	m.mu.Lock()
	var chans []*ipc.Channel
	for _, in := range m.procs {
		for _, r := range []*run{in.run, in.next} {
			if r != nil && r.ch != nil {
				chans = append(chans, r.ch)
			}
		}
	}
	var prims []*cluster.Primary
	for _, a := range m.apps {
		if a.primary != nil {
			prims = append(prims, a.primary)
		}
	}
	m.mu.Unlock()
	wait := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	// The cluster primaries stop accepting (new connections wait in the kept sockets' backlogs for
	// the next daemon) and every connection they accepted reaches a worker before this daemon exits;
	// without mu (Quiesce takes the primary's lock). Before the state is taken: it stores NextSeq.
	qctx, cancel := context.WithTimeout(ctx, min(wait, 2*time.Second))
	for _, p := range prims {
		if err := p.Quiesce(qctx); err != nil {
			m.log.Warn("handover: cluster primary not quiesced", "err", err)
		}
	}
	cancel()
	if !m.quiescePumps(wait) {
		m.log.Warn("handover: a log pump did not stop in time")
	}
	for _, c := range chans {
		c.Close()
	}
	// From here on no process starts (launch, restart, automatic restart: they all check
	// shuttingDown), and the state is taken in the same critical section, so it names every
	// process there is. An exit from now on is the next daemon's to see.
	m.mu.Lock()
	m.shuttingDown = true
	for _, in := range m.procs {
		in.cancelTimer()
	}
	final := m.marshalStateLocked()
	m.mu.Unlock()
	m.kp.freeze(final)
	if m.kp.exits != nil {
		m.kp.exits.close()
	}
	m.log.Info("handover: state stored", "bytes", len(final))
	return nil
}
