// Package early runs the socket-activation shim (`corral __activate <program> [args...]`, see
// internal/activation) from a package initialiser, before the rest of the corral binary is
// initialised: cmd/corral imports it for its side effect.
//
// The daemon starts the shim for every instance of a --listen app, at each (re)start. Run as an
// ordinary command, the shim pays the start-up of the whole binary — the initialisers of every
// package linked in (the JS engine, YAML, cobra, the TUI libraries), about 5 ms of CPU and 700
// page faults — only to set LISTEN_PID and exec. Go initialises packages in import-path order,
// each as soon as its imports are initialised (the Go spec, since Go 1.21), so this package, which
// imports nothing beyond os, path, strconv and syscall, runs before all of them.
//
// The init does exactly what activation.Exec does on success, with the same checks in the same
// order, and execs the program. Whenever a check fails, or the exec itself does, it restores
// what it changed and returns: the binary then starts as usual and activation.Exec, run by the
// `__activate` command, reports the error as it always has. So the fast path changes when the
// shim's work happens, never its outcome.
package early

import (
	"os"
	"path"
	"strconv"
	"syscall"
)

// These mirror internal/activation (which this package cannot import: it links net and
// x/sys/unix, whose initialisers would run first); a test checks that they agree.
const (
	shimCommand  = "__activate"       // activation.ShimCommand
	firstFD      = 3                  // activation.FirstFD
	envFDs       = "LISTEN_FDS"       // activation.EnvFDs
	envPID       = "LISTEN_PID"       // activation.EnvPID
	hiddenPrefix = "CORRAL_ACTIVATE_" // activation's hiddenPrefix
	runtimeName  = "corral-runtime"   // cli.RuntimeName: argv[0] that makes every command `runtime ...`
)

// nodeChannelEnv mirrors activation's nodeChannelEnv: the variables Wrap hides from the shim.
var nodeChannelEnv = [...]string{"NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_UNIQUE_ID"}

// Linux constants the syscall package does not export.
const (
	atFDCWD   = -0x64 // AT_FDCWD
	atEaccess = 0x200 // AT_EACCESS
	xOK       = 1     // X_OK
)

func init() {
	if len(os.Args) < 3 || os.Args[1] != shimCommand || path.Base(os.Args[0]) == runtimeName {
		return
	}
	tryExec(os.Args[2:])
}

// tryExec replaces the process with the program args[0], as activation.Exec does, and returns
// when that did not happen, with the descriptors' flags as they were.
func tryExec(args []string) {
	if args[0] == "" {
		return
	}
	nStr, ok := syscall.Getenv(envFDs)
	if !ok {
		return
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 {
		return
	}
	flags := make([]uintptr, n)
	for i := range flags {
		f, errno := fcntl(firstFD+i, syscall.F_GETFD, 0)
		if errno != 0 {
			return
		}
		flags[i] = f
	}
	prog, ok := lookPath(args[0])
	if !ok {
		return
	}
	env := execEnv(syscall.Environ(), syscall.Getpid())
	restore := func() {
		for i, f := range flags {
			fcntl(firstFD+i, syscall.F_SETFD, f)
		}
	}
	for i, f := range flags {
		if _, errno := fcntl(firstFD+i, syscall.F_SETFD, f&^syscall.FD_CLOEXEC); errno != 0 {
			restore()
			return
		}
	}
	syscall.Exec(prog, args, env)
	restore()
}

// execEnv is the program's environment, as activation.Exec builds it: the variables Wrap hid are
// restored, LISTEN_PID is dropped and set again to pid.
func execEnv(environ []string, pid int) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if rest, ok := cutPrefix(kv, hiddenPrefix); ok {
			for _, k := range nodeChannelEnv {
				if _, ok := cutPrefix(rest, k+"="); ok {
					kv = rest
				}
			}
		}
		if _, ok := cutPrefix(kv, envPID+"="); ok {
			continue
		}
		env = append(env, kv)
	}
	return append(env, envPID+"="+strconv.Itoa(pid))
}

// lookPath finds file as exec.LookPath does (taking a match in a relative PATH entry, which
// exec.LookPath reports with ErrDot and activation.Exec accepts).
func lookPath(file string) (string, bool) {
	switch file {
	case "", ".", "..":
		return "", false
	}
	if contains(file, '/') {
		return file, executable(file)
	}
	pathEnv, _ := syscall.Getenv("PATH")
	if pathEnv == "" {
		return "", false // filepath.SplitList("") is empty
	}
	for {
		dir, rest, more := cut(pathEnv, ':')
		if dir == "" {
			dir = "." // Unix shell semantics
		}
		if p := path.Join(dir, file); executable(p) {
			return p, true
		}
		if !more {
			return "", false
		}
		pathEnv = rest
	}
}

// executable is exec.LookPath's findExecutable: a file that is not a directory and that this
// process may execute (by the permission bits when faccessat2 is refused).
func executable(file string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return false
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return false
	}
	err := syscall.Faccessat(atFDCWD, file, xOK, atEaccess)
	if err == nil || (err != syscall.ENOSYS && err != syscall.EPERM) {
		return err == nil
	}
	return st.Mode&0o111 != 0
}

func fcntl(fd int, cmd int, arg uintptr) (uintptr, syscall.Errno) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), arg)
	return r, errno
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

func contains(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
