package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/fastls"
	"github.com/corralhq/corral/internal/testutil"
)

// The early fast path of `ls` and `jlist` (internal/fastls) against the ordinary one
// (CORRAL_NO_FASTPATH=1): the same bytes on stdout, nothing on stderr, exit 0; the daemon's
// count of fast-path requests (ping's fast_requests) proves which path answered.

// fastRun runs the corral binary bin (in binDir) with env in dir and returns its stdout, stderr
// and error.
func fastRun(t *testing.T, bin, dir string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env, cmd.Dir = env, dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err = cmd.Wait()
	return o.String(), e.String(), err
}

// fastCount returns how many fast-path requests the daemon of home has answered.
func fastCount(t *testing.T, home string) int64 {
	t.Helper()
	c := api.NewClient(filepath.Join(home, "corral.sock"))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pong, err := c.Ping(ctx)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	return pong.FastRequests
}

// sameBothWays runs `corral cmd` by the fast path then by the ordinary one until both print the
// same (CPU, memory and uptime may change between two runs: a few tries), checks that the
// fast path answered (when fast) or not, and returns the output.
func sameBothWays(t *testing.T, home, dir string, env []string, cmd string, fast bool) string {
	t.Helper()
	var got, want string
	for try := 0; try < 10; try++ {
		before := fastCount(t, home)
		var gerr, werr string
		var err error
		got, gerr, err = fastRun(t, "corral", dir, env, cmd)
		if err != nil || gerr != "" {
			t.Fatalf("corral %s (fast path): %v\nstderr: %s", cmd, err, gerr)
		}
		after := fastCount(t, home)
		wantN := int64(0)
		if fast {
			wantN = 1
		}
		if after-before != wantN {
			t.Fatalf("corral %s: the daemon answered %d fast-path requests, want %d", cmd, after-before, wantN)
		}
		want, werr, err = fastRun(t, "corral", dir, append(env[:len(env):len(env)], fastls.EnvOff+"=1"), cmd)
		if err != nil || werr != "" {
			t.Fatalf("corral %s (ordinary path): %v\nstderr: %s", cmd, err, werr)
		}
		if fastCount(t, home) != after {
			t.Fatalf("corral %s with %s=1 took the fast path", cmd, fastls.EnvOff)
		}
		if got == want {
			return got
		}
	}
	t.Fatalf("corral %s: the fast path prints\n%s\nthe ordinary path\n%s", cmd, got, want)
	return ""
}

func TestFastListMatchesOrdinaryPath(t *testing.T) {
	home, env := readmeHome(t)
	dir := filepath.Dir(home)

	// No daemon: the fast path finds none, the ordinary path starts it.
	out, errOut, err := fastRun(t, "corral", dir, env, "ls")
	if err != nil || errOut != "" || !strings.HasPrefix(out, "┌") || strings.Count(out, "\n") != 3 {
		t.Fatalf("ls without a daemon: %v\n%s\nstderr: %s", err, out, errOut)
	}
	if n := fastCount(t, home); n != 0 {
		t.Errorf("the fast path answered %d requests before the daemon ran", n)
	}

	check := func(what string, apps int) {
		t.Helper()
		for _, cmd := range []string{"ls", "jlist", "list", "status"} {
			out := sameBothWays(t, home, dir, env, cmd, true)
			if cmd == "jlist" {
				if n := len(jlist(t, dir, env)); n != apps {
					t.Errorf("%s: jlist lists %d instances, want %d", what, n, apps)
				}
			} else if n := len(tableRowsOf(out)); n != apps {
				t.Errorf("%s: %s lists %d instances, want %d:\n%s", what, cmd, n, apps, out)
			}
		}
	}
	check("no app", 0)
	corral(t, env, "start", "sleep", "--name", "one", "--", "600")
	check("one app", 1)
	corral(t, env, "start", "sleep", "--name", "many", "-i", "10", "--namespace", "crowd", "--", "600")
	corral(t, env, "start", "sleep", "--name", "halted", "--", "600")
	corral(t, env, "stop", "halted")
	corral(t, env, "start", "false", "--name", "broken", "--max-restarts", "1")
	testutil.WaitFor(t, 30*time.Second, "broken errored", func() bool {
		for _, p := range jlist(t, dir, env) {
			if p.Name == "broken" && p.status() == "errored" {
				return true
			}
		}
		return false
	})
	check("many, stopped and errored apps", 13)
	out = sameBothWays(t, home, dir, env, "ls", true)
	for _, want := range []string{"crowd", "stopped", "errored", "online"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls does not show %q:\n%s", want, out)
		}
	}

	// A relative CORRAL_HOME, resolved against the working directory.
	rel := append(env[:len(env):len(env)], "CORRAL_HOME="+filepath.Base(home))
	sameBothWays(t, home, dir, rel, "ls", true)

	// `ls | head -1` prints the top of the box, as the ordinary path does.
	for _, e := range [][]string{env, append(env[:len(env):len(env)], fastls.EnvOff+"=1")} {
		cmd := exec.Command("sh", "-c", "corral ls | head -1")
		cmd.Env, cmd.Dir = e, dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "┌") || strings.Count(string(out), "\n") != 1 {
			t.Errorf("corral ls | head -1: %v\n%s", err, out)
		}
	}
}

