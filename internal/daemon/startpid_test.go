package daemon

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// execFork writes a new process's pid file before it takes m.mu: once Start has returned, every
// instance's pid file names its process, and a restart replaces it with the new pid.
func TestStartPidFilesWrittenByExecFork(t *testing.T) {
	m := newTestManager(t, Config{})
	ctx := context.Background()
	var apps []appspec.App
	for i := 0; i < 12; i++ {
		apps = append(apps, appspec.App{Name: fmt.Sprintf("p%02d", i), Script: "sleep", Args: []string{"1000"}, Interpreter: "none"})
	}
	apps = append(apps, appspec.App{Name: "multi", Script: "sleep", Args: []string{"1000"}, Interpreter: "none", Instances: 3})
	procs, err := m.Start(ctx, apps, api.StartOptions{Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, procs []api.Proc) {
		t.Helper()
		for _, p := range procs {
			b, err := os.ReadFile(p.PidFile)
			if err != nil {
				t.Errorf("%s: %s (pm_id %d): %v", what, p.Name, p.PMID, err)
				continue
			}
			if got := strings.TrimSpace(string(b)); got != strconv.Itoa(p.PID) || p.PID == 0 {
				t.Errorf("%s: %s (pm_id %d): pid file says %q, pid %d", what, p.Name, p.PMID, got, p.PID)
			}
		}
	}
	if len(procs) != 15 {
		t.Fatalf("%d processes started, want 15", len(procs))
	}
	check("after the start", procs)
	for _, p := range procs {
		if p.Env != nil || p.App.ShellEnv != nil {
			t.Fatalf("a lean start answered with environments: %s", p.Name)
		}
	}
	procs, _, err = m.Restart(ctx, []string{"multi"}, api.RestartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("after a restart", procs)
}
