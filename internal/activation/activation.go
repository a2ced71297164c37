// Package activation implements both sides of systemd's socket-activation protocol: a process
// receives listening sockets as file descriptors 3, 4, ... with LISTEN_FDS (their count),
// LISTEN_PID (its own pid) and LISTEN_FDNAMES (colon-separated names) in its environment.
//
// The corral daemon binds an app's addresses once with Listen and hands the same sockets to every
// instance. Because LISTEN_PID must be the child's own pid, which the daemon cannot know before
// fork, the daemon starts `<corral binary> __activate <program> <args...>` (see Wrap); that shim
// (Exec) sets LISTEN_PID to its pid and replaces itself with the program, keeping the pid. Go
// programs pick the sockets up with Listeners; Node programs with server.listen({fd: 3}).
package activation

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FirstFD is the first descriptor passed, as in sd_listen_fds(3).
const FirstFD = 3

// ShimCommand is the argument that makes the corral binary run Exec on the rest of its arguments.
const ShimCommand = "__activate"

// Environment variables of the protocol.
const (
	EnvFDs     = "LISTEN_FDS"
	EnvPID     = "LISTEN_PID"
	EnvFDNames = "LISTEN_FDNAMES"
)

// maxNameLen is systemd's limit on a descriptor name (FDNAME_MAX).
const maxNameLen = 255

// Listen binds every address and returns one listening socket per address, in order. An address
// is "host:port" or ":port" (TCP), or "unix:/path" or a path starting with "/", "./" or "../" (a
// Unix stream socket; a stale socket file nobody listens on is replaced). Each file is named by
// FDName(addr), ready for LISTEN_FDNAMES.
//
// The descriptors are non-blocking and close-on-exec; pass them as exec.Cmd.ExtraFiles, which
// keeps them non-blocking (unlike net.TCPListener.File, whose Fd makes the socket blocking for
// every process sharing it). The caller closes the files; for Unix sockets it also removes the
// socket file when it is done with it. On error no socket is left open.
func Listen(addrs []string) ([]*os.File, error) {
	files := make([]*os.File, 0, len(addrs))
	for i, addr := range addrs {
		f, err := listenOne(addr)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("listen[%d] %q: %w", i, addr, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// parseAddr splits an address into a network ("tcp" or "unix") and the address for net.Listen.
func parseAddr(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		address = strings.TrimPrefix(addr, "unix:")
		if address == "" {
			return "", "", errors.New("empty socket path")
		}
		return "unix", address, nil
	case strings.HasPrefix(addr, "/"), strings.HasPrefix(addr, "./"), strings.HasPrefix(addr, "../"):
		return "unix", addr, nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return "", "", errors.New(`want "host:port", ":port", "unix:/path" or "/path"`)
	}
	return "tcp", addr, nil
}

func listenOne(addr string) (*os.File, error) {
	network, address, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	var l net.Listener
	if network == "unix" {
		l, err = listenUnix(address)
	} else {
		l, err = net.Listen(network, address)
	}
	if err != nil {
		return nil, err
	}
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the socket file belongs to the returned descriptor now
	}
	defer l.Close()
	return dupListener(l, FDName(addr))
}

// listenUnix binds a Unix stream socket at path, replacing a socket file nobody listens on.
func listenUnix(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || strings.HasPrefix(path, "@") {
		return l, err
	}
	st, serr := os.Lstat(path)
	if serr != nil || st.Mode().Type() != fs.ModeSocket {
		return nil, err // something that is not a socket: never delete it
	}
	c, derr := net.Dial("unix", path)
	if derr == nil {
		c.Close()
		return nil, fmt.Errorf("%w (another process listens on %s)", err, path)
	}
	if !errors.Is(derr, syscall.ECONNREFUSED) {
		return nil, err
	}
	if rerr := os.Remove(path); rerr != nil {
		return nil, fmt.Errorf("remove stale socket: %w", rerr)
	}
	return net.Listen("unix", path)
}

// dupListener duplicates l's descriptor (close-on-exec, sharing its non-blocking file
// description) without going through File, which would switch the socket to blocking mode.
func dupListener(l net.Listener, name string) (*os.File, error) {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener %T has no descriptor", l)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup listening socket: %w", dupErr)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// FDName turns an address into a valid LISTEN_FDNAMES entry: the "unix:" prefix is dropped, ':'
// and characters other than printable ASCII become '_', and the result is cut to 255 bytes.
func FDName(addr string) string {
	addr = strings.TrimPrefix(addr, "unix:")
	b := []byte(addr)
	for i, c := range b {
		if c == ':' || c < 0x21 || c > 0x7e {
			b[i] = '_'
		}
	}
	if len(b) > maxNameLen {
		b = b[:maxNameLen]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// Env returns the LISTEN_FDS and LISTEN_FDNAMES assignments for n descriptors. LISTEN_PID is not
// included: Exec sets it in the child. names are cleaned with FDName; missing names are "unknown"
// and extra ones are dropped. With no names, LISTEN_FDNAMES is omitted.
func Env(n int, names []string) []string {
	if n < 0 {
		n = 0
	}
	env := []string{EnvFDs + "=" + strconv.Itoa(n)}
	if len(names) == 0 || n == 0 {
		return env
	}
	clean := make([]string, n)
	for i := range clean {
		clean[i] = "unknown"
		if i < len(names) {
			clean[i] = FDName(names[i])
		}
	}
	return append(env, EnvFDNames+"="+strings.Join(clean, ":"))
}

// Wrap turns cmd, not yet started, into a run of the activation shim that hands files to the
// program: cmd's program becomes the argument of `<corralBinary> __activate`, files become fds
// 3, 4, ... (cmd's own ExtraFiles move up behind them) and LISTEN_FDS / LISTEN_FDNAMES (from the
// files' names) replace any LISTEN_* variables in cmd.Env (os.Environ() when cmd.Env is nil).
func Wrap(cmd *exec.Cmd, corralBinary string, files []*os.File) {
	args := []string{corralBinary, ShimCommand, cmd.Path}
	if len(cmd.Args) > 1 {
		args = append(args, cmd.Args[1:]...)
	}
	cmd.Path = corralBinary
	cmd.Args = args
	cmd.Err = nil // the program is looked up by the shim, in the child's PATH
	cmd.ExtraFiles = append(slices.Clone(files), cmd.ExtraFiles...)

	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, EnvFDs+"=") || strings.HasPrefix(kv, EnvPID+"=") || strings.HasPrefix(kv, EnvFDNames+"=")
	})
	// The shim is the corral binary, which links the cluster package: its init would take a Node IPC
	// channel meant for the program (NODE_CHANNEL_FD) as its own and unset the variables. Hide them
	// from the shim under other names; Exec puts them back for the program.
	for i, kv := range env {
		for _, k := range nodeChannelEnv {
			if strings.HasPrefix(kv, k+"=") {
				env[i] = hiddenPrefix + kv
			}
		}
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name()
	}
	cmd.Env = append(env, Env(len(files), names)...)
}

