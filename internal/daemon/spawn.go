package daemon

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/ipc"
	"github.com/corralhq/corral/internal/logs"
	"github.com/corralhq/corral/internal/owner"
	"github.com/corralhq/corral/internal/pidwait"
	"golang.org/x/sys/unix"
)

// spawn starts a process for in and the goroutines that watch it. replacement marks a reload's
// new process, which does not own the pid file until it takes over. The caller holds m.mu; the
// instance's state is not changed here.
//
// Fork and listen processes exist when spawn returns (r.forked is closed). A cluster worker is
// forked by forkWorker on a goroutine, because cluster.Primary.ForkWith takes the primary's lock,
// which m.mu must never wait for (see the package doc); until it has been forked r.pid is 0. An
// error from that fork reaches the instance through supervise (startFailed).
func (m *Manager) spawn(in *instance, replacement bool) (_ *run, err error) {
	a := in.app
	spec := a.spec
	r := &run{
		in: in, mode: a.res.mode, sig: newSignals(),
		waitReady: spec.WaitReady, listenTimeout: ms(spec.ListenTimeout), killTimeout: ms(spec.KillTimeout),
		killSignal: unix.SignalNum(spec.KillSignal), shutdownWithMessage: spec.ShutdownWithMessage || killUseMessage(),
		forked: make(chan struct{}),
		done:   make(chan struct{}), stopReq: make(chan struct{}), finished: make(chan struct{}),
		ipcFD: -1,
	}
	if r.killSignal == 0 {
		r.killSignal = syscall.SIGINT
	}
	healthEnv, held := m.prepareHealth(r)
	defer func() {
		if err != nil {
			r.health.closeNotify() // health.go
		}
	}()
	r.drain, r.drainTimeout = drainOn(a), drainTimeout(spec)

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
		// The child has its copies of the write ends; ours must go so that EOF arrives. A cluster
		// worker's are handed to forkWorker, which closes them (outW, errW are nil then).
		if outW != nil {
			outW.Close()
			errW.Close()
		}
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
		f := fork{
			p: m.primaryFor(a), ws: a.workers, released: a.released, res: a.res,
			opts: cluster.ForkOptions{Env: maps.Clone(m.drainEnv(a, in.st.Env)), Stdout: outW, Stderr: errW, Held: held, Slot: in.st.Instance + 1},
		}
		for _, kv := range healthEnv {
			if f.opts.Env == nil {
				f.opts.Env = map[string]string{}
			}
			k, v, _ := strings.Cut(kv, "=")
			f.opts.Env[k] = v
		}
		outW, errW = nil, nil // forkWorker closes them
		m.kids.forking++      // the reaper holds off until forkWorker has registered the worker
		m.bg.Go(func() { m.forkWorker(r, f) })
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
		cmd.Env = envList(in.st.Env, append(append(extra, m.drainEnvList(a, in.st.Env)...), healthEnv...)...)
		if a.res.mode == modeListen {
			activation.Wrap(cmd, m.cfg.Self, a.listeners)
		}
		stdinR, stdinW, perr := os.Pipe() // PM2's send/attach write here
		if perr == nil {
			cmd.Stdin = stdinR
		}
		x := execJob{cmd: cmd, child: child, stdinR: stdinR, stdinW: stdinW, parent: parent,
			name: in.st.Name, pmid: in.st.PMID, res: a.res}
		if !replacement {
			x.pidFile = in.st.PidFile // execFork writes it before it takes m.mu
		}
		if m.execAsync {
			// Forked and exec'd by execFork on a goroutine, without m.mu, like a cluster worker:
			// the caller goes on to the next instance while this one execs.
			x.outW, x.errW = outW, errW
			outW, errW = nil, nil // execFork closes them
			m.kids.forking++      // the reaper holds off until execFork has registered the process
			m.bg.Go(func() { m.execFork(r, x) })
			break
		}
		var stdin *os.File
		if stdin, err = x.start(); err != nil {
			return nil, err
		}
		m.forked(r, x, stdin)
	}
	r.startedAt = time.Now()
	r.stdoutFD, r.stderrFD = fdOf(outR), fdOf(errR)

	m.keepPipes(r, outR, errR)
	if !replacement && r.pid != 0 {
		m.writePidFile(in, r.pid)
	}
	// supervise starts when the process has ended or a stop is requested (startSupervise): no
	// goroutine waits for either meanwhile.
	m.bg.Go(func() { m.watchOnline(r) })
	m.startHealth(r) // health.go: probes and the notify socket
	if r.drain {
		m.bg.Go(func() { m.watchDrain(r) })
	}
	return r, nil
}

