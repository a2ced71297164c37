// Package fastls answers `corral ls` and `corral jlist` (and ls's aliases list, l, ps, status),
// given alone, from a package initialiser, before the rest of the corral binary is initialised:
// cmd/corral imports it for its side effect (issue 13).
//
// Run the usual way, these commands pay for the start-up of the whole binary — the
// initialisers of every package linked in (the JS engine and the pprof code it links, YAML,
// cobra, the TUI libraries, x/text), then net/http's client — several milliseconds of CPU for an
// answer the daemon has ready. Go initialises packages in import-path order, each as soon as its
// imports are initialised (the Go spec, since Go 1.21), so this package, which imports only os,
// path, strconv, syscall, time and internal/version, runs before all of those (as
// internal/activation/early does for the __activate shim).
//
// The init asks the running daemon for the command's whole output over the control socket, with
// raw system calls and one HTTP/1.1 request (POST /v1/lstext, which the daemon renders with
// internal/lstable exactly as the CLI does, out-of-date warning included; POST /v1/jlist), writes
// it to standard output and exits 0. It accepts a subset of what the ordinary path accepts, and
// otherwise returns without having written anything, so the binary starts as usual and the
// command runs (and starts the daemon, reports errors...) exactly as it always has:
//
//   - the command line is exactly `corral <cmd>`, argv[0] is not corral-runtime, and
//     CORRAL_NO_FASTPATH is unset or empty (it forces the ordinary path);
//   - the home is resolved as internal/cli does (CORRAL_HOME, PM2_HOME, $HOME/.corral; relative
//     to the working directory; cleaned); HOME must be set when it is needed;
//   - the home is a real directory (not a symbolic link) owned by the effective uid, and each file
//     daemonproc.CheckHome checks is absent or the user's and not a link; the socket is a socket;
//   - the process listening on the socket runs as the effective uid (SO_PEERCRED; the ordinary
//     path also trusts root's);
//   - the daemon answers within ioTimeout per step with exactly `HTTP/1.1 200 OK`, the expected
//     Content-Type, one Content-Length, no Transfer-Encoding, and exactly that many bytes.
//
// Both requests only read, so the ordinary path asking again after a fallback is harmless.
package fastls

import (
	"os"
	"path"
	"strconv"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/version"
)

// These mirror internal/cli, internal/daemonproc and internal/api, which this package cannot
// import (their imports' initialisers would run first); a test checks that they agree.
const (
	envHome     = "CORRAL_HOME"    // daemonproc.EnvHome
	envPM2Home  = "PM2_HOME"       // daemonproc.EnvPM2Home
	runtimeName = "corral-runtime" // cli.RuntimeName
	fastHeader  = "Corral-Fast"    // api.FastHeader
	lsMethod    = "lstext"         // api.MethodListText
	jlistMethod = "jlist"          // api.MethodJList
	lsType      = "text/plain; charset=utf-8"
	jlistType   = "application/json"
)

// EnvOff, set to anything but "", makes `ls` and `jlist` take the ordinary path.
const EnvOff = "CORRAL_NO_FASTPATH"

// homeFiles are the files of the home daemonproc.CheckHome checks (daemonproc.PathsFor's Socket,
// PidFile, SpawnLock, LogFile, KeeperPidFile, and keeper.sock); socketFile is the control socket.
var homeFiles = [...]string{"corral.sock", "corral.pid", "corral.lock", "corral.log", "keeper.pid", "keeper.sock"}

const socketFile = "corral.sock"

// ioTimeout bounds each step with the daemon (connecting, sending, each read) and, four times
// over, the whole exchange. A daemon that does not answer in time (stopped, swamped) costs the
// command this much before the ordinary path asks again and reports it.
const ioTimeout = time.Second

// maxResponse bounds the answer read (far above what 10,000 instances' jlist takes).
const maxResponse = 256 << 20

// maxHead bounds the status line and headers.
const maxHead = 8 << 10

