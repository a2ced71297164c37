// Package daemonproc manages the corral daemon as an operating-system process:
// the state directory, the pid file, starting the daemon in the background
// with a readiness pingback, detecting and cleaning up after a crashed daemon,
// and waiting for a daemon to exit.
//
// The daemon is started under a keeper (`corral __keeper`, internal/keeper):
// Spawn starts the keeper, which starts the daemon and restarts it if it dies,
// keeping the apps' descriptors meanwhile. The pid file (corral.pid) names the
// daemon, as PM2's names its God daemon; keeper.pid names the keeper. Setting
// $CORRAL_KEEPER=0 starts the daemon directly, as before the keeper existed.
package daemonproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/fdhygiene"
	"github.com/corralhq/corral/internal/owner"
	"golang.org/x/sys/unix"
)

// EnvHome names the state directory; it defaults to ~/.corral.
const EnvHome = "CORRAL_HOME"

// EnvReadyFD tells a daemon started by Spawn which inherited file descriptor
// to write its readiness byte to.
const EnvReadyFD = "CORRAL_READY_FD"

// EnvKeeper, set to 0 in the environment of the command that starts the
// daemon, starts it without a keeper: a daemon that dies then takes its apps'
// descriptors with it, and `corral update` is not available.
const EnvKeeper = "CORRAL_KEEPER"

// Paths are the files of one corral home.
type Paths struct {
	Home      string // the state directory
	Socket    string // corral.sock: the control socket
	PidFile   string // corral.pid: the daemon's pid
	LogFile   string // corral.log: the daemon's own log
	SpawnLock string // corral.lock: serialises concurrent daemon start-ups
	// KeeperPidFile is keeper.pid: the pid of the keeper, when the daemon runs under one.
	KeeperPidFile string
}

// EnvPM2Home is PM2's name for the state directory, used when CORRAL_HOME is
// not set.
const EnvPM2Home = "PM2_HOME"

// DefaultHome returns $CORRAL_HOME, else $PM2_HOME, or ~/.corral when both are
// unset, as an absolute path.
func DefaultHome() (string, error) {
	home := os.Getenv(EnvHome)
	if home == "" {
		home = os.Getenv(EnvPM2Home)
	}
	if home == "" {
		u, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the corral home: %w (set %s)", err, EnvHome)
		}
		home = filepath.Join(u, ".corral")
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return "", fmt.Errorf("corral home %s: %w", home, err)
	}
	return abs, nil
}

// PathsFor returns the file layout of the corral home dir.
func PathsFor(home string) Paths {
	return Paths{
		Home:      home,
		Socket:    filepath.Join(home, "corral.sock"),
		PidFile:   filepath.Join(home, "corral.pid"),
		LogFile:   filepath.Join(home, "corral.log"),
		SpawnLock: filepath.Join(home, "corral.lock"),

		KeeperPidFile: filepath.Join(home, "keeper.pid"),
	}
}

// EnsureHome creates the state directory with mode 0700, and tightens its
// mode to 0700 if it exists with looser permissions.
// It refuses a home another user owns (CheckHome).
func EnsureHome(home string) error {
	if err := owner.EnsureDir(home); err != nil {
		return homeError(PathsFor(home), home, err)
	}
	st, err := os.Stat(home)
	if err != nil {
		return fmt.Errorf("corral home: %w", err)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(home, 0o700); err != nil {
			return fmt.Errorf("restrict corral home %s to 0700: %w", home, err)
		}
	}
	return nil
}

// ReadPid returns the pid stored in the pid file at path.
func ReadPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, bytes.TrimSpace(data))
	}
	return pid, nil
}

// WritePid writes pid to path atomically (temporary file, then rename), mode 0600.
func WritePid(path string, pid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".corral.pid.*")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// Alive reports whether a process with this pid exists and is not a zombie.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// A process reaped between the kill and the read: ENOENT, or ESRCH when the read catches
		// it going (seen with a zombie its keeper reaped just then).
		return !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ESRCH)
	}
	// state is the field after the parenthesised command name
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// isDaemon reports whether pid runs `corral daemon` or its keeper, `corral
// __keeper` (judged by its command line), to tell a live daemon from a
// recycled pid.
func isDaemon(pid int) bool {
	return hasArg(pid, "daemon") || isKeeper(pid)
}

// IsDaemon reports whether pid runs `corral daemon` or `corral __keeper` (the CLI's pm2.pid must
// not replace PM2's own daemon's).
func IsDaemon(pid int) bool { return isDaemon(pid) }