// nodeChannelEnv are the variables of a Node IPC channel that Wrap hides from the shim.
var nodeChannelEnv = []string{"NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_UNIQUE_ID"}

// hiddenPrefix renames a variable for the way through the shim.
const hiddenPrefix = "CORRAL_ACTIVATE_"

// unhide restores the variables Wrap hid.
func unhide(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		out[i] = kv
		if rest, ok := strings.CutPrefix(kv, hiddenPrefix); ok {
			for _, k := range nodeChannelEnv {
				if strings.HasPrefix(rest, k+"=") {
					out[i] = rest
				}
			}
		}
	}
	return out
}

// Exec is the activation shim: args is the program and its arguments. It checks that the
// LISTEN_FDS descriptors are open, makes them survive exec, sets LISTEN_PID to this process's pid
// and replaces the process with the program (looked up in PATH like a shell does). It returns only
// on error.
func Exec(args []string) error {
	if len(args) == 0 || args[0] == "" {
		return errors.New("activate: no program given")
	}
	nStr, ok := os.LookupEnv(EnvFDs)
	if !ok {
		return fmt.Errorf("activate %s: %s is not set", args[0], EnvFDs)
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 {
		return fmt.Errorf("activate %s: bad %s=%q", args[0], EnvFDs, nStr)
	}
	for fd := FirstFD; fd < FirstFD+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("activate %s: %s=%d but fd %d is not open: %w", args[0], EnvFDs, n, fd, err)
		}
	}
	path, err := exec.LookPath(args[0])
	if err != nil && !errors.Is(err, exec.ErrDot) {
		return fmt.Errorf("activate: %w", err)
	}
	env := slices.DeleteFunc(unhide(os.Environ()), func(kv string) bool { return strings.HasPrefix(kv, EnvPID+"=") })
	env = append(env, EnvPID+"="+strconv.Itoa(os.Getpid()))
	for fd := FirstFD; fd < FirstFD+n; fd++ {
		if err := setCloexec(fd, false); err != nil {
			return fmt.Errorf("activate %s: fd %d: %w", args[0], fd, err)
		}
	}
	err = syscall.Exec(path, args, env)
	for fd := FirstFD; fd < FirstFD+n; fd++ {
		setCloexec(fd, true) // do not leak them into later children of this process
	}
	return fmt.Errorf("activate: exec %s: %w", path, err)
}

