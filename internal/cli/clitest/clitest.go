// Package clitest holds testscript helpers shared by the corral CLI tests:
// a private CORRAL_HOME per script, cleanup of every daemon and app a script
// started, and commands that check JSON output, file modes and processes.
package clitest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/rogpeppe/go-internal/testscript"
)

// Setup gives each script its own CORRAL_HOME ($WORK/.corral, short enough
// for a Unix socket path) and, when the script ends (pass or fail), kills the
// daemon it started and every app pid recorded by `jpids`.
func Setup(env *testscript.Env) error {
	home := filepath.Join(env.WorkDir, ".corral")
	if len(home)+len("/corral.sock") >= 104 {
		return fmt.Errorf("work dir %s too long for a Unix socket path", env.WorkDir)
	}
	env.Setenv("CORRAL_HOME", home)
	env.Setenv("HOME", env.WorkDir)
	env.Setenv("GORACE", "atexit_sleep_ms=0") // race-built binaries otherwise sleep 1 s at exit
	env.Defer(func() {
		// Stop the daemon gracefully (it stops its apps, and its keeper follows), then make
		// sure: SIGKILL the keeper (first: it would start another daemon), the daemon and every
		// app pid the daemon or the script recorded.
		p := daemonproc.PathsFor(home)
		if pid, err := daemonproc.ReadPid(p.PidFile); err == nil && daemonproc.Alive(pid) {
			kpid := daemonproc.KeeperOf(p, pid)
			syscall.Kill(pid, syscall.SIGTERM)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			daemonproc.WaitExit(ctx, pid)
			cancel()
			killWait(kpid)
			killWait(pid)
		}
		if kpid := daemonproc.KeeperOf(p, 0); kpid > 0 {
			killWait(kpid)
		}
		if pid, err := daemonproc.ReadPid(p.PidFile); err == nil {
			killWait(pid) // one the keeper started meanwhile
		}
		var pids []string
		files, _ := filepath.Glob(filepath.Join(home, "pids", "*.pid"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			pids = append(pids, strings.Fields(string(data))...)
		}
		data, _ := os.ReadFile(filepath.Join(env.WorkDir, ".apppids"))
		pids = append(pids, strings.Fields(string(data))...)
		for _, f := range pids {
			if pid, err := strconv.Atoi(f); err == nil {
				killWait(pid)
			}
		}
	})
	return nil
}

func killWait(pid int) {
	if pid <= 1 || !daemonproc.Alive(pid) {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	daemonproc.WaitExit(ctx, pid)
}

// Cmds returns the custom script commands:
//
//	json PATH WANT     the last stdout is JSON; the value at PATH (dot-separated keys
//	                   and indexes, "." for the root; a trailing ".len" gives a length)
//	                   formats as WANT
//	perm FILE MODE     FILE's permission bits are MODE (octal)
//	jpids FILE         write the non-zero pids of the last stdout (jlist) to FILE and
//	                   remember them for cleanup
//	alive FILE         every pid listed in FILE runs (negated: none runs); ! alive
//	                   waits up to 10 s for them to go
//	kill9 PIDFILE      SIGKILL the pid in PIDFILE and wait for it to exit
//	pidof VAR FILE     set $VAR to the first pid in FILE
//	waitfor FILE RE    wait (up to 10 s) until FILE matches the regular expression RE
//	waitout RE CMD...  run CMD again (up to 10 s) until its stdout matches RE
func Cmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"json":    cmdJSON,
		"perm":    cmdPerm,
		"jpids":   cmdJpids,
		"alive":   cmdAlive,
		"kill9":   cmdKill9,
		"pidof":   cmdPidof,
		"waitfor": cmdWaitFor,
		"waitout": cmdWaitOut,
	}
}

func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: json PATH WANT")
	}
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v); err != nil {
		ts.Fatalf("stdout is not JSON: %v", err)
	}
	got, err := lookup(v, args[0])
	if err != nil {
		if neg {
			return
		}
		ts.Fatalf("json %s: %v", args[0], err)
	}
	s := format(got)
	if (s == args[1]) == neg {
		ts.Fatalf("json %s = %s, want %s%s", args[0], s, not(neg), args[1])
	}
}