// isKeeper reports whether pid runs `corral __keeper`.
func isKeeper(pid int) bool { return hasArg(pid, "__keeper") }

func hasArg(pid int, arg string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	for _, a := range args[1:] {
		if a == arg {
			return true
		}
	}
	return false
}

// KeeperOf returns the pid of the keeper of home p (0 when none runs): the
// parent of the daemon pid if it is a keeper, else the one keeper.pid names.
func KeeperOf(p Paths, pid int) int {
	if pid > 0 {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i >= 0 {
				f := strings.Fields(string(st[i+1:]))
				if len(f) > 1 {
					if ppid, err := strconv.Atoi(f[1]); err == nil && ppid > 1 && isKeeper(ppid) && Alive(ppid) {
						return ppid
					}
				}
			}
		}
	}
	if kpid, err := ReadPid(p.KeeperPidFile); err == nil && kpid != os.Getpid() && Alive(kpid) && isKeeper(kpid) {
		return kpid
	}
	return 0
}

// PingTimeout bounds how long a ping waits for the daemon's answer.
const PingTimeout = 5 * time.Second

// ping reports whether a daemon answers on the socket.
func ping(ctx context.Context, socket string) (api.PingResponse, error) {
	return pingWithin(ctx, socket, PingTimeout)
}

func pingWithin(ctx context.Context, socket string, timeout time.Duration) (api.PingResponse, error) {
	c := api.NewClient(socket)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Ping(ctx)
}

// NoAnswerError says that a daemon took the connection but did not answer in time: it is
// stopped (SIGSTOP), hung or swamped.
type NoAnswerError struct {
	PID     int // from the pid file; 0 when unknown
	Socket  string
	Timeout time.Duration
}

func (e *NoAnswerError) Error() string {
	who := "the daemon"
	if e.PID > 0 {
		who = fmt.Sprintf("the daemon (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s does not answer on %s (no reply within %s; stopped or hung?): `corral kill` stops it", who, e.Socket, e.Timeout)
}

// Ping asks the daemon of home p whether it answers, waiting at most timeout for the reply. A
// daemon that does not reply in time (while ctx lives) gives a *NoAnswerError; no daemon at all
// an error for which api.IsUnreachable is true.
func Ping(ctx context.Context, p Paths, timeout time.Duration) (api.PingResponse, error) {
	pong, err := pingWithin(ctx, p.Socket, timeout)
	if err != nil {
		return pong, noAnswer(ctx, p, timeout, err)
	}
	return pong, nil
}

// noAnswer turns the timeout of a ping made within ctx into a *NoAnswerError.
func noAnswer(ctx context.Context, p Paths, timeout time.Duration, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return err
	}
	pid, _ := ReadPid(p.PidFile)
	if pid > 0 && !Alive(pid) {
		pid = 0
	}
	return &NoAnswerError{PID: pid, Socket: p.Socket, Timeout: timeout}
}

// CleanStale removes the socket and pid file left by a daemon that is gone.
// It fails if a daemon answers on the socket, or if the pid file names a live
// `corral daemon` process that does not answer (a hung daemon, which needs
// to be killed by hand).
func CleanStale(ctx context.Context, p Paths) error {
	if pong, err := ping(ctx, p.Socket); err == nil {
		return fmt.Errorf("a corral daemon (pid %d) is already running on %s", pong.PID, p.Socket)
	} else if !api.IsUnreachable(err) {
		return noAnswer(ctx, p, PingTimeout, err)
	}
	if pid, err := ReadPid(p.PidFile); err == nil && Alive(pid) && isDaemon(pid) && pid != os.Getpid() {
		return fmt.Errorf("the corral daemon (pid %d, from %s) does not answer on %s; kill it and retry", pid, p.PidFile, p.Socket)
	}
	for _, f := range []string{p.Socket, p.PidFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", f, err)
		}
	}
	return nil
}

// Listen cleans up after a dead daemon and listens on the control socket,
// mode 0600. It fails if another daemon is running.
func Listen(ctx context.Context, p Paths) (net.Listener, error) {
	if err := CleanStale(ctx, p); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", p.Socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p.Socket, err)
	}
	if err := os.Chmod(p.Socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict %s to 0600: %w", p.Socket, err)
	}
	return ln, nil
}

