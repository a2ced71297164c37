// Package keeper is the small, long-lived process that must never die so that the corral daemon
// may: it is the daemon's parent and a child subreaper, so apps orphaned by a dying daemon are
// re-parented to it and reaped by it (their exit status is kept for the next daemon), and it holds
// an fd store (listening sockets, IPC channels, log pipes, a memfd of the daemon's state) so that
// while the daemon is dead backlogs keep queueing, channels see no EOF and log writers no EPIPE.
// It restarts a crashed daemon with backoff and swaps daemon binaries with rollback (UPDATE).
//
// The keeper is deliberately dumb: it never reads, writes or polls a stored fd, never interprets
// the state, and knows nothing about apps. See docs/keeper.md.
package keeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/corralhq/corral/internal/fdhygiene"
	"github.com/corralhq/corral/internal/pagetrim"
	"golang.org/x/sys/unix"
)

// Environment of a daemon started by the keeper.
const (
	EnvSocket = "CORRAL_KEEPER_SOCK" // the keeper's socket
	EnvPID    = "CORRAL_KEEPER_PID"  // the keeper's pid
	EnvGen    = "CORRAL_KEEPER_GEN"  // 1 for the first daemon, +1 for each start (restart, update)
)

// SocketName is the keeper's socket inside Config.Dir.
const SocketName = "keeper.sock"

// HandoverSignal asks the daemon to hand over for an update: stop touching its fds, store its final
// state, and exit. A daemon that ignores it is killed after Config.HandoverTimeout, which is safe:
// everything it needs is in the store.
const HandoverSignal = syscall.SIGUSR1

// DeathSignal is the PR_SET_PDEATHSIG signal the daemon gets when the keeper dies. SIGTERM makes
// an unmodified daemon stop its apps; OnKeeperDeath tells the daemon why.
const DeathSignal = syscall.SIGTERM

