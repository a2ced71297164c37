package daemon

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// TestChildPIDsListsChildren checks childPIDs against processes this test starts: each is listed
// while it runs and not once it has been reaped.
func TestChildPIDsListsChildren(t *testing.T) {
	var cmds []*exec.Cmd
	for range 3 {
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
	pids, err := childPIDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		if !slices.Contains(pids, c.Process.Pid) {
			t.Errorf("child %d missing from %v", c.Process.Pid, pids)
		}
	}
	gone := cmds[0].Process.Pid
	cmds[0].Process.Kill()
	cmds[0].Wait()
	cmds = cmds[1:]
	if pids, err = childPIDs(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pids, gone) {
		t.Errorf("reaped child %d still listed: %v", gone, pids)
	}
}

// BenchmarkChildPIDs measures one listing of the daemon's children, done for every crash
// (clearTree, orphansOf) and every SIGCHLD (reapOrphans).
func BenchmarkChildPIDs(b *testing.B) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := childPIDs(os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}