// setCloexec sets or clears FD_CLOEXEC on fd.
func setCloexec(fd int, on bool) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.FD_CLOEXEC
	} else {
		flags &^= unix.FD_CLOEXEC
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags)
	return err
}

// Files returns the descriptors passed to this process by socket activation, named from
// LISTEN_FDNAMES (or "LISTEN_FD_<n>"), and marks them close-on-exec. It returns nil when
// LISTEN_PID is not this process's pid or LISTEN_FDS is missing or invalid; descriptors that are
// not open are left out. With unsetEnv the three variables are removed from the environment, so
// that children do not see them. Call it once: a second call would wrap the same descriptors again.
func Files(unsetEnv bool) []*os.File {
	files, _ := passedFiles(unsetEnv)
	return files
}

// passedFiles is Files with an error for each problem.
func passedFiles(unsetEnv bool) ([]*os.File, error) {
	pidStr, fdsStr, namesStr := os.Getenv(EnvPID), os.Getenv(EnvFDs), os.Getenv(EnvFDNames)
	if unsetEnv {
		os.Unsetenv(EnvPID)
		os.Unsetenv(EnvFDs)
		os.Unsetenv(EnvFDNames)
	}
	if pidStr == "" && fdsStr == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid != os.Getpid() {
		return nil, fmt.Errorf("activation: %s=%q is not this process (pid %d)", EnvPID, pidStr, os.Getpid())
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("activation: bad %s=%q", EnvFDs, fdsStr)
	}
	var names []string
	if namesStr != "" {
		names = strings.Split(namesStr, ":")
	}
	var files []*os.File
	var errs []error
	for i := range n {
		fd := FirstFD + i
		if err := setCloexec(fd, true); err != nil {
			errs = append(errs, fmt.Errorf("activation: %s=%d but fd %d is not open: %w", EnvFDs, n, fd, err))
			continue
		}
		name := "LISTEN_FD_" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files, errors.Join(errs...)
}

// Listeners returns a net.Listener for every descriptor passed to this process by socket
// activation, in order, and removes the LISTEN_* variables from the environment. It returns no
// listeners and no error when the process was not socket-activated, and an error naming the
// descriptor when one is missing or is not a listening stream socket (no listener is left open
// then).
func Listeners() ([]net.Listener, error) {
	named, err := namedListeners()
	if err != nil {
		return nil, err
	}
	if len(named) == 0 {
		return nil, nil
	}
	ls := make([]net.Listener, len(named))
	for i, nl := range named {
		ls[i] = nl.l
	}
	return ls, nil
}

// ListenersWithNames is Listeners grouped by LISTEN_FDNAMES name.
func ListenersWithNames() (map[string][]net.Listener, error) {
	named, err := namedListeners()
	if err != nil {
		return nil, err
	}
	m := make(map[string][]net.Listener, len(named))
	for _, nl := range named {
		m[nl.name] = append(m[nl.name], nl.l)
	}
	return m, nil
}

type namedListener struct {
	name string
	l    net.Listener
}

func namedListeners() ([]namedListener, error) {
	files, err := passedFiles(true)
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	var out []namedListener
	for i, f := range files {
		l, err := net.FileListener(f)
		f.Close() // FileListener made its own copy
		if err != nil {
			for _, nl := range out {
				nl.l.Close()
			}
			for _, f := range files[i+1:] {
				f.Close()
			}
			return nil, fmt.Errorf("activation: fd %d (%s): not a listening socket: %w", FirstFD+i, f.Name(), err)
		}
		out = append(out, namedListener{name: f.Name(), l: l})
	}
	return out, nil
}