// Config configures Run. Zero durations and caps take the defaults shown.
type Config struct {
	Dir    string   // directory of the socket: created 0700, must be owned by the keeper's uid
	Daemon []string // the daemon's argv; Daemon[0] is an absolute path
	Env    []string // the daemon's environment; nil means the keeper's own

	// ReadyFile, if set, gets one byte and is closed when the first daemon reports READY.
	ReadyFile *os.File
	// GiveUpBeforeReady makes Run return an error, instead of restarting, when the first daemon
	// exits before it ever sent READY (a daemon that cannot start: a bad configuration, another
	// daemon running). Later daemons are restarted as usual. `corral __keeper` sets it, so that
	// the CLI that spawned it sees the failure rather than a keeper retrying forever.
	GiveUpBeforeReady bool

	ReadyTimeout    time.Duration // 60s: a daemon that has not sent READY by then is killed
	RestartMin      time.Duration // 100ms: first restart delay after a crash; doubles per crash
	RestartMax      time.Duration // 30s: the delay's cap
	StableAfter     time.Duration // 10s: a daemon ready for this long resets the backoff
	HandoverTimeout time.Duration // 30s: an old daemon told to hand over is killed after this
	StopTimeout     time.Duration // 75s: on ctx cancel, the daemon is SIGKILLed after this

	MaxEntries int // 1024 fds in the store; STORE beyond fails with "fd store full"
	MaxConns   int // 32 client connections; beyond, new connections are closed at once
	MaxExits   int // 4096 unacknowledged exit records; beyond, the oldest is dropped (counted)

	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadyTimeout, 60*time.Second)
	def(&c.RestartMin, 100*time.Millisecond)
	def(&c.RestartMax, 30*time.Second)
	def(&c.StableAfter, 10*time.Second)
	def(&c.HandoverTimeout, 30*time.Second)
	def(&c.StopTimeout, 75*time.Second)
	for _, p := range []struct {
		v *int
		d int
	}{{&c.MaxEntries, 1024}, {&c.MaxConns, 32}, {&c.MaxExits, 4096}} {
		if *p.v <= 0 {
			*p.v = p.d
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type entry struct {
	fd   int32
	nlen uint8
	name [MaxName]byte
}

type conn struct {
	fd      int32 // -1: free slot
	pid     int32 // SO_PEERCRED pid at connect time
	waiting bool  // a parked EXITS request
	updater bool  // waits for the reply to its UPDATE
}

type exitRec struct {
	seq    uint64
	pid    int32
	status uint32
}

const (
	phaseNone     = iota
	phaseHandover // the old daemon was told to hand over; waiting for it to exit
	phaseTrial    // the new daemon runs; waiting for its READY
)

type keeper struct {
	cfg  Config
	log  *slog.Logger
	self int
	euid int

	lnFD, wakeFD, lockFD int
	null                 *os.File // the daemon's stdin
	sockPath             string

	entries []entry // entries[:nent] are in use
	nent    int
	conns   []conn
	exits   []exitRec // ring: exits[(head+i)%len] for i < nexits
	head    int
	nexits  int
	seq     uint64 // last sequence number given
	lost    uint64

	pfds  []unix.PollFd
	pconn []int // pfds[i] belongs to conns[pconn[i]] (i >= 2)
	ts    unix.Timespec

	rbuf, roob, sbuf, soob []byte
	fdsIn                  [maxRecvFD]int32
	msg                    unix.Msghdr
	iov                    unix.Iovec
	ucred                  unix.Ucred
	ucredLen               uint32
	ebuf                   [8]byte
	acceptPause            time.Time

	// The daemon. At most one daemon process exists at any time.
	exeFD            int // the current daemon executable, held so that it survives replacement on disk
	argv, env        []string
	pid              int
	ready            bool
	readyAt, readyBy time.Time
	restartAt        time.Time
	failures         int
	gen              uint32
	killReason       string
	upd              struct {
		phase    int
		conn     int // requesting connection, -1 once gone
		exeFD    int
		argv     []string
		timeout  time.Duration
		deadline time.Time
	}
	stopping  bool
	stopBy    time.Time
	done      bool
	everReady bool  // some daemon has sent READY
	gaveUp    error // GiveUpBeforeReady: why Run gives up
}

// Run is the keeper: it starts cfg.Daemon and supervises it until ctx is done (then it stops the
// daemon with SIGTERM and returns) or the daemon exits with status 0 of its own accord (a clean
// shutdown). Call it first thing in a dedicated process: it closes every inherited fd above 2 that
// is not close-on-exec, marks the rest close-on-exec, and makes the process a child subreaper.
// Keep an inherited fd (ReadyFile) by marking it close-on-exec before calling Run.
func Run(ctx context.Context, cfg Config) error {
	// PR_SET_PDEATHSIG fires when the thread that started the child exits, not the process
	// (go.dev/issue/27505): keep every spawn on this thread, which lives as long as Run.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := fdhygiene.CloseInherited(); err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	if err := fdhygiene.CloexecFrom(3); err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	if len(cfg.Daemon) == 0 || !filepath.IsAbs(cfg.Daemon[0]) {
		return errors.New("keeper: Config.Daemon must start with an absolute path")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keeper: become a child subreaper: %w", err)
	}
	k, err := newKeeper(cfg)
	if err != nil {
		return err
	}
	defer k.close()
	if k.exeFD, err = openExe(cfg.Daemon[0]); err != nil {
		return fmt.Errorf("keeper: daemon executable: %w", err)
	}
	k.argv = cfg.Daemon
	k.env = cfg.Env
	if k.env == nil {
		k.env = os.Environ()
	}
	k.env = withoutVars(k.env, EnvSocket, EnvPID, EnvGen, "CORRAL_READY_FD")

	// One goroutine turns SIGCHLD and ctx's end into a write on the eventfd the loop polls.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	quit, bridged := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(bridged)
		done := ctx.Done()
		one := [8]byte{1}
		for {
			select {
			case <-sigs:
			case <-done:
				done = nil
			case <-quit:
				return
			}
			unix.Write(k.wakeFD, one[:])
		}
	}()
	defer func() { // before k.close (deferred earlier): the goroutine must not write to a closed fd
		signal.Stop(sigs)
		close(quit)
		<-bridged
	}()

	k.log.Info("keeper started", "pid", k.self, "socket", k.sockPath, "daemon", k.argv)
	k.start(k.exeFD, k.argv, k.cfg.ReadyTimeout)
	for !k.done {
		if ctx.Err() != nil && !k.stopping {
			k.stop("keeper stopping")
		}
		k.timers(time.Now())
		if k.done {
			break
		}
		k.pollOnce(k.nextTimeout(time.Now()))
		k.reap()
	}
	k.log.Info("keeper exiting", "pid", k.self)
	return k.gaveUp
}