// Ensure returns a client for the running daemon, starting one first (Spawn)
// when none answers. Concurrent callers are serialised by a lock file, so at
// most one daemon is started. env is the environment the daemon inherits
// (PM2 freezes the environment of the command that spawned its daemon).
func Ensure(ctx context.Context, p Paths, self string, env []string) (*api.Client, error) {
	if err := CheckHome(p); err != nil { // before anything is sent to the socket
		return nil, err
	}
	// The client that pinged is the one returned: its connection is kept for the next request,
	// and its LastPong tells the daemon's version (ls warns when it differs).
	c := api.NewClient(p.Socket)
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	_, err := c.Ping(pctx)
	cancel()
	if err == nil {
		return c, nil
	}
	c.Close()
	if !api.IsUnreachable(err) {
		return nil, noAnswer(ctx, p, PingTimeout, err)
	}
	if err := EnsureHome(p.Home); err != nil {
		return nil, err
	}
	unlock, err := lock(p.SpawnLock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := ping(ctx, p.Socket); err == nil { // started while we waited for the lock
		return api.NewClient(p.Socket), nil
	}
	if kpid := KeeperOf(p, 0); kpid > 0 {
		// A keeper runs: it is restarting its daemon (which takes over the control socket).
		// Starting another one would fail on the keeper's lock; wait for its daemon instead.
		if err := waitAnswer(ctx, p.Socket, kpid, spawnTimeout); err != nil {
			return nil, err
		}
		return api.NewClient(p.Socket), nil
	}
	if err := CleanStale(ctx, p); err != nil {
		return nil, err
	}
	if err := Spawn(ctx, p, self, env); err != nil {
		return nil, err
	}
	return api.NewClient(p.Socket), nil
}

// waitAnswer waits until a daemon answers on socket, while keeper kpid runs.
func waitAnswer(ctx context.Context, socket string, kpid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := ping(ctx, socket)
		if err == nil {
			return nil
		}
		if !Alive(kpid) {
			return fmt.Errorf("the corral keeper (pid %d) exited while its daemon was starting: %w", kpid, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the corral keeper (pid %d) runs, but its daemon did not answer within %s: %w", kpid, timeout, err)
		}
		select { // the daemon restarts within RestartMin (100ms) of a crash, later after crash loops
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// lock takes an exclusive flock on path and returns its release.
func lock(path string) (func(), error) {
	f, err := owner.OpenOwn(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// spawnTimeout bounds how long Spawn waits for the daemon to become ready.
const spawnTimeout = 20 * time.Second

// Spawn starts `self __keeper` (which starts `self daemon`), or `self daemon`
// when env sets $CORRAL_KEEPER=0, detached (new session, stdio on corral.log,
// working directory the corral home) and waits until it reports readiness by
// writing a byte on an inherited pipe, which it does once the daemon listens on
// the socket. If it exits first, Spawn returns the end of its log.
func Spawn(ctx context.Context, p Paths, self string, env []string) error {
	logf, err := owner.OpenOwn(p.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start daemon: readiness pipe: %w", err)
	}
	defer r.Close()

	var logStart int64
	if st, err := logf.Stat(); err == nil {
		logStart = st.Size()
	}
	sub := "__keeper"
	if keeperDisabled(env) {
		sub = "daemon"
	}
	cmd := exec.Command(self, sub)
	cmd.Dir = p.Home
	cmd.Env = append(withoutVars(env, EnvHome, EnvReadyFD), EnvHome+"="+p.Home, EnvReadyFD+"=3")
	cmd.Stdin = devnull
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// os/exec passes on every descriptor without FD_CLOEXEC, not only those given: mark what this
	// process inherited (the shell's, a CI runner's) close-on-exec, so the daemon does not get it.
	if err := fdhygiene.CloexecFrom(3); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	err = cmd.Start()
	w.Close() // only the daemon holds the write end now
	if err != nil {
		return fmt.Errorf("start daemon %s: %w", self, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(spawnTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	budget := time.Until(deadline).Round(time.Millisecond)
	_ = r.SetReadDeadline(deadline)
	stopOnCancel := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	defer stopOnCancel()
	buf := make([]byte, 1)
	n, rerr := r.Read(buf)
	if n == 1 {
		return nil // the daemon listens; it lives on after we exit
	}
	if rerr == io.EOF { // the daemon closed the pipe without a word: it died
		werr := <-exited
		return fmt.Errorf("the corral daemon failed to start (%v): %s", werr, logTail(p.LogFile, logStart))
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("the corral daemon did not become ready within %s (see %s): %w", budget, p.LogFile, rerr)
}

// keeperDisabled reports whether env sets $CORRAL_KEEPER=0 (or false, no, off).
func keeperDisabled(env []string) bool {
	v := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, EnvKeeper+"=") {
			v = strings.ToLower(kv[len(EnvKeeper)+1:])
		}
	}
	return v == "0" || v == "false" || v == "no" || v == "off"
}

// TakeReadyFD returns the readiness descriptor a daemon started by Spawn
// inherited (-1 when there is none), marks it close-on-exec so that processes
// the daemon starts never hold it, and unsets $CORRAL_READY_FD so that they
// do not inherit the variable either. Call it first thing in the daemon.
func TakeReadyFD() int {
	v, ok := os.LookupEnv(EnvReadyFD)
	if !ok {
		return -1
	}
	os.Unsetenv(EnvReadyFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1
	}
	unix.CloseOnExec(fd)
	return fd
}

// SignalReady tells the process that spawned this daemon that it is ready,
// by writing a byte to fd (from TakeReadyFD) and closing it. It does nothing
// when fd is negative.
func SignalReady(fd int) error {
	if fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "ready-pipe")
	defer f.Close()
	if _, err := f.Write([]byte{'1'}); err != nil {
		return fmt.Errorf("signal readiness: %w", err)
	}
	return nil
}

// WaitExit waits until the process pid has exited (or ctx is done), using a
// pidfd so no polling is involved.
func WaitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wait for pid %d: pidfd_open: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		timeout := -1
		if d, ok := ctx.Deadline(); ok {
			timeout = int(time.Until(d).Milliseconds())
			if timeout <= 0 {
				return fmt.Errorf("wait for pid %d to exit: %w", pid, context.DeadlineExceeded)
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for pid %d to exit: %w", pid, ctx.Err())
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for pid %d: poll: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
	}
}

// Kill stops the daemon whose pid is given and its keeper: SIGTERM to the
// daemon, which stops its apps and exits 0, upon which the keeper exits too;
// after grace the keeper and then the daemon get SIGKILL (the keeper first, or
// it would start another daemon). A keeper left without a daemon gets SIGTERM.
// Then it removes the socket and pid files.
func Kill(ctx context.Context, p Paths, pid int, grace time.Duration) error {
	kpid := KeeperOf(p, pid)
	if pid > 0 && Alive(pid) {
		if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal daemon %d: %w", pid, err)
		}
		// A daemon stopped by SIGSTOP would keep the SIGTERM pending: continue it, so that it
		// stops its apps as usual instead of waiting for the SIGKILL.
		_ = unix.Kill(pid, unix.SIGCONT)
		wctx, cancel := context.WithTimeout(ctx, grace)
		err := WaitExit(wctx, pid)
		cancel()
		if err != nil {
			if kpid > 0 {
				_ = unix.Kill(kpid, unix.SIGKILL)
			}
			_ = unix.Kill(pid, unix.SIGKILL)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := WaitExit(wctx, pid); err != nil {
				return err
			}
		}
	}
	if kpid > 0 && Alive(kpid) {
		// Its daemon shut down (exit 0): the keeper follows at once. One left without a daemon
		// (waiting to restart a crashed one) is told to stop.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := WaitExit(wctx, kpid)
		cancel()
		if err != nil {
			_ = unix.Kill(kpid, unix.SIGTERM)
			_ = unix.Kill(kpid, unix.SIGCONT)
			wctx, cancel := context.WithTimeout(ctx, grace)
			err = WaitExit(wctx, kpid)
			cancel()
			if err != nil {
				_ = unix.Kill(kpid, unix.SIGKILL)
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := WaitExit(wctx, kpid); err != nil {
					return err
				}
			}
		}
	}
	for _, f := range []string{p.Socket, p.PidFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	return nil
}

// withoutVars returns env without the named variables.
func withoutVars(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

var keeperLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(` keeper=[0-9]+( |$)`) }) // compiled on first use, not at every command's start

// logTail returns the daemon log written since offset (at most the last
// few lines), for error messages.
func logTail(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return "see " + path
	}
	lines := strings.Split(strings.TrimSpace(string(data[offset:])), "\n")
	// The keeper's own lines (keeper=<pid>) say that the daemon failed; the daemon's say why.
	var own []string
	for _, l := range lines {
		if !keeperLine().MatchString(l) {
			own = append(own, l)
		}
	}
	if len(own) > 0 {
		lines = own
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	s := strings.TrimSpace(strings.Join(lines, " | "))
	if s == "" {
		return "no output; see " + path
	}
	return s
}
