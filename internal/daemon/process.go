package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/ipc"
	"github.com/corralhq/corral/internal/logs"
	"golang.org/x/sys/unix"
)

// signals records the start-up milestones of one process. Each channel is closed once.
type signals struct {
	online       chan struct{} // the process runs (fork, listen) or reported 'online' (cluster)
	ready        chan struct{} // the process sent the IPC message "ready"
	disconnected chan struct{} // cluster: the worker's channel closed
	onlineOnce   sync.Once
	readyOnce    sync.Once
	discOnce     sync.Once
}

func newSignals() *signals {
	return &signals{online: make(chan struct{}), ready: make(chan struct{}), disconnected: make(chan struct{})}
}

func (s *signals) markOnline()       { s.onlineOnce.Do(func() { close(s.online) }) }
func (s *signals) markReady()        { s.readyOnce.Do(func() { close(s.ready) }) }
func (s *signals) markDisconnected() { s.discOnce.Do(func() { close(s.disconnected) }) }

// workerSignals maps the workers of one cluster.Primary to their signals. The Primary's event
// handlers only touch this registry (never the Manager's lock), so forking a worker while holding
// the Manager's lock cannot deadlock with them. An event may arrive before ForkWith returns, hence
// the lazy creation.
type workerSignals struct {
	mu sync.Mutex
	m  map[*cluster.Worker]*signals
}

func (ws *workerSignals) get(w *cluster.Worker) *signals {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[*cluster.Worker]*signals)
	}
	s := ws.m[w]
	if s == nil {
		s = newSignals()
		ws.m[w] = s
	}
	return s
}

func (ws *workerSignals) drop(w *cluster.Worker) {
	ws.mu.Lock()
	delete(ws.m, w)
	ws.mu.Unlock()
}

// isReady reports whether an IPC message is the string "ready" (process.send('ready')).
func isReady(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte(`"ready"`))
}

// run is one process of an instance: the current one, a replacement being started by a reload,
// or an old one being retired.
type run struct {
	in        *instance
	pid       int // also the process group id (Setpgid)
	startedAt time.Time
	mode      execMode

	// Copied from the app at spawn time, so the watchers need no lock.
	waitReady           bool
	listenTimeout       time.Duration
	killTimeout         time.Duration
	killSignal          syscall.Signal
	shutdownWithMessage bool

	cmd    *exec.Cmd       // fork and listen modes
	worker *cluster.Worker // cluster mode
	ch     *ipc.Channel    // Node IPC channel of fork/listen node apps
	sig    *signals

	done     chan struct{} // closed once the process has been reaped; exitCode/exitSig valid then
	exitCode int
	exitSig  syscall.Signal

	stopReq  chan struct{} // closed once a stop was requested (the signal or message is sent)
	stopOnce sync.Once
	finished chan struct{} // closed after the Manager processed the exit (group gone, state set)

	stdoutFD, stderrFD, ipcFD int
}

// send delivers an IPC message to the process, if it has a channel.
func (r *run) send(msg any) error {
	switch {
	case r.worker != nil:
		return r.worker.Send(msg)
	case r.ch != nil:
		return r.ch.Send(msg)
	}
	return errors.New("no IPC channel")
}

