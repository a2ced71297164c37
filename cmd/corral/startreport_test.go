package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// start says first, in one line, when an app cannot run in the mode asked for, and gives no ✓ to an
// instance that crash-loops on EADDRINUSE: it says that, with the fix.
func TestStartReportsWhatWillFail(t *testing.T) {
	nodetest.Node(t)
	_, env := testHome(t)
	app, _ := filepath.Abs("testdata/runtimes/app.mjs")
	env = append(env, "PORT="+strconv.Itoa(testutil.FreePort(t)))

	// Two fork-mode instances of a server on one port: the second cannot listen.
	out := corral(t, env, "start", app, "-i", "2", "-x", "--name", "twice")
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "Starting "+app+" in fork_mode (2 instances)") {
		t.Fatalf("first line %q\n%s", lines[0], out)
	}
	ok := regexp.MustCompile(`(?m)^\[corral\] \[twice\]\(\d\) ✓$`).FindAllString(out, -1)
	bad := regexp.MustCompile(`(?m)^\[corral\] \[twice\]\(\d\) ✗ exits with EADDRINUSE .*use cluster mode .* or --listen`).FindAllString(out, -1)
	if len(ok) != 1 || len(bad) != 1 {
		t.Fatalf("want one ✓ and one ✗ EADDRINUSE line:\n%s", out)
	}
	if strings.Contains(out, "note: exits with EADDRINUSE") {
		t.Fatalf("the EADDRINUSE reason is repeated as a note:\n%s", out)
	}

	// Cluster mode asked for a program that cannot be a worker: the reason comes first.
	script := filepath.Join(t.TempDir(), "loop.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755)
	out = corral(t, env, "start", script, "-i", "2", "--interpreter", "sh", "--exec-mode", "cluster", "--name", "sh")
	first := strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(first, "[corral] note: exec_mode cluster needs a Node, Bun or Deno script") || !strings.Contains(first, "sh runs in fork mode") {
		t.Fatalf("first line %q, want the reason the app runs in fork mode:\n%s", first, out)
	}
	if !strings.Contains(out, "in fork_mode (2 instances)") || strings.Count(out, "exec_mode cluster needs") != 1 {
		t.Fatalf("start output:\n%s", out)
	}

	// The same from an ecosystem file.
	eco := filepath.Join(filepath.Dir(script), "ecosystem.config.json")
	os.WriteFile(eco, []byte(`{"apps":[{"name":"eco","script":"`+script+`","interpreter":"sh","exec_mode":"cluster","instances":2}]}`), 0o644)
	out = corral(t, env, "start", eco)
	first = strings.SplitN(out, "\n", 2)[0]
	if !strings.HasPrefix(first, "[corral] note: eco: exec_mode cluster needs a Node, Bun or Deno script") || strings.Count(out, "exec_mode cluster needs") != 1 {
		t.Fatalf("ecosystem start: first line %q:\n%s", first, out)
	}
	corral(t, env, "delete", "all")
}