// newKeeper allocates every table and opens the socket; it starts nothing.
func newKeeper(cfg Config) (*keeper, error) {
	cfg.defaults()
	k := &keeper{cfg: cfg, log: cfg.Logger, self: os.Getpid(), euid: os.Geteuid(),
		lnFD: -1, wakeFD: -1, lockFD: -1, exeFD: -1,
		entries: make([]entry, cfg.MaxEntries), conns: make([]conn, cfg.MaxConns),
		exits: make([]exitRec, cfg.MaxExits),
		pfds:  make([]unix.PollFd, 2+cfg.MaxConns), pconn: make([]int, 2+cfg.MaxConns),
		rbuf: make([]byte, 2*maxRecord), roob: make([]byte, unix.CmsgSpace(4*maxRecvFD)),
		sbuf: make([]byte, maxRecord), soob: make([]byte, unix.CmsgSpace(4*fetchPage))}
	k.upd.conn, k.upd.exeFD = -1, -1
	for i := range k.conns {
		k.conns[i].fd = -1
	}
	if err := k.open(); err != nil {
		k.close()
		return nil, fmt.Errorf("keeper: %w", err)
	}
	return k, nil
}

func (k *keeper) open() error {
	if err := checkDir(k.cfg.Dir, k.euid); err != nil {
		return err
	}
	var err error
	if k.lockFD, err = unix.Open(filepath.Join(k.cfg.Dir, "keeper.lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600); err != nil {
		return fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(k.lockFD, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another keeper runs in %s: %w", k.cfg.Dir, err)
	}
	if k.null, err = os.Open(os.DevNull); err != nil { // O_CLOEXEC, as every fd Go opens
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	if k.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	k.sockPath = filepath.Join(k.cfg.Dir, SocketName)
	if len(k.sockPath) >= len(unix.RawSockaddrUnix{}.Path) {
		return fmt.Errorf("socket path %s is too long", k.sockPath)
	}
	if k.lnFD, err = unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := os.Remove(k.sockPath); err != nil && !errors.Is(err, os.ErrNotExist) { // stale: we hold the lock
		return fmt.Errorf("remove stale socket: %w", err)
	}
	if err := unix.Bind(k.lnFD, &unix.SockaddrUnix{Name: k.sockPath}); err != nil {
		return fmt.Errorf("bind %s: %w", k.sockPath, err)
	}
	if err := unix.Chmod(k.sockPath, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", k.sockPath, err)
	}
	if err := unix.Listen(k.lnFD, 64); err != nil {
		return fmt.Errorf("listen %s: %w", k.sockPath, err)
	}
	return nil
}

// checkDir creates dir 0700 if needed and insists that it is a real directory owned by uid with
// no access for group or others (it tightens a looser mode).
func checkDir(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by uid %d, not %d", dir, st.Uid, uid)
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict %s to 0700: %w", dir, err)
		}
	}
	return nil
}

func (k *keeper) close() {
	for i := range k.conns {
		k.closeConn(i)
	}
	for i := 0; i < k.nent; i++ {
		unix.Close(int(k.entries[i].fd))
	}
	k.nent = 0
	if k.lnFD >= 0 {
		os.Remove(k.sockPath)
	}
	if k.null != nil {
		k.null.Close()
	}
	for _, fd := range []*int{&k.lnFD, &k.wakeFD, &k.exeFD, &k.upd.exeFD, &k.lockFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// ---- the daemon's life ----

func openExe(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not an executable file", path)
	}
	return fd, nil
}

// start starts a daemon from the executable held open as exeFD. It runs it through
// /proc/<keeper>/fd/<exeFD>, so a restart or a rollback runs the very binary that was started
// before, even if the file has since been replaced or removed.
func (k *keeper) start(exeFD int, argv []string, readyTimeout time.Duration) {
	k.gen++
	path := "/proc/" + strconv.Itoa(k.self) + "/fd/" + strconv.Itoa(exeFD)
	env := append(k.env[:len(k.env):len(k.env)], EnvSocket+"="+k.sockPath,
		EnvPID+"="+strconv.Itoa(k.self), EnvGen+"="+strconv.FormatUint(uint64(k.gen), 10))
	p, err := os.StartProcess(path, argv, &os.ProcAttr{Env: env, Files: []*os.File{k.null, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Pdeathsig: DeathSignal}})
	if err != nil {
		k.log.Error("start daemon", "argv", argv, "err", err)
		switch {
		case k.upd.phase == phaseTrial:
			k.rollback(fmt.Sprintf("start %s: %v", argv[0], err))
		case k.cfg.GiveUpBeforeReady && !k.everReady:
			k.gaveUp = fmt.Errorf("keeper: start the daemon: %w", err)
			k.done = true
		default:
			k.scheduleRestart(time.Now())
		}
		return
	}
	k.pid = p.Pid
	p.Release() // reaped by wait4(-1) in reap
	k.ready, k.killReason = false, ""
	k.readyBy = time.Now().Add(readyTimeout)
	k.log.Info("daemon started", "pid", k.pid, "gen", k.gen, "argv", argv)
}

func (k *keeper) scheduleRestart(now time.Time) {
	d := k.cfg.RestartMin << min(k.failures, 30)
	if d <= 0 || d > k.cfg.RestartMax {
		d = k.cfg.RestartMax
	}
	k.failures++
	k.restartAt = now.Add(d)
	k.log.Warn("daemon restart scheduled", "in", d, "failures", k.failures)
}

func (k *keeper) daemonExited(ws unix.WaitStatus) {
	pid, wasReady, now := k.pid, k.ready, time.Now()
	k.pid, k.ready, k.readyBy, k.stopBy = 0, false, time.Time{}, time.Time{}
	k.log.Warn("daemon exited", "pid", pid, "status", describe(ws), "reason", k.killReason)
	switch {
	case k.stopping:
		k.done = true
	case k.upd.phase == phaseHandover:
		k.upd.phase, k.upd.deadline = phaseTrial, time.Time{}
		k.start(k.upd.exeFD, k.upd.argv, k.upd.timeout)
	case k.upd.phase == phaseTrial:
		why := k.killReason
		if why == "" {
			why = describe(ws)
		}
		k.rollback(fmt.Sprintf("new daemon (pid %d) %s before READY", pid, why))
	case ws.Exited() && ws.ExitStatus() == 0:
		k.log.Info("daemon shut down cleanly; keeper exits")
		k.done = true
	case k.cfg.GiveUpBeforeReady && !k.everReady:
		k.log.Error("the first daemon exited before READY; keeper gives up", "status", describe(ws))
		k.gaveUp = fmt.Errorf("keeper: the daemon (pid %d) %s before it was ready", pid, describe(ws))
		k.done = true
	default:
		if wasReady && now.Sub(k.readyAt) >= k.cfg.StableAfter {
			k.failures = 0
		}
		k.scheduleRestart(now)
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + strconv.Itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
	}
	return "exited with status " + strconv.Itoa(ws.ExitStatus())
}

// rollback ends a failed update: the requester is told why, and the previous daemon is started
// again from its held executable (it recovers from the store, as after a crash).
func (k *keeper) rollback(why string) {
	k.log.Error("update failed; rolling back", "why", why)
	k.replyUpdate(false, 0, why)
	k.start(k.exeFD, k.argv, k.cfg.ReadyTimeout)
}

// replyUpdate answers the pending UPDATE and ends it.
func (k *keeper) replyUpdate(ok bool, pid int, why string) {
	if c := k.upd.conn; c >= 0 {
		k.conns[c].updater = false
		if ok {
			k.reply(c, header{op: opUpdate | opReply, arg: uint64(pid)}, 0, 0, 0)
		} else {
			k.sendErr(c, codeUpdateFailed, why)
		}
	}
	if k.upd.exeFD >= 0 {
		unix.Close(k.upd.exeFD)
	}
	k.upd.phase, k.upd.conn, k.upd.exeFD, k.upd.argv, k.upd.deadline = phaseNone, -1, -1, nil, time.Time{}
}

func (k *keeper) stop(why string) {
	k.stopping = true
	if k.upd.phase != phaseNone {
		k.replyUpdate(false, 0, why)
	}
	if k.pid == 0 {
		k.done = true
		return
	}
	unix.Kill(k.pid, unix.SIGTERM)
	k.stopBy, k.readyBy = time.Now().Add(k.cfg.StopTimeout), time.Time{}
}

// timers acts on the deadlines that have passed.
func (k *keeper) timers(now time.Time) {
	if k.pid == 0 && !k.stopping && !k.restartAt.IsZero() && !now.Before(k.restartAt) {
		k.restartAt = time.Time{}
		k.start(k.exeFD, k.argv, k.cfg.ReadyTimeout)
	}
	if k.pid == 0 {
		return
	}
	kill := func(why string) {
		k.log.Error("killing daemon", "pid", k.pid, "why", why)
		k.killReason = why
		unix.Kill(k.pid, unix.SIGKILL)
	}
	switch {
	case k.stopping:
		if !k.stopBy.IsZero() && !now.Before(k.stopBy) {
			k.stopBy = time.Time{}
			kill("did not stop in time")
		}
	case k.upd.phase == phaseHandover:
		if !k.upd.deadline.IsZero() && !now.Before(k.upd.deadline) {
			k.upd.deadline = time.Time{}
			kill("did not hand over in time")
		}
	case !k.ready && !k.readyBy.IsZero() && !now.Before(k.readyBy):
		k.readyBy = time.Time{}
		kill("no READY in time")
	}
}

// nextTimeout returns poll's timeout in ms until the next deadline, -1 for none. Each deadline
// is cleared when it fires or stops applying, so none stays in the past.
func (k *keeper) nextTimeout(now time.Time) int {
	var next time.Time
	for _, t := range [...]time.Time{k.restartAt, k.stopBy, k.upd.deadline, k.readyBy} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if !k.acceptPause.IsZero() && (next.IsZero() || k.acceptPause.Before(next)) {
		next = k.acceptPause
	}
	if next.IsZero() {
		return -1
	}
	d := next.Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// reap collects every child that has exited: the daemon, or apps orphaned to the keeper.
func (k *keeper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if pid == k.pid {
			k.daemonExited(ws)
		} else {
			k.recordExit(pid, uint32(ws))
		}
	}
}

// recordExit appends to the exit table; when it is full the oldest record is dropped and counted
// in lost. Parked EXITS requests are answered.
func (k *keeper) recordExit(pid int, status uint32) {
	k.seq++
	if k.nexits == len(k.exits) {
		k.head = (k.head + 1) % len(k.exits)
		k.nexits--
		k.lost++
	}
	k.exits[(k.head+k.nexits)%len(k.exits)] = exitRec{seq: k.seq, pid: int32(pid), status: status}
	k.nexits++
	for i := range k.conns {
		if k.conns[i].waiting {
			k.conns[i].waiting = false
			k.sendExits(i)
		}
	}
}

// ---- the socket ----

func (k *keeper) pollOnce(timeout int) {
	k.pfds[0] = unix.PollFd{Fd: int32(k.lnFD), Events: unix.POLLIN}
	if !k.acceptPause.IsZero() {
		if time.Now().Before(k.acceptPause) {
			k.pfds[0].Fd = -1 // out of fds: do not spin on a readable listener
		} else {
			k.acceptPause = time.Time{}
		}
	}
	k.pfds[1] = unix.PollFd{Fd: int32(k.wakeFD), Events: unix.POLLIN}
	n := 2
	for i := range k.conns {
		if k.conns[i].fd >= 0 {
			k.pfds[n] = unix.PollFd{Fd: k.conns[i].fd, Events: unix.POLLIN}
			k.pconn[n] = i
			n++
		}
	}
	var ts *unix.Timespec
	if timeout >= 0 {
		k.ts = unix.NsecToTimespec(int64(timeout) * int64(time.Millisecond))
		ts = &k.ts
	}
	if _, err := unix.Ppoll(k.pfds[:n], ts, nil); err != nil {
		return // EINTR; anything else would repeat, and the timers still run
	}
	if k.pfds[1].Revents != 0 {
		unix.Read(k.wakeFD, k.ebuf[:])
	}
	if k.pfds[0].Revents != 0 {
		k.accept()
	}
	for i := 2; i < n; i++ {
		if k.pfds[i].Revents != 0 {
			k.serve(k.pconn[i])
		}
	}
}

func (k *keeper) accept() {
	for {
		nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(k.lnFD), 0, 0, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0, 0)
		switch e {
		case 0:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			k.acceptPause = time.Now().Add(100 * time.Millisecond)
			return
		default:
			return
		}
		fd := int(nfd)
		k.ucredLen = unix.SizeofUcred
		_, _, e = unix.Syscall6(unix.SYS_GETSOCKOPT, nfd, unix.SOL_SOCKET, unix.SO_PEERCRED,
			uintptr(unsafe.Pointer(&k.ucred)), uintptr(unsafe.Pointer(&k.ucredLen)), 0)
		if e != 0 || int(k.ucred.Uid) != k.euid {
			k.log.Warn("rejected a connection from another uid", "uid", k.ucred.Uid, "pid", k.ucred.Pid)
			unix.Close(fd)
			continue
		}
		slot := -1
		for i := range k.conns {
			if k.conns[i].fd < 0 {
				slot = i
				break
			}
		}
		if slot < 0 { // at the cap: the client sees EOF rather than a hang
			unix.Close(fd)
			continue
		}
		k.conns[slot] = conn{fd: int32(fd), pid: k.ucred.Pid}
	}
}

func (k *keeper) closeConn(i int) {
	c := &k.conns[i]
	if c.fd < 0 {
		return
	}
	unix.Close(int(c.fd))
	if c.updater {
		k.upd.conn = -1
	}
	*c = conn{fd: -1}
}

// recv reads one record into rbuf and its fds into fdsIn. It returns the record length (-1: no
// record after all, 0: the connection is to be closed) and the number of fds. A record too long
// for rbuf or with more fds than fdsIn holds comes back with its fds closed and nfds -1.
func (k *keeper) recv(fd int) (int, int) {
	k.iov.Base = &k.rbuf[0]
	k.iov.SetLen(len(k.rbuf))
	k.msg = unix.Msghdr{Iov: &k.iov, Control: &k.roob[0]}
	k.msg.SetIovlen(1)
	k.msg.SetControllen(len(k.roob))
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&k.msg)), unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
	if e == unix.EAGAIN || e == unix.EINTR {
		return -1, 0
	}
	nfds := 0
	oob := k.roob[:min(uint64(k.msg.Controllen), uint64(len(k.roob)))]
	for len(oob) >= unix.SizeofCmsghdr && e == 0 {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || uint64(h.Len) > uint64(len(oob)) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			for off := unix.CmsgLen(0); off+4 <= int(h.Len) && nfds < maxRecvFD; off += 4 {
				k.fdsIn[nfds] = *(*int32)(unsafe.Pointer(&oob[off]))
				nfds++
			}
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	if e != 0 || n == 0 {
		k.closeIn(nfds)
		return 0, 0
	}
	if k.msg.Flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		k.closeIn(nfds)
		return int(n), -1
	}
	return int(n), nfds
}