// exitDescription says how the process ended, for notes and errors.
func (r *run) exitDescription() string {
	if r.exitSig != 0 {
		return "was killed by " + unix.SignalName(r.exitSig)
	}
	return "exited with code " + strconv.Itoa(r.exitCode)
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// fdOf returns the descriptor number behind c without changing its mode (unlike os.File.Fd,
// which makes it blocking).
func fdOf(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// spawn starts a process for in and the goroutines that watch it. replacement marks a reload's
// new process, which does not own the pid file until it takes over. The caller holds m.mu; the
// instance's state is not changed here.
func (m *Manager) spawn(in *instance, replacement bool) (_ *run, err error) {
	a := in.app
	spec := a.spec
	r := &run{
		in: in, mode: a.res.mode, sig: newSignals(),
		waitReady: spec.WaitReady, listenTimeout: ms(spec.ListenTimeout), killTimeout: ms(spec.KillTimeout),
		killSignal: unix.SignalNum(spec.KillSignal), shutdownWithMessage: spec.ShutdownWithMessage,
		done: make(chan struct{}), stopReq: make(chan struct{}), finished: make(chan struct{}),
		ipcFD: -1,
	}
	if r.killSignal == 0 {
		r.killSignal = syscall.SIGINT
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: stdout pipe: %w", in.st.Name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start %s: stderr pipe: %w", in.st.Name, err)
	}
	defer func() {
		// The child has its copies of the write ends; ours must go so that EOF arrives.
		outW.Close()
		errW.Close()
		if err != nil {
			outR.Close()
			errR.Close()
		}
	}()

	// The orphan reaper must not take the new process for an orphan before it is registered.
	m.kids.mu.Lock()
	defer m.kids.mu.Unlock()
	switch a.res.mode {
	case modeCluster:
		w, err := m.primaryFor(a).ForkWith(cluster.ForkOptions{Env: in.st.Env, Stdout: outW, Stderr: errW})
		if err != nil {
			return nil, fmt.Errorf("start %s (pm_id %d): %w%s", in.st.Name, in.st.PMID, err, permissionHint(err, a.res))
		}
		r.worker = w
		r.pid = w.Process.Pid
		m.kids.add(r)
		r.sig = a.workers.get(w)
		go func() {
			<-w.Done()
			m.kids.forget(r)
			r.exitCode = w.ExitCode()
			if s, ok := w.ExitSignal().(syscall.Signal); ok {
				r.exitSig = s
			}
			a.workers.drop(w)
			close(r.done)
		}()
	default:
		argv := a.res.argv
		cmd := &exec.Cmd{
			Path: argv[0], Args: argv, Dir: a.res.cwd, Stdout: outW, Stderr: errW,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: a.res.cred},
		}
		var extra []string
		var parent *net.UnixConn
		var child *os.File
		if a.res.ipc {
			parent, child, err = ipc.Pair()
			if err != nil {
				return nil, fmt.Errorf("start %s: %w", in.st.Name, err)
			}
			cmd.ExtraFiles = []*os.File{child}
			fd := activation.FirstFD + len(a.listeners) // the shim puts the sockets first
			extra = append(extra, "NODE_CHANNEL_FD="+strconv.Itoa(fd), "NODE_CHANNEL_SERIALIZATION_MODE=json")
		}
		cmd.Env = envList(in.st.Env, extra...)
		if a.res.mode == modeListen {
			activation.Wrap(cmd, m.cfg.Self, a.listeners)
		}
		err = cmd.Start()
		if child != nil {
			child.Close()
		}
		if err != nil {
			if parent != nil {
				parent.Close()
			}
			return nil, fmt.Errorf("start %s (pm_id %d): %w%s", in.st.Name, in.st.PMID, err, permissionHint(err, a.res))
		}
		r.cmd = cmd
		r.pid = cmd.Process.Pid
		m.kids.add(r)
		r.sig.markOnline()
		if parent != nil {
			r.ipcFD = fdOf(parent)
			sig := r.sig
			r.ch = ipc.New(parent, ipc.Options{
				OnMessage: func(msg ipc.Message) {
					if msg.FD >= 0 {
						unix.Close(msg.FD)
					}
					if !msg.Internal && isReady(msg.Raw) {
						sig.markReady()
					}
				},
				Logger: m.log.With("pm_id", in.st.PMID),
			})
		}
		go func() {
			_ = cmd.Wait() // the status below says everything; Wait's error is the same
			m.kids.forget(r)
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				switch {
				case ws.Signaled():
					r.exitSig = ws.Signal()
				case ws.Exited():
					r.exitCode = ws.ExitStatus()
				}
			}
			close(r.done)
		}()
	}
	r.startedAt = time.Now()
	r.stdoutFD, r.stderrFD = fdOf(outR), fdOf(errR)

	out, errw := m.lineWriters(in)
	go pump(outR, out)
	go pump(errR, errw)
	if !replacement {
		m.writePidFile(in, r.pid)
	}
	go m.supervise(r)
	go m.watchOnline(r)
	return r, nil
}

// pump copies a process's output into its line writer until every holder of the pipe's write
// end has closed it.
func pump(src *os.File, w *logs.LineWriter) {
	_, _ = io.Copy(w, src) // LineWriter.Write fails only after Close
	src.Close()
	w.Close()
}