// execJob is a fork or listen process prepared by spawn under m.mu: its command and the ends of
// its pipes and IPC channel that are still to be closed or kept.
type execJob struct {
	cmd            *exec.Cmd
	child          *os.File      // the child's end of the IPC channel, or nil
	stdinR, stdinW *os.File      // the standard input pipe, nil when it could not be made
	parent         *net.UnixConn // the daemon's end of the IPC channel, or nil
	outW, errW     *os.File      // with execFork only: the output pipes' write ends, closed after the fork
	name           string        // for errors: read under m.mu by spawn
	pmid           int
	res            resolved
	pidFile        string // with execFork only: the instance's pid file, "" for a reload's replacement
}

// start forks and execs x's process and closes the child's ends of its pipes. It returns the
// write end of the process's standard input (nil without one). On failure everything of x is
// closed and the error is the one spawn reports. It takes no lock.
func (x execJob) start() (stdin *os.File, err error) {
	err = x.cmd.Start()
	if x.child != nil {
		x.child.Close()
	}
	if x.stdinR != nil {
		x.stdinR.Close()
		if err != nil {
			x.stdinW.Close()
		} else {
			stdin = x.stdinW
		}
	}
	if err != nil {
		if x.parent != nil {
			x.parent.Close()
		}
		return nil, fmt.Errorf("start %s (pm_id %d): %w%s", x.name, x.pmid, err, permissionHint(err, x.res))
	}
	return stdin, nil
}

// forked records r's started process and starts the goroutine that waits for it. The caller
// holds m.mu and m.kids.mu.
func (m *Manager) forked(r *run, x execJob, stdin *os.File) {
	cmd := x.cmd
	r.cmd = cmd
	cmd.Env = nil // started: its copy of the environment (a few KB per process) is not needed
	r.pid = cmd.Process.Pid
	if stdin != nil {
		r.stdinMu.Lock()
		r.stdin = stdin
		r.stdinMu.Unlock()
	}
	m.kids.add(r)
	close(r.forked)
	r.sig.markOnline()
	if x.parent != nil {
		r.ipcFD = fdOf(x.parent)
		m.keepIPC(r, x.parent)
		r.ch = ipc.New(x.parent, m.forkChannelOptions(r, false))
	}
	name := x.name
	m.bg.Add(1)
	// No goroutine waits: the shared poll loop watches a pidfd and starts the one that reaps the
	// process and runs this (pidwait.Notify). The orphan reaper leaves r.pid alone while it is
	// registered (m.kids).
	pidwait.Notify(cmd.Process, func(ws syscall.WaitStatus, werr error) {
		defer m.bg.Done()
		cmd.Process.Release() // closes the os package's pidfd; nothing else reads cmd.Process
		m.kids.forget(r)
		switch {
		case werr != nil:
			m.log.Error("wait for process", "name", name, "pid", r.pid, "err", werr)
		case ws.Signaled():
			r.exitSig = ws.Signal()
		case ws.Exited():
			r.exitCode = ws.ExitStatus()
		}
		m.dropIPC(r)
		r.closeStdin()
		close(r.done)
		m.startSupervise(r)
	})
}