func init() {
	if len(os.Args) != 2 || path.Base(os.Args[0]) == runtimeName {
		return
	}
	var method, wantType string
	switch os.Args[1] {
	case "ls", "list", "l", "ps", "status":
		method, wantType = lsMethod, lsType
	case "jlist":
		method, wantType = jlistMethod, jlistType
	default:
		return
	}
	environ := syscall.Environ()
	if v, _ := getenv(environ, EnvOff); v != "" {
		return
	}
	body := "{}"
	if method == lsMethod {
		if !plainString(version.Version) {
			return
		}
		body = `{"version":"` + version.Version + `"}`
	}
	wd, err := os.Getwd() // as internal/cli, which fails without one
	if err != nil {
		return
	}
	home, ok := homeDir(environ, wd)
	if !ok {
		fellBack(environ, "no home")
		return
	}
	if !ownHome(home) {
		fellBack(environ, "home "+home+" not plainly the user's")
		return
	}
	out, why := ask(path.Join(home, socketFile), method, body, wantType)
	if why != "" {
		fellBack(environ, why)
		return
	}
	if _, err := os.Stdout.Write(out); err != nil && method == jlistMethod {
		// As the ordinary jlist reports it (ls, which writes through a bufio.Writer, ignores it).
		// A closed pipe raised SIGPIPE already, as it does on the ordinary path.
		os.Stderr.WriteString("[corral] " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// EnvDebug, set to anything but "", makes the fast path say on standard error why it fell back.
const EnvDebug = "CORRAL_DEBUG_FASTPATH"

func fellBack(environ []string, why string) {
	if v, _ := getenv(environ, EnvDebug); v != "" {
		os.Stderr.WriteString("[corral] fast path: " + why + "\n")
	}
}

// getenv returns the value of key as internal/cli's app.getenv does: the last entry wins.
func getenv(environ []string, key string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		kv := environ[i]
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			return kv[len(key)+1:], true
		}
	}
	return "", false
}

// homeDir resolves the corral home as internal/cli's app.paths does.
func homeDir(environ []string, wd string) (string, bool) {
	home, _ := getenv(environ, envHome)
	if home == "" {
		home, _ = getenv(environ, envPM2Home)
	}
	if home == "" {
		u, _ := getenv(environ, "HOME")
		if u == "" {
			return "", false // the ordinary path asks os.UserHomeDir, or fails
		}
		home = path.Join(u, ".corral")
	}
	if home[0] != '/' {
		home = path.Join(wd, home)
	}
	return path.Clean(home), true
}

// plainString reports whether s can go into a JSON string as is.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ownHome reports whether home is a directory (not a link) of the effective user whose files
// daemonproc.CheckHome checks are absent or the user's and not links, with a socket to talk to.
func ownHome(home string) bool {
	euid := uint32(os.Geteuid())
	var st syscall.Stat_t
	if err := syscall.Lstat(home, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != euid {
		return false
	}
	for _, f := range homeFiles {
		err := syscall.Lstat(path.Join(home, f), &st)
		if err == syscall.ENOENT && f != socketFile {
			continue
		}
		if err != nil || st.Mode&syscall.S_IFMT == syscall.S_IFLNK || st.Uid != euid {
			return false
		}
		if f == socketFile && st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			return false
		}
	}
	return true
}

// ask sends the request to the daemon on socket and returns the body of its answer, or why not.
func ask(socket, method, body, wantType string) ([]byte, string) {
	sa := &syscall.SockaddrUnix{Name: socket}
	if len(socket) >= 108 { // sun_path, with its terminating NUL
		return nil, "socket path too long"
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "socket: " + err.Error()
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(int64(ioTimeout))
	if syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv) != nil ||
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv) != nil {
		return nil, "socket timeouts"
	}
	// Bounded by SO_SNDTIMEO. Not retried: a connect interrupted by a signal goes on in the
	// background, and connecting again fails (the ordinary path then asks).
	if err := syscall.Connect(fd, sa); err != nil {
		return nil, "connect: " + err.Error()
	}
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil || cred.Uid != uint32(os.Geteuid()) {
		return nil, "peer is not the user"
	}
	req := "POST /v1/" + method + " HTTP/1.1\r\nHost: corral\r\nUser-Agent: corral\r\nContent-Type: application/json\r\n" +
		fastHeader + ": 1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	if !writeAll(fd, []byte(req)) {
		return nil, "send failed"
	}
	deadline := time.Now().Add(4 * ioTimeout)
	out, ok := readResponse(func(p []byte) (int, error) {
		if time.Now().After(deadline) {
			return 0, syscall.ETIMEDOUT
		}
		var n int
		err := retry(func() (err error) { n, err = syscall.Read(fd, p); return err })
		return n, err
	}, wantType)
	if !ok {
		return nil, "no plain 200 answer"
	}
	return out, ""
}