// primaryFor returns the app's cluster primary, creating it on first use. The caller holds m.mu.
func (m *Manager) primaryFor(a *app) *cluster.Primary {
	if a.primary != nil {
		return a.primary
	}
	p := cluster.NewPrimary(cluster.Settings{
		Exec:          a.res.argv[0],
		Args:          a.res.argv[1:],
		Dir:           a.res.cwd,
		SysProcAttr:   &syscall.SysProcAttr{Setpgid: true, Credential: a.res.cred},
		HoldListeners: true,
		Environ:       []string{}, // each worker gets exactly its instance env (ForkOptions.Env), not the daemon's
		Logger:        m.log.With("app", a.spec.Name),
	})
	ws := a.workers
	p.OnOnline(func(w *cluster.Worker) { ws.get(w).markOnline() })
	p.OnDisconnect(func(w *cluster.Worker) { ws.get(w).markDisconnected() })
	p.OnMessage(func(w *cluster.Worker, raw json.RawMessage) {
		if isReady(raw) {
			ws.get(w).markReady()
		}
	})
	a.primary = p
	return p
}

// writePidFile records pid in the instance's pid file (best effort: logged on failure).
func (m *Manager) writePidFile(in *instance, pid int) {
	if err := os.WriteFile(in.st.PidFile, []byte(strconv.Itoa(pid)), 0o600); err != nil {
		m.log.Warn("write pid file", "path", in.st.PidFile, "err", err)
	}
}

// watchOnline moves a launching instance to online: when its process is up, or with wait_ready
// when it sent "ready" — or when listen_timeout passed without it (online anyway, as PM2 does).
func (m *Manager) watchOnline(r *run) {
	wait := r.sig.online
	var timeout <-chan time.Time
	if r.waitReady {
		wait = r.sig.ready
		t := time.NewTimer(r.listenTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-wait:
	case <-timeout:
	case <-r.done:
		return
	}
	m.mu.Lock()
	if r.in.run == r && r.in.st.Status == StatusLaunching {
		m.setStatus(r.in, StatusOnline)
	}
	m.mu.Unlock()
}

// requestStop asks r to stop: the "shutdown" message when shutdown_with_message is set and the
// process has an IPC channel, otherwise the kill signal to its whole process group. The
// supervisor sends SIGKILL to the group after kill_timeout. The caller holds m.mu.
//
// A cluster worker is first disconnected (Node's worker.disconnect(): the primary routes it no
// more connections, and the worker closes its servers once their requests are done, then its
// channel); the kill signal follows when the channel has closed, or after half of kill_timeout.
// This is what makes a reload lose no request even for apps without a signal handler.
func (m *Manager) requestStop(r *run) {
	r.stopOnce.Do(func() {
		sent := false
		if r.shutdownWithMessage {
			if err := r.send("shutdown"); err == nil {
				sent = true
			} else {
				m.log.Debug("shutdown message not sent; using the kill signal", "pid", r.pid, "err", err)
			}
		}
		switch {
		case r.worker != nil:
			if err := r.worker.Disconnect(); err != nil {
				m.log.Debug("disconnect worker", "pid", r.pid, "err", err)
			}
			if !sent {
				go m.signalAfterDisconnect(r)
			}
		case !sent:
			m.signalGroup(r, r.killSignal)
		}
		close(r.stopReq)
	})
}

// signalAfterDisconnect sends the kill signal to a disconnected worker once its channel has
// closed, or after half of kill_timeout, unless it has exited by then.
func (m *Manager) signalAfterDisconnect(r *run) {
	t := time.NewTimer(r.killTimeout / 2)
	defer t.Stop()
	select {
	case <-r.done:
		return
	case <-r.sig.disconnected:
	case <-t.C:
	}
	select {
	case <-r.done:
	default:
		m.signalGroup(r, r.killSignal)
	}
}

// signalGroup sends sig to r's process group.
func (m *Manager) signalGroup(r *run, sig syscall.Signal) {
	if err := unix.Kill(-r.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		m.log.Warn("signal process group", "pgid", r.pid, "signal", unix.SignalName(sig), "err", err)
	}
}

// supervise waits for r to end, enforces kill_timeout once a stop was requested, makes sure no
// process of its group survives, and hands the exit to the state machine.
func (m *Manager) supervise(r *run) {
	select {
	case <-r.done:
	case <-r.stopReq:
		t := time.NewTimer(r.killTimeout)
		select {
		case <-r.done:
			t.Stop()
		case <-t.C:
			m.log.Info("kill_timeout passed; sending SIGKILL", "pid", r.pid, "kill_timeout", r.killTimeout)
			_ = unix.Kill(-r.pid, unix.SIGKILL)
			<-r.done
		}
	}
	m.clearGroup(r)
	if r.ch != nil {
		r.ch.Close()
	}
	m.mu.Lock()
	m.exited(r)
	m.mu.Unlock()
	close(r.finished)
}

// clearGroup makes sure no process of r's group outlives its leader. After a stop request the
// rest of the group gets until kill_timeout to finish (it received the signal too); after an
// unrequested exit (a crash) the leftovers are killed at once. Zombies of the group are reaped
// when the daemon is their subreaper.
func (m *Manager) clearGroup(r *run) {
	pgid := r.pid
	select {
	case <-r.stopReq:
	default:
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
	deadline := time.Now().Add(r.killTimeout)
	hard := deadline.Add(2 * time.Second)
	killed := false
	for {
		reapGroup(pgid)
		if err := unix.Kill(-pgid, 0); err != nil {
			if !errors.Is(err, unix.ESRCH) {
				m.log.Warn("check process group", "pgid", pgid, "err", err)
			}
			return
		}
		now := time.Now()
		if !killed && now.After(deadline) {
			_ = unix.Kill(-pgid, unix.SIGKILL)
			killed = true
		}
		if now.After(hard) {
			m.log.Warn("processes of the group survive SIGKILL", "pgid", pgid)
			return
		}
		// No event tells when the last member of a group is gone: poll, bounded by the deadline.
		time.Sleep(5 * time.Millisecond)
	}
}

// reapGroup collects exited members of process group pgid that were re-parented to this
// process (as child subreaper). Without subreaper status there are none and wait4 fails at once.
func reapGroup(pgid int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return
		}
	}
}