// execSlots bounds how many execFork calls fork at once.
var execSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// execFork forks and execs a fork or listen process that spawn prepared with m.execAsync set,
// without m.mu: fork waits for the child's exec, and the next instance of a start need not wait
// for it. Then, under m.mu, it records the process as spawn would have (and, if r is still the
// instance's process, its pid and pid file) and closes r.forked; on failure it sets r.startErr
// and closes r.forked and r.done, and supervise hands the failure to the state machine
// (startFailed), as for a cluster worker. A stop or delete meanwhile waits for r.forked
// (askStop) and then signals the process: none is left behind.
func (m *Manager) execFork(r *run, x execJob) {
	execSlots <- struct{}{}
	stdin, err := x.start()
	<-execSlots
	x.outW.Close() // the child has its copies; the pumps see EOF when it ends
	x.errW.Close()

	// Before m.mu, which every other start and the registration of every other new process wait
	// for: the process's start time (/proc/<pid>/stat) and its pid file (creating a file costs up
	// to ~0.5 ms on some file systems). The process is ours and not reaped (kids.forking holds the
	// reaper off), so its pid names it. Nothing removes the pid file before the process is
	// registered below (exited comes after; a stop waits for r.forked); if by then the instance is
	// deleted or runs another process, the file is removed again, as if never written.
	var procStart uint64
	wrote := false
	if err == nil {
		pid := x.cmd.Process.Pid
		procStart = m.procStartOf(pid) // noteStarted's read, taken early
		if x.pidFile != "" {
			wrote = m.writePidFileAt(x.pidFile, pid)
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.kids.mu.Lock()
	m.kids.forking--
	if err != nil {
		m.kids.mu.Unlock()
		r.startErr = err
		close(r.forked)
		close(r.done)
		m.startSupervise(r)
		m.changed.Broadcast()
		return
	}
	m.forked(r, x, stdin)
	m.kids.mu.Unlock()
	if procStart != 0 {
		r.procStart = procStart
		m.dirty()
	} else {
		m.noteStarted(r)
	}
	if in := r.in; in.run == r && !in.deleted {
		in.spawnRetries = 0
		in.st.PID, in.st.PGID = r.pid, r.pid
		if !wrote || in.st.PidFile != x.pidFile {
			m.writePidFile(in, r.pid)
		}
		if wrote && in.st.PidFile != x.pidFile {
			m.removePidFileAt(x.pidFile)
		}
	} else if wrote {
		m.removePidFileAt(x.pidFile)
	}
	m.changed.Broadcast()
}

// fork is what forkWorker needs from the app, copied under m.mu by spawn.
type fork struct {
	p        *cluster.Primary
	ws       *workerSignals
	released <-chan struct{} // closed once the app's previous primaries have closed
	res      resolved
	opts     cluster.ForkOptions
}

// forkWorker forks r's cluster worker, without m.mu: ForkWith takes the primary's lock, and a
// primary that does not answer must not freeze the Manager. It first waits until the app's
// previous primaries have released their sockets (a new one binds the same addresses). Then,
// under m.mu, it records the worker in r (and in the instance, if r is still its process) and
// closes r.forked; on failure it sets r.startErr and closes r.done too, and supervise hands the
// failure to the state machine.
func (m *Manager) forkWorker(r *run, f fork) {
	in := r.in
	if f.released != nil {
		<-f.released
	}
	w, err := f.p.ForkWith(f.opts)
	// The worker has its copies of the write ends (or there is no worker); ours must go so that
	// the pumps see EOF when it ends.
	f.opts.Stdout.(*os.File).Close()
	f.opts.Stderr.(*os.File).Close()
	if err == nil {
		m.keepWorker(r, f.p, w)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.kids.mu.Lock()
	m.kids.forking--
	if err != nil {
		m.kids.mu.Unlock()
		r.startErr = fmt.Errorf("start %s (pm_id %d): %w%s", in.st.Name, in.st.PMID, err, permissionHint(err, f.res))
		close(r.forked)
		close(r.done)
		m.startSupervise(r)
		m.changed.Broadcast()
		return
	}
	r.worker = w
	r.pid = w.Process.Pid
	m.kids.add(r)
	m.kids.mu.Unlock()
	m.noteStarted(r)
	r.sig = f.ws.get(w)
	if in.run == r && !in.deleted {
		in.spawnRetries = 0
		in.st.PID, in.st.PGID = r.pid, r.pid
		m.writePidFile(in, r.pid)
	}
	close(r.forked)
	m.changed.Broadcast()
	m.bg.Go(func() {
		<-w.Done()
		m.kids.forget(r)
		r.exitCode = w.ExitCode()
		if s, ok := w.ExitSignal().(syscall.Signal); ok {
			r.exitSig = s
		}
		m.dropIPC(r) // the worker's signals go on its exit event (primaryFor), after its last message
		close(r.done)
		m.startSupervise(r)
	})
}

// pump copies a process's output into its line writer until every holder of the pipe's write
// end has closed it.
func pump(src *os.File, w *logs.LineWriter) {
	copyLines(src, w) // logpump.go; LineWriter.Write fails only after Close
	src.Close()
	w.Close()
}

// primaryFor returns the app's cluster primary, creating it on first use. The caller holds m.mu.
func (m *Manager) primaryFor(a *app) *cluster.Primary {
	if a.primary != nil {
		return a.primary
	}
	args := a.res.argv[1:]
	if bunInterpreter(a.res.interpreter) && a.res.cred == nil { // another uid could not read it in the home
		if path, err := m.bunPreload(); err != nil {
			m.log.Warn("bun preload", "err", err)
		} else {
			args = append([]string{"--preload", path}, args...)
		}
	}
	p := cluster.NewPrimary(cluster.Settings{
		Exec:          a.res.argv[0],
		Args:          args,
		Dir:           a.res.cwd,
		SysProcAttr:   &syscall.SysProcAttr{Setpgid: true, Credential: a.res.cred},
		HoldListeners: true,
		Sticky:        a.spec.Sticky,
		BaseEnv:       []string{}, // each worker gets exactly its instance env (ForkOptions.Env), not the daemon's
		Logger:        m.log.With("app", a.spec.Name),
	})
	ws := a.workers
	p.OnOnline(func(w *cluster.Worker) { ws.get(w).markOnline() })
	p.OnDisconnect(func(w *cluster.Worker) { ws.get(w).markDisconnected() })
	// Dropped on the exit event, which comes after the worker's last message (a drain report sent
	// just before it exits), not when the process is reaped.
	p.OnExit(func(w *cluster.Worker, _ int, _ os.Signal) { ws.drop(w) })
	p.OnMessage(func(w *cluster.Worker, raw json.RawMessage) {
		if isReady(raw) {
			ws.get(w).markReady()
		} else {
			noteDrainMessage(ws.get(w), raw)
		}
	})
	a.primary = p
	return p
}

// bunPreloadSource closes a Bun worker's node:http servers when it is disconnected (bun_preload.mjs).
//
//go:embed bun_preload.mjs
var bunPreloadSource []byte

// bunPreload writes bunPreloadSource to <home>/lib/bun-cluster-preload.mjs, unless it is there
// already, and returns its path. The caller holds m.mu.
func (m *Manager) bunPreload() (string, error) {
	path := filepath.Join(m.cfg.Home, "lib", "bun-cluster-preload.mjs")
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, bunPreloadSource) {
		return path, nil
	}
	if err := owner.EnsureDir(filepath.Dir(path)); err != nil { // ours, not another user's link
		return "", err
	}
	tmp := path + ".tmp"
	if err := owner.WriteFile(tmp, bunPreloadSource, 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// writePidFile records pid in the instance's pid file (best effort: logged on failure).
func (m *Manager) writePidFile(in *instance, pid int) {
	m.writePidFileAt(in.st.PidFile, pid)
}

// writePidFileAt writes pid to the pid file at path and reports whether it did (logged on
// failure). It takes no lock.
func (m *Manager) writePidFileAt(path string, pid int) bool {
	if err := owner.WriteFile(path, []byte(strconv.Itoa(pid)), 0o600); err != nil { // no planted link followed
		m.log.Warn("write pid file", "path", path, "err", err)
		return false
	}
	return true
}

// removePidFileAt removes a pid file execFork wrote for a process that is not its instance's.
func (m *Manager) removePidFileAt(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("remove pid file", "path", path, "err", err)
	}
}

// watchOnline moves a launching instance to online: when its process is up, or with wait_ready
// when it sent "ready" — or when listen_timeout passed without it (online anyway, as PM2 does).
func (m *Manager) watchOnline(r *run) {
	<-r.forked
	if r.startErr != nil {
		return
	}
	wait := r.sig.online
	var timeout <-chan time.Time
	if r.waitReady {
		wait = r.sig.ready
		t := time.NewTimer(r.listenTimeout)
		defer t.Stop()
		timeout = t.C
	}
	if r.health != nil && r.health.ready != nil {
		wait, timeout = r.health.ready, nil // a readiness probe: online only once it passed
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

// permissionHint explains EACCES for an app run as another user: exec reports the program, but the
// cause is as often the working directory or the script the user cannot reach.
func permissionHint(err error, res resolved) string {
	if res.cred == nil || !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return fmt.Sprintf(" (as uid %d: that user must be able to enter %s and read the script and interpreter)", res.cred.Uid, res.cwd)
}

// forkChannelOptions is how the daemon reads a fork-mode app's IPC channel: it only listens for the
// "ready" message (wait_ready); handles sent by the app are closed. midStream: the channel was
// kept by the keeper and the previous daemon may have read part of a line.
func (m *Manager) forkChannelOptions(r *run, midStream bool) ipc.Options {
	sig := r.sig
	return ipc.Options{
		OnMessage: func(msg ipc.Message) {
			if msg.FD >= 0 {
				unix.Close(msg.FD)
			}
			if !msg.Internal && isReady(msg.Raw) {
				sig.markReady()
			} else if !msg.Internal {
				noteDrainMessage(sig, msg.Raw)
			}
		},
		Logger:    m.log.With("pm_id", r.in.st.PMID),
		MidStream: midStream,
	}
}
