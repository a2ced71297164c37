// Package drain ships corral's connection drain for Node HTTP servers (drain.js, embedded) and
// the daemon's side of it: where the script is written, how an instance's environment loads it,
// and what a drained instance reports.
//
// # How it is loaded
//
// Install writes drain.js once into a private directory of the state dir; Env gives an instance
// NODE_OPTIONS="--require <that file> <the user's NODE_OPTIONS>" and CORRAL_DRAIN (the timeouts and
// the user's NODE_OPTIONS). The script removes both at once, giving NODE_OPTIONS back as the user
// set it, so the app's own child processes do not load it and the app sees its environment
// unchanged. NODE_OPTIONS rather than interpreter arguments: process.execArgv (which
// child_process.fork passes on) stays the app's own.
//
// # What it does
//
// See the header of drain.js and docs/architecture.md ("How a drain flows"). In short: nothing
// until the process is asked to stop (SIGINT, SIGTERM, the 'shutdown' message or the cluster
// primary's disconnect); then every HTTP server stops accepting, answers further requests with
// Connection: close, lets requests in flight finish and closes idle keep-alive connections after
// a grace; the stop request is then delivered to the app as if there had been no drain. It reports
// {"corral_drain":{"drained":N,"cut":M,"ms":T}} on the IPC channel (ParseReport).
package drain

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed drain.js
var script []byte

// Script returns drain.js.
func Script() []byte { return bytes.Clone(script) }

// Dir is the directory under the state dir that holds the script.
const Dir = "drain"

// Install writes drain.js into dir (created 0700 if missing) as drain-<hash>.js, mode 0600, and
// returns its path. dir and the file must not be symbolic links and dir must be owned by this
// user and not writable by others: an app loads whatever the file holds. An existing file with
// the same content is kept.
func Install(dir string) (string, error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("drain: %w", err)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("drain: open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return "", fmt.Errorf("drain: stat %s: %w", dir, err)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return "", fmt.Errorf("drain: %s must be owned by uid %d and writable by it alone (uid %d, mode %o)", dir, os.Geteuid(), st.Uid, st.Mode&0o777)
	}
	sum := sha256.Sum256(script)
	name := "drain-" + hex.EncodeToString(sum[:6]) + ".js"
	path := filepath.Join(dir, name)
	if fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		f := os.NewFile(uintptr(fd), path)
		have := make([]byte, len(script)+1)
		n, _ := f.Read(have)
		var fst unix.Stat_t
		ok := unix.Fstat(fd, &fst) == nil && fst.Mode&0o077 == 0 && int(fst.Uid) == os.Geteuid()
		f.Close()
		if ok && bytes.Equal(have[:n], script) {
			return path, nil
		}
	}
	// Write a temporary file and rename it over the name: a reader never sees half a script.
	tmp := fmt.Sprintf(".%s.%d.tmp", name, os.Getpid())
	_ = unix.Unlinkat(dfd, tmp, 0)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", fmt.Errorf("drain: create %s: %w", filepath.Join(dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(script)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = unix.Renameat(dfd, tmp, dfd, name)
	}
	if werr != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return "", fmt.Errorf("drain: write %s: %w", path, werr)
	}
	return path, nil
}

// Config is what drain.js is told.
type Config struct {
	// Timeout bounds the drain: connections still open then are closed ("cut").
	Timeout time.Duration
	// Idle is how long an idle keep-alive connection is kept open once the drain began, for a
	// request already on its way (answered with Connection: close). Negative: the script's default,
	// min(1s, Timeout/2).
	Idle time.Duration
}

// DefaultTimeout is the drain timeout for an app's kill_timeout when drain_timeout is not set:
// three quarters of it, so that the drain reports before the SIGKILL.
func DefaultTimeout(killTimeout time.Duration) time.Duration { return killTimeout * 3 / 4 }

// Env returns the variables that make a Node process started with env load the script at path:
// NODE_OPTIONS (the --require first, then the user's) and CORRAL_DRAIN.
func Env(path string, env map[string]string, c Config) map[string]string {
	conf := map[string]any{"t": c.Timeout.Milliseconds()}
	if c.Idle >= 0 {
		conf["i"] = c.Idle.Milliseconds()
	}
	opts := "--require " + quote(path)
	if orig, ok := env["NODE_OPTIONS"]; ok {
		conf["o"] = orig
		if strings.TrimSpace(orig) != "" {
			opts += " " + orig
		}
	}
	b, _ := json.Marshal(conf) // a map of numbers and a string
	return map[string]string{"NODE_OPTIONS": opts, "CORRAL_DRAIN": string(b)}
}

// quote quotes s for NODE_OPTIONS, which splits on spaces and takes "..." with \ escapes.
func quote(s string) string {
	if !strings.ContainsAny(s, " \t\"\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Report is what a drained instance says on its IPC channel.
type Report struct {
	Drained int64 `json:"drained"` // connections that ended gracefully during the drain
	Cut     int64 `json:"cut"`     // connections still open at the timeout, closed
	Ms      int64 `json:"ms"`      // how long the drain took
}

// ParseReport recognises a drain report among an app's IPC messages.
func ParseReport(raw []byte) (Report, bool) {
	if !bytes.Contains(raw, []byte(`"corral_drain"`)) {
		return Report{}, false
	}
	var m struct {
		R *Report `json:"corral_drain"`
	}
	if json.Unmarshal(raw, &m) != nil || m.R == nil {
		return Report{}, false
	}
	return *m.R, true
}