// exited applies the end of r to its instance. The caller holds m.mu.
func (m *Manager) exited(r *run) {
	in := r.in
	switch {
	case in.deleted:
		return
	case r == in.next:
		return // a reload's replacement: the reload handles it
	case r != in.run:
		return // a retired process (reload) or a stale one
	}
	in.run = nil
	in.st.PID, in.st.PGID = 0, 0
	in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = -1, -1, -1
	in.cpu, in.mem = 0, 0
	in.st.ExitCode = r.exitCode
	in.st.ExitSignal = ""
	if r.exitSig != 0 {
		in.st.ExitCode = 128 + int(r.exitSig)
		in.st.ExitSignal = unix.SignalName(r.exitSig)
	}
	if err := os.Remove(in.st.PidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("remove pid file", "path", in.st.PidFile, "err", err)
	}
	switch {
	case in.st.Status == StatusStopping:
		m.setStatus(in, StatusStopped)
	case in.next != nil:
		m.setStatus(in, StatusLaunching) // the reload's replacement takes over when ready
	default:
		m.restartPolicy(in, r)
	}
	m.log.Info("process exited", "pm_id", in.st.PMID, "name", in.st.Name, "pid", r.pid,
		"exit_code", in.st.ExitCode, "signal", in.st.ExitSignal, "uptime", time.Since(r.startedAt).Round(time.Millisecond),
		"status", string(in.st.Status))
	m.releaseIdle(in.app)
}

// Restart policy constants (PM2's).
const (
	expBackoffMax   = 15 * time.Second // cap of exp_backoff_restart_delay
	expBackoffReset = 30 * time.Second // uptime after which the backoff starts over
	expBackoffRatio = 1.5
)

