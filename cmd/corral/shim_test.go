package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// heavyInits are packages whose initialisers the __activate shim must not run (the shim execs
// from internal/activation/early's init, before them): the JS engine and what it pulls in, YAML,
// cobra, the TUI and clipboard libraries, the daemon.
var heavyInits = []string{
	"github.com/dop251/goja ", "github.com/google/pprof/profile", "gopkg.in/yaml", "github.com/spf13/cobra",
	"github.com/charmbracelet/bubbletea", "github.com/atotto/clipboard", "golang.org/x/text/collate",
	"github.com/dlclark/regexp2", "github.com/corralhq/corral/internal/daemon", "github.com/corralhq/corral/cluster",
	"net/http ",
}

// runShim runs `corral __activate args...` with GODEBUG=inittrace=1, env and a pipe as fd 3, and
// returns its stdout, the init trace lines of its stderr, its other stderr lines, its pid and exit code.
func runShim(t *testing.T, env []string, args ...string) (stdout string, inits, stderr []string, pid, code int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(filepath.Join(binDir, "corral"), append([]string{"__activate"}, args...)...)
	cmd.Env = append([]string{"GODEBUG=inittrace=1", "PATH=" + os.Getenv("PATH")}, env...)
	cmd.ExtraFiles = []*os.File{w}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
		if strings.HasPrefix(l, "init ") {
			inits = append(inits, l)
		} else if l != "" {
			stderr = append(stderr, l)
		}
	}
	return out.String(), inits, stderr, cmd.Process.Pid, cmd.ProcessState.ExitCode()
}

func heavy(inits []string) []string {
	var found []string
	for _, l := range inits {
		for _, h := range heavyInits {
			if strings.Contains(l+" ", "init "+h) {
				found = append(found, l)
			}
		}
	}
	return found
}

// The shim replaces itself with the program (same pid, LISTEN_PID set to it, the descriptor
// passed) before any heavy package initialiser runs; when it has an error to report, the whole
// binary starts and reports it as the `__activate` command always has.
func TestActivateShimRunsNoHeavyInit(t *testing.T) {
	out, inits, stderr, pid, code := runShim(t, []string{"LISTEN_FDS=1", "LISTEN_PID=1"},
		"sh", "-c", `echo "$$ $LISTEN_PID $LISTEN_FDS"; test -e /proc/$$/fd/3 && echo fd3`)
	if code != 0 || len(stderr) > 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := strconv.Itoa(pid) + " " + strconv.Itoa(pid) + " 1\nfd3\n"
	if out != want {
		t.Errorf("program printed %q, want %q (its pid, LISTEN_PID, LISTEN_FDS, fd 3 open)", out, want)
	}
	if h := heavy(inits); len(h) > 0 || len(inits) == 0 {
		t.Errorf("the shim ran %d initialisers, heavy ones: %q", len(inits), h)
	}
	t.Logf("%d package initialisers ran before the exec", len(inits))

	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"true"}, "[corral] activate true: LISTEN_FDS is not set"},
		{[]string{"LISTEN_FDS=x"}, []string{"true"}, `[corral] activate true: bad LISTEN_FDS="x"`},
		{[]string{"LISTEN_FDS=1"}, []string{"no-such-program-xyz"}, `[corral] activate: exec: "no-such-program-xyz": executable file not found in $PATH`},
		{[]string{"LISTEN_FDS=1"}, []string{"/"}, `[corral] activate: exec: "/": is a directory`},
		{[]string{"LISTEN_FDS=0"}, nil, "[corral] activate: no program given"},
	} {
		_, inits, stderr, _, code := runShim(t, c.env, c.args...)
		if code != 1 || len(stderr) != 1 || stderr[0] != c.want {
			t.Errorf("%q %q: exit %d, stderr %q; want 1, %q", c.env, c.args, code, stderr, c.want)
		}
		if len(heavy(inits)) == 0 {
			t.Errorf("%q %q: the error was not reported by the whole binary (no heavy init ran)", c.env, c.args)
		}
	}
}