func lookup(v any, path string) (any, error) {
	if path == "." {
		return v, nil
	}
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			if k == "len" {
				if _, ok := x["len"]; !ok {
					return float64(len(x)), nil
				}
			}
			val, ok := x[k]
			if !ok {
				return nil, fmt.Errorf("no key %q", k)
			}
			v = val
		case []any:
			if k == "len" {
				v = float64(len(x))
				continue
			}
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("bad index %q (len %d)", k, len(x))
			}
			v = x[i]
		default:
			return nil, fmt.Errorf("%q: not an object or array", k)
		}
	}
	return v, nil
}

func format(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// not returns "not " for a negated command (! cmd), for its failure message.
func not(neg bool) string {
	if neg {
		return "not "
	}
	return ""
}

func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	st, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	if (uint64(st.Mode().Perm()) == want) == neg {
		ts.Fatalf("%s has mode %#o, want %s%#o", args[0], st.Mode().Perm(), not(neg), want)
	}
}

func cmdJpids(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: jpids FILE")
	}
	var list []struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &list); err != nil {
		ts.Fatalf("stdout is not a jlist: %v", err)
	}
	var pids []string
	for _, e := range list {
		if e.PID > 0 {
			pids = append(pids, strconv.Itoa(e.PID))
		}
	}
	out := strings.Join(pids, "\n") + "\n"
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(out), 0o644))
	f, err := os.OpenFile(filepath.Join(ts.Getenv("WORK"), ".apppids"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	ts.Check(err)
	_, err = f.WriteString(out)
	ts.Check(err)
	ts.Check(f.Close())
}

func pidsIn(ts *testscript.TestScript, file string) []int {
	var pids []int
	for _, f := range strings.Fields(ts.ReadFile(file)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			ts.Fatalf("%s: %q is not a pid", file, f)
		}
		pids = append(pids, pid)
	}
	return pids
}

func cmdAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: alive FILE")
	}
	pids := pidsIn(ts, args[0])
	if len(pids) == 0 {
		ts.Fatalf("%s lists no pids", args[0])
	}
	for _, pid := range pids {
		if !neg {
			if !daemonproc.Alive(pid) {
				ts.Fatalf("pid %d is not running", pid)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		daemonproc.WaitExit(ctx, pid) // returns once the process has exited
		cancel()
		if daemonproc.Alive(pid) {
			ts.Fatalf("pid %d still runs%s", pid, whyAlive(ts, pid))
		}
	}
}

func cmdKill9(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: kill9 PIDFILE")
	}
	pid, err := daemonproc.ReadPid(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Check(syscall.Kill(pid, syscall.SIGKILL))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts.Check(daemonproc.WaitExit(ctx, pid))
}

func cmdPidof(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: pidof VAR FILE")
	}
	pids := pidsIn(ts, args[1])
	if len(pids) == 0 {
		ts.Fatalf("%s lists no pids", args[1])
	}
	ts.Setenv(args[0], strconv.Itoa(pids[0]))
}

// cmdWaitFor waits (polling, with a 10 s deadline: a file has no event to
// wait on) until FILE matches REGEX.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitfor FILE REGEX")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if re.Match(data) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s does not match %q after 10s; it holds:\n%s", args[0], args[1], data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdWaitOut(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: waitout REGEX COMMAND [ARG...]")
	}
	re, err := regexp.Compile(args[0])
	ts.Check(err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ts.Exec(args[1], args[2:]...)
		out := ts.ReadFile("stdout")
		if err == nil && re.MatchString(out) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s: stdout does not match %q after 10s (last error %v); it holds:\n%s", strings.Join(args[1:], " "), args[0], err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// whyAlive describes a process that should have exited, for the failure message: its state, what
// it waits in, and the end of the daemon's log.
func whyAlive(ts *testscript.TestScript, pid int) string {
	var b strings.Builder
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "State:") || strings.HasPrefix(l, "PPid:") || strings.HasPrefix(l, "Threads:") {
				b.WriteString("\n" + l)
			}
		}
	}
	if w, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid)); err == nil {
		b.WriteString("\nwchan: " + string(w))
	}
	if home := ts.Getenv("CORRAL_HOME"); home != "" {
		if log, err := os.ReadFile(filepath.Join(home, "corral.log")); err == nil {
			lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
			b.WriteString("\nthe end of corral.log:\n" + strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}
	return b.String()
}