// restartPolicy decides what happens after an unrequested exit: stopped (autorestart off, a
// stop_exit_code, the daemon shutting down), errored (max_restarts consecutive unstable
// restarts) or waiting restart (then launching after restart_delay or the backoff delay).
// The caller holds m.mu.
func (m *Manager) restartPolicy(in *instance, r *run) {
	spec := in.app.spec
	if m.shuttingDown || !spec.AutorestartOn() {
		m.setStatus(in, StatusStopped)
		return
	}
	if r.exitSig == 0 {
		for _, c := range spec.StopExitCodes {
			if c == r.exitCode {
				m.setStatus(in, StatusStopped)
				return
			}
		}
	}
	uptime := time.Since(r.startedAt)
	if uptime < ms(spec.MinUptime) {
		in.st.UnstableRestarts++
	} else {
		in.st.UnstableRestarts = 0
	}
	if in.st.UnstableRestarts >= spec.MaxRestarts {
		in.st.Notes = appendNote(in.st.Notes, fmt.Sprintf("errored: %d consecutive restarts within min_uptime (%dms) of their start (max_restarts %d)",
			in.st.UnstableRestarts, spec.MinUptime, spec.MaxRestarts))
		m.setStatus(in, StatusErrored)
		return
	}
	delay := ms(spec.RestartDelay)
	if spec.ExpBackoffRestartDelay > 0 {
		prev := ms(in.st.PrevRestartDelay)
		if prev == 0 || uptime >= expBackoffReset {
			delay = ms(spec.ExpBackoffRestartDelay)
		} else {
			delay = min(time.Duration(float64(prev)*expBackoffRatio), expBackoffMax)
		}
		in.st.PrevRestartDelay = delay.Milliseconds()
	}
	m.setStatus(in, StatusWaitingRestart)
	in.timerGen++
	gen := in.timerGen
	in.timer = time.AfterFunc(delay, func() { m.restartDue(in, gen) })
}

// restartDue relaunches an instance whose restart delay is over, unless something else
// happened to it meanwhile.
func (m *Manager) restartDue(in *instance, gen int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.deleted || in.timerGen != gen || in.st.Status != StatusWaitingRestart || m.shuttingDown {
		return
	}
	in.timer = nil
	in.st.Restarts++
	if err := m.launch(in); err != nil {
		m.log.Warn("restart failed", "pm_id", in.st.PMID, "name", in.st.Name, "err", err)
	}
}

// cancelTimer stops a pending restart. The caller holds m.mu.
func (in *instance) cancelTimer() {
	in.timerGen++
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
}

// launch starts the instance's process and moves it to launching, or to errored when the
// process cannot be started. The caller holds m.mu.
func (m *Manager) launch(in *instance) error {
	in.cancelTimer()
	if !m.setStatus(in, StatusLaunching) {
		return fmt.Errorf("pm_id %d: cannot launch from status %q", in.st.PMID, in.st.Status)
	}
	if in.userStopped {
		in.userStopped = false
		m.syncAutomation(in.app)
	}
	r, err := m.spawn(in, false)
	if err != nil {
		in.st.Notes = appendNote(in.st.Notes, err.Error())
		m.setStatus(in, StatusErrored)
		m.releaseIdle(in.app)
		return err
	}
	m.adopt(in, r)
	return nil
}

// adopt makes r the instance's current process. The caller holds m.mu.
func (m *Manager) adopt(in *instance, r *run) {
	in.run = r
	in.st.PID, in.st.PGID = r.pid, r.pid
	in.st.StartedAt = r.startedAt
	in.st.StdoutFD, in.st.StderrFD, in.st.IPCFD = r.stdoutFD, r.stderrFD, r.ipcFD
	in.cpu, in.mem = 0, 0
	m.changed.Broadcast()
}

// releaseIdle closes the cluster primary of an app none of whose instances is running any more,
// so that its sockets do not hold connections nobody will serve. The caller holds m.mu.
func (m *Manager) releaseIdle(a *app) {
	if a.primary == nil {
		return
	}
	for _, in := range a.instances {
		if in.st.Status.running() || in.next != nil || in.run != nil {
			return
		}
	}
	if err := a.primary.Close(); err != nil {
		m.log.Warn("close cluster primary", "app", a.spec.Name, "err", err)
	}
	a.primary = nil
}

// appendNote adds a note, keeping the latest few.
func appendNote(notes []string, note string) []string {
	const keep = 5
	notes = append(notes, note)
	if len(notes) > keep {
		notes = append([]string(nil), notes[len(notes)-keep:]...)
	}
	return notes
}

// permissionHint explains EACCES for an app run as another user: exec reports the program, but the
// cause is as often the working directory or the script the user cannot reach.
func permissionHint(err error, res resolved) string {
	if res.cred == nil || !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return fmt.Sprintf(" (as uid %d: that user must be able to enter %s and read the script and interpreter)", res.cred.Uid, res.cwd)
}