// Whatever the fast path cannot vouch for, it leaves to the ordinary path: a home that is a link
// (which the ordinary path follows when it is the user's), a planted link among the home's files
// (which the ordinary path refuses), a daemon that does not answer.
func TestFastListFallsBack(t *testing.T) {
	home, env := readmeHome(t)
	dir := filepath.Dir(home)
	corral(t, env, "start", "sleep", "--name", "one", "--", "600")
	sameBothWays(t, home, dir, env, "ls", true)

	link := filepath.Join(dir, "link")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	linked := append(env[:len(env):len(env)], "CORRAL_HOME="+link)
	sameBothWays(t, home, dir, linked, "ls", false)
	sameBothWays(t, home, dir, linked, "jlist", false)

	// No HOME and no CORRAL_HOME: the ordinary path decides (and here finds no such home).
	var noHome []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "CORRAL_HOME=") {
			noHome = append(noHome, kv)
		}
	}
	before := fastCount(t, home)
	fastRun(t, "corral", dir, append(noHome, "CORRAL_HOME="), "jlist")
	if fastCount(t, home) != before {
		t.Error("the fast path answered without a home")
	}

	// corral.log replaced by a link (of this user's): both paths refuse the home.
	logPath := filepath.Join(home, "corral.log")
	if err := os.Rename(logPath, logPath+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(logPath+".real", logPath); err != nil {
		t.Fatal(err)
	}
	before = fastCount(t, home)
	for _, cmd := range []string{"ls", "jlist"} {
		out, errOut, err := fastRun(t, "corral", dir, env, cmd)
		if err == nil || out != "" || !strings.Contains(errOut, logPath+" is a symbolic link") {
			t.Errorf("corral %s with corral.log a link: %v\nstdout: %s\nstderr: %s", cmd, err, out, errOut)
		}
	}
	if fastCount(t, home) != before {
		t.Error("the fast path answered with corral.log a link")
	}
	os.Remove(logPath)
	if err := os.Rename(logPath+".real", logPath); err != nil {
		t.Fatal(err)
	}
	sameBothWays(t, home, dir, env, "ls", true)

	// A stopped daemon: the fast path gives up after its timeout, the ordinary path says the
	// daemon does not answer; once it runs again, the fast path answers.
	pid, err := daemonproc.ReadPid(filepath.Join(home, "corral.pid"))
	if err != nil {
		t.Fatal(err)
	}
	stale := fastCount(t, home) + 1 // the request the fast path leaves unanswered
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, errOut, err := fastRun(t, "corral", dir, env, "jlist")
	took := time.Since(start)
	syscall.Kill(pid, syscall.SIGCONT)
	if err == nil || out != "" || !strings.Contains(errOut, fmt.Sprintf("the daemon (pid %d) does not answer", pid)) {
		t.Errorf("jlist on a stopped daemon (%s): %v\nstdout: %s\nstderr: %s", took.Round(time.Millisecond), err, out, errOut)
	}
	t.Logf("jlist on a stopped daemon took %s", took.Round(time.Millisecond))
	// The daemon, running again, still reads and answers (to a closed connection) the request the
	// fast path sent while it was stopped; wait for that so it is not counted below.
	testutil.Eventually(10*time.Second, func() bool { return fastCount(t, home) >= stale })
	sameBothWays(t, home, dir, env, "jlist", true)
}

// The out-of-date warning: a daemon started by another version (corral-v2) is named after the
// table by both paths, and not by the same version's CLI.
func TestFastListOutOfDateWarning(t *testing.T) {
	home, env := readmeHome(t)
	dir := filepath.Dir(home)
	if out, errOut, err := fastRun(t, "corral-v2", dir, env, "start", "sleep", "--name", "one", "--", "600"); err != nil {
		t.Fatalf("corral-v2 start: %v\n%s%s", err, out, errOut)
	}
	out := sameBothWays(t, home, dir, env, "ls", true)
	want := ">>>> In-memory corral is out-of-date, do:\n>>>> $ corral update\nIn memory corral version: " + v2Version + "\nLocal corral version: "
	if !strings.Contains(out, want) || !strings.HasSuffix(out, "\n") || len(tableRowsOf(out)) != 1 {
		t.Errorf("ls against a daemon of version %s:\n%s\nwant %q", v2Version, out, want)
	}
	before := fastCount(t, home)
	v2, errOut, err := fastRun(t, "corral-v2", dir, env, "ls")
	if err != nil || errOut != "" || strings.Contains(v2, "out-of-date") || len(tableRowsOf(v2)) != 1 {
		t.Errorf("corral-v2 ls against its own daemon: %v\n%s\nstderr: %s", err, v2, errOut)
	}
	if fastCount(t, home) != before+1 {
		t.Error("corral-v2 ls did not take the fast path")
	}
}

// The fast path answers before any heavy package initialiser runs (the point of it); the
// ordinary path runs them.
func TestFastListRunsNoHeavyInit(t *testing.T) {
	home, env := readmeHome(t)
	dir := filepath.Dir(home)
	corral(t, env, "start", "sleep", "--name", "one", "--", "600")
	for _, cmd := range []string{"ls", "jlist"} {
		for _, fast := range []bool{true, false} {
			e := append(env[:len(env):len(env)], "GODEBUG=inittrace=1")
			if !fast {
				e = append(e, fastls.EnvOff+"=1")
			}
			out, errOut, err := fastRun(t, "corral", dir, e, cmd)
			var inits []string
			for _, l := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(l, "init ") {
					inits = append(inits, l)
				}
			}
			if err != nil || !strings.Contains(out, "one") || len(inits) == 0 {
				t.Fatalf("corral %s (fast %v): %v\n%s\nstderr: %s", cmd, fast, err, out, errOut)
			}
			if h := heavy(inits); fast && len(h) > 0 || !fast && len(h) == 0 {
				t.Errorf("corral %s (fast %v) ran %d initialisers, heavy ones: %q", cmd, fast, len(inits), h)
			}
			if fast {
				t.Logf("corral %s: %d package initialisers ran", cmd, len(inits))
			}
		}
	}
}