// retry runs f again while it is interrupted by a signal.
func retry(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		var n int
		if err := retry(func() (err error) { n, err = syscall.Write(fd, b); return err }); err != nil || n <= 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// readResponse reads an HTTP/1.1 response with read (which returns 0, nil at the end) and returns
// its body when it is a complete 200 of type wantType with a Content-Length (parse).
func readResponse(read func([]byte) (int, error), wantType string) ([]byte, bool) {
	buf := make([]byte, 0, 64<<10)
	for {
		if len(buf) == cap(buf) { // grown to the whole answer once its length is known, else doubled
			size := want(buf)
			if size <= len(buf) {
				size = 2 * cap(buf)
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		n, err := read(buf[len(buf):cap(buf)])
		if err != nil || n < 0 || n > cap(buf)-len(buf) {
			return nil, false
		}
		buf = buf[:len(buf)+n]
		body, more, ok := parse(buf, wantType)
		if !ok {
			return nil, false
		}
		if !more {
			return body, true
		}
		if n == 0 { // the end, before the whole answer
			return nil, false
		}
	}
}

// want returns the size of the whole response that starts with b when its head is complete and
// valid (Content-Length known), else 0.
func want(b []byte) int {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' && b[i+2] == '\r' && b[i+3] == '\n' {
			if _, length, ok := parseHead(b[:i]); ok {
				return i + 4 + length
			}
			return 0
		}
	}
	return 0
}

// parse parses the HTTP/1.1 response in b: more when b is a valid beginning of one, else ok when
// it is exactly a whole `200 OK` of Content-Type wantType with one Content-Length and no
// Transfer-Encoding, with its body.
func parse(b []byte, wantType string) (body []byte, more, ok bool) {
	end := -1
	for i := 0; i+3 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' && b[i+2] == '\r' && b[i+3] == '\n' {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, len(b) <= maxHead, len(b) <= maxHead
	}
	if end > maxHead {
		return nil, false, false
	}
	typ, length, ok := parseHead(b[:end])
	if !ok || typ != wantType {
		return nil, false, false
	}
	body = b[end+4:]
	switch {
	case len(body) < length:
		return nil, true, true
	case len(body) > length:
		return nil, false, false
	}
	return body, false, true
}

// parseHead parses the status line and headers of a response (without the blank line): ok when
// the status is exactly `HTTP/1.1 200 OK`, with one Content-Length, at most one Content-Type and
// no Transfer-Encoding or Content-Encoding.
func parseHead(b []byte) (typ string, length int, ok bool) {
	line, rest, _ := cut(string(b), "\r\n")
	if line != "HTTP/1.1 200 OK" {
		return "", 0, false
	}
	length = -1
	for rest != "" {
		line, rest, _ = cut(rest, "\r\n")
		name, value, found := cut(line, ":")
		if !found || !token(name) {
			return "", 0, false
		}
		value = trimSpace(value)
		switch lower(name) {
		case "content-length":
			if length >= 0 || value == "" || len(value) > 10 || value[0] == '+' || value[0] == '-' {
				return "", 0, false
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxResponse {
				return "", 0, false
			}
			length = n
		case "content-type":
			if typ != "" {
				return "", 0, false
			}
			typ = value
		case "transfer-encoding", "content-encoding":
			return "", 0, false
		}
	}
	return typ, length, length >= 0
}

// token reports whether s is a plausible header name: not empty, no space or control byte.
func token(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

func cut(s, sep string) (before, after string, found bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func trimSpace(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
