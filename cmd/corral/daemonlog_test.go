package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/daemonlog"
	"github.com/corralhq/corral/internal/testutil"
)

// TestFullDiskWarningsAreThrottled runs an app that writes 10 MB of output to a log on a full disk
// (/dev/full: every write fails with ENOSPC) under the real daemon, and counts the daemon's
// warnings about it in corral.log. There used to be one per failed write (1,267 in 10 s at 1 MB/s);
// now at most daemonlog.Burst pass per minute, the rest counted.
func TestFullDiskWarningsAreThrottled(t *testing.T) {
	p, env := testHome(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "flood.sh")
	// 2,000 lines of 5,000 bytes, then "flooded" on stderr (whose log is fine).
	if err := os.WriteFile(script, []byte(`#!/bin/sh
line=$(head -c 5000 /dev/zero | tr '\0' x)
i=0
while [ $i -lt 2000 ]; do echo "$line"; i=$((i+1)); done
echo flooded >&2
`), 0o755); err != nil {
		t.Fatal(err)
	}
	errLog := filepath.Join(dir, "flood.err.log")
	corral(t, env, "start", script, "--name", "flood", "--no-autorestart", "-o", "/dev/full", "-e", errLog)
	testutil.WaitFor(t, 60*time.Second, "the app to write its 10 MB and stop", func() bool {
		var procs []struct {
			PM2Env struct {
				Status string `json:"status"`
			} `json:"pm2_env"`
		}
		b, _ := os.ReadFile(errLog)
		if err := json.Unmarshal([]byte(corral(t, env, "jlist")), &procs); err != nil || len(procs) != 1 {
			return false
		}
		return strings.Contains(string(b), "flooded") && procs[0].PM2Env.Status == "stopped"
	})
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	warnings := strings.Count(string(b), `msg="write log"`)
	t.Logf("%d \"write log\" warnings in corral.log (%d bytes) for 10 MB written to a full disk", warnings, len(b))
	if warnings == 0 {
		t.Fatalf("no warning about the full disk at all:\n%s", b)
	}
	if warnings > daemonlog.Burst {
		t.Errorf("%d warnings, want at most %d", warnings, daemonlog.Burst)
	}
}