func (k *keeper) closeIn(nfds int) {
	for i := 0; i < nfds; i++ {
		unix.Close(int(k.fdsIn[i]))
	}
}

// reply sends sbuf[:hdrLen+plen] with the first nfds fds of the store from index first.
func (k *keeper) reply(ci int, h header, plen int, nfds int, first int) {
	putHeader(k.sbuf, h)
	k.iov.Base = &k.sbuf[0]
	k.iov.SetLen(hdrLen + plen)
	k.msg = unix.Msghdr{Iov: &k.iov}
	k.msg.SetIovlen(1)
	if nfds > 0 {
		ch := (*unix.Cmsghdr)(unsafe.Pointer(&k.soob[0]))
		ch.Level, ch.Type = unix.SOL_SOCKET, unix.SCM_RIGHTS
		ch.SetLen(unix.CmsgLen(4 * nfds))
		for i := 0; i < nfds; i++ {
			*(*int32)(unsafe.Pointer(&k.soob[unix.CmsgLen(0)+4*i])) = k.entries[first+i].fd
		}
		k.msg.Control = &k.soob[0]
		k.msg.SetControllen(unix.CmsgSpace(4 * nfds))
	}
	_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(k.conns[ci].fd), uintptr(unsafe.Pointer(&k.msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	if e != 0 { // a client that does not read its replies is dropped
		k.closeConn(ci)
	}
}

func (k *keeper) sendErr(ci int, code int, msg string) {
	if msg == "" {
		msg = codeText[code]
	}
	n := copy(k.sbuf[hdrLen:], msg)
	k.reply(ci, header{op: opErr, n: uint16(code)}, n, 0, 0)
}

func (k *keeper) ok(ci int, op byte, arg uint64) {
	k.reply(ci, header{op: op | opReply, arg: arg}, 0, 0, 0)
}

// serve handles one record from connection ci.
func (k *keeper) serve(ci int) {
	n, nfds := k.recv(int(k.conns[ci].fd))
	if n <= 0 {
		if n == 0 {
			k.closeConn(ci)
		}
		return
	}
	h, p, code := header{}, []byte(nil), codeBadRequest
	if nfds >= 0 {
		h, p, code = parseRequest(k.rbuf[:n], nfds)
	}
	if code != 0 {
		k.closeIn(max(nfds, 0))
		k.sendErr(ci, code, "")
		if code == codeBadRequest {
			k.closeConn(ci)
		}
		return
	}
	switch h.op {
	case opPing:
		s := Status{KeeperPID: k.self, DaemonPID: k.pid, Generation: k.gen, DaemonReady: k.ready,
			Updating: k.upd.phase != phaseNone, Entries: k.nent, PendingExits: k.nexits, NextSeq: k.seq + 1, LostExits: k.lost}
		putStatus(k.sbuf[hdrLen:], &s)
		k.reply(ci, header{op: opPing | opReply}, statusLen, 0, 0)
	case opStore:
		k.store(ci, p, k.fdsIn[0])
	case opRemove:
		if k.upd.phase == phaseTrial {
			k.sendErr(ci, codeReadOnly, "")
			return
		}
		i := k.find(p)
		if i >= 0 {
			unix.Close(int(k.entries[i].fd))
			k.nent--
			k.entries[i] = k.entries[k.nent]
		}
		k.ok(ci, opRemove, uint64(boolByte(i >= 0)))
	case opFetch:
		k.fetch(ci, h.arg)
	case opExits:
		for k.nexits > 0 && k.exits[k.head].seq <= h.arg { // acknowledged
			k.head = (k.head + 1) % len(k.exits)
			k.nexits--
		}
		if k.nexits == 0 && h.flags&flagWait != 0 {
			k.conns[ci].waiting = true
			return
		}
		k.sendExits(ci)
	case opReady:
		k.readyFrom(ci)
	case opUpdate:
		k.update(ci, p, time.Duration(h.arg)*time.Millisecond)
	}
}

func (k *keeper) find(name []byte) int {
	for i := 0; i < k.nent; i++ {
		e := &k.entries[i]
		if int(e.nlen) == len(name) && string(e.name[:e.nlen]) == string(name) {
			return i
		}
	}
	return -1
}

// store keeps fd under name, replacing (and closing) an fd stored under the same name.
func (k *keeper) store(ci int, name []byte, fd int32) {
	if k.upd.phase == phaseTrial {
		unix.Close(int(fd))
		k.sendErr(ci, codeReadOnly, "")
		return
	}
	i := k.find(name)
	switch {
	case i >= 0:
		unix.Close(int(k.entries[i].fd))
	case k.nent == len(k.entries):
		unix.Close(int(fd))
		k.sendErr(ci, codeStoreFull, "")
		return
	default:
		i = k.nent
		k.nent++
	}
	e := &k.entries[i]
	e.fd, e.nlen = fd, uint8(copy(e.name[:], name))
	k.ok(ci, opStore, 0)
}

// fetch sends up to fetchPage entries from index start, with duplicates of their fds (the store
// keeps its own).
func (k *keeper) fetch(ci int, start uint64) {
	s := min(start, uint64(k.nent))
	cnt := min(k.nent-int(s), fetchPage)
	p := k.sbuf[hdrLen:]
	off := 0
	for i := 0; i < cnt; i++ {
		e := &k.entries[int(s)+i]
		p[off] = e.nlen
		off += 1 + copy(p[off+1:], e.name[:e.nlen])
	}
	h := header{op: opFetch | opReply, n: uint16(cnt), arg: s + uint64(cnt)}
	if int(s)+cnt < k.nent {
		h.flags = flagMore
	}
	k.reply(ci, h, off, cnt, int(s))
}

func (k *keeper) sendExits(ci int) {
	cnt := min(k.nexits, exitPage)
	p := k.sbuf[hdrLen:]
	for i := 0; i < cnt; i++ {
		r := &k.exits[(k.head+i)%len(k.exits)]
		b := p[i*exitLen:]
		putU64(b, r.seq)
		putU32(b[8:], uint32(r.pid))
		putU32(b[12:], r.status)
	}
	h := header{op: opExits | opReply, n: uint16(cnt), arg: k.lost}
	if cnt < k.nexits {
		h.flags = flagMore
	}
	k.reply(ci, h, cnt*exitLen, 0, 0)
}

func putU64(b []byte, v uint64) {
	putU32(b, uint32(v))
	putU32(b[4:], uint32(v>>32))
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func (k *keeper) readyFrom(ci int) {
	if k.pid == 0 || int(k.conns[ci].pid) != k.pid {
		k.sendErr(ci, codeNotDaemon, "")
		return
	}
	if !k.ready {
		if !k.everReady {
			// The keeper's start-up is over: its binary's pages that only start-up touched leave
			// its RSS (internal/pagetrim); the loop's code faults back in.
			if _, err := pagetrim.Trim(); err != nil {
				k.log.Warn("trim start-up pages", "err", err)
			}
		}
		k.ready, k.readyAt, k.readyBy, k.everReady = true, time.Now(), time.Time{}, true
		k.log.Info("daemon ready", "pid", k.pid, "gen", k.gen)
	}
	k.ok(ci, opReady, 0)
	if k.upd.phase == phaseTrial { // the update succeeded: the new binary becomes the current one
		unix.Close(k.exeFD)
		k.exeFD, k.argv, k.upd.exeFD = k.upd.exeFD, k.upd.argv, -1
		k.failures = 0
		k.log.Info("update done", "pid", k.pid, "argv", k.argv)
		k.replyUpdate(true, k.pid, "")
	}
	if f := k.cfg.ReadyFile; f != nil {
		k.cfg.ReadyFile = nil
		f.Write([]byte{'1'})
		f.Close()
	}
}

// update starts an UPDATE: the current daemon is told to hand over (HandoverSignal), and once it
// has exited the new one starts; the reply waits for the new daemon's READY or the rollback.
func (k *keeper) update(ci int, p []byte, timeout time.Duration) {
	if k.stopping || k.upd.phase != phaseNone {
		k.sendErr(ci, codeBusy, "")
		return
	}
	argv := splitArgv(p)
	fd, err := openExe(argv[0])
	if err != nil {
		k.sendErr(ci, codeExec, "cannot open the new daemon executable: "+err.Error())
		return
	}
	if timeout <= 0 {
		timeout = k.cfg.ReadyTimeout
	}
	k.upd.conn, k.upd.exeFD, k.upd.argv, k.upd.timeout = ci, fd, argv, timeout
	k.conns[ci].updater = true
	k.log.Info("update requested", "argv", argv, "daemon", k.pid)
	if k.pid == 0 { // no daemon runs (crashed, waiting for its restart): start the new one now
		k.restartAt = time.Time{}
		k.upd.phase = phaseTrial
		k.start(fd, argv, timeout)
		return
	}
	k.upd.phase, k.readyBy = phaseHandover, time.Time{} // only the handover deadline counts now
	k.upd.deadline = time.Now().Add(k.cfg.HandoverTimeout)
	unix.Kill(k.pid, HandoverSignal)
}

func withoutVars(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if len(kv) > len(n) && kv[len(n)] == '=' && kv[:len(n)] == n {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
