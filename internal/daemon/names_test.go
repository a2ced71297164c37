package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/testutil"
)

// TestNamesGetLogFilesOfTheirOwn runs apps whose names PM2's rule mapped to one log file ("a/b",
// "a b" and "a_b" all wrote logs/a-b-out.log) and one whose name starts with a dot: each must
// write its own, visible, files, holding only its own output.
func TestNamesGetLogFilesOfTheirOwn(t *testing.T) {
	m := newTestManager(t, Config{})
	names := []string{"a/b", "a b", "a_b", "a-b", ".hidden"}
	var apps []appspec.App
	for _, n := range names {
		apps = append(apps, goApp(t, n, "sleep", nil))
	}
	procs := startSleepers(t, m, apps...)
	files := map[string]string{}
	for _, p := range procs {
		for _, f := range []string{p.OutLog, p.ErrLog, p.PidFile} {
			if prev, dup := files[f]; dup {
				t.Errorf("%q and %q share %s", prev, p.Name, f)
			}
			files[f] = p.Name
			if base := filepath.Base(f); strings.HasPrefix(base, ".") || filepath.Dir(filepath.Dir(f)) != m.cfg.Home {
				t.Errorf("%q: file %s is hidden or outside the home's logs and pids", p.Name, f)
			}
		}
		// The line reaches the file through the daemon's log pump, after the process is online.
		want := fmt.Sprintf("started %d", p.PID)
		var got string
		testutil.Eventually(10*time.Second, func() bool {
			b, err := os.ReadFile(p.OutLog)
			got = strings.TrimSpace(string(b))
			return err == nil && got != ""
		})
		if got != want {
			t.Errorf("%q: %s holds %q, want only %q", p.Name, p.OutLog, got, want)
		}
	}
}

// TestAmbiguousNamesAreRefused: "all", a number, /x/, a name ending like a config file and a name
// with a newline are refused with a clear message naming the field; nothing starts. A number
// taken from the script's name is refused too.
func TestAmbiguousNamesAreRefused(t *testing.T) {
	m := newTestManager(t, Config{})
	for name, want := range map[string]string{
		"all":         `app name "all" is ambiguous`,
		"0":           "a number is a pm_id",
		"/x/":         "regular expression",
		"apps.json":   "ecosystem file",
		"two\nlines":  "control character",
		"trailing\t ": "control character",
	} {
		_, err := m.Start(context.Background(), []appspec.App{goApp(t, name, "sleep", nil)}, api.StartOptions{})
		var fe *api.FieldError
		if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &fe) || fe.Field != "apps[0].name" {
			t.Errorf("start %q: %v, want a bad_request on apps[0].name saying %q", name, err, want)
		}
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "7")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 100\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := m.Start(context.Background(), []appspec.App{{Script: script, Cwd: dir}}, api.StartOptions{})
	if err == nil || !strings.Contains(err.Error(), "taken from the script: name the app") {
		t.Errorf("start of a script named 7: %v", err)
	}
	if procs, _ := m.List(context.Background()); len(procs) != 0 {
		t.Errorf("started: %+v", procs)
	}
}
