package procstat

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Descendants finds a helper's child by parent pid; Same and Signal recognise a process by its
// start time, so that a pid reused by another process is left alone.
func TestDescendantsSameSignal(t *testing.T) {
	h := startHelper(t, "parent", false) // a parent and its "hog" child
	parent := h.cmd.Process.Pid
	child, err := strconv.Atoi(h.ready)
	if err != nil {
		t.Fatalf("child pid %q: %v", h.ready, err)
	}
	ds := Descendants(parent)
	if len(ds) != 1 || ds[0].PID != child || ds[0].PPID != parent || ds[0].PGRP != parent {
		t.Fatalf("Descendants(%d) = %+v; want only the child %d", parent, ds, child)
	}
	if all := Descendants(os.Getpid()); !containsPID(all, parent) || !containsPID(all, child) {
		t.Errorf("Descendants of the test process miss the helper %d or its child %d: %+v", parent, child, all)
	}
	start := ds[0].Start
	if !Same(child, start) || Same(child, start+1) {
		t.Errorf("Same(%d, start) false, or Same with another start time true", child)
	}
	if boot := BootTicks(time.Now()); boot < start {
		t.Errorf("BootTicks(now) = %d, before the child's start %d", boot, start)
	}
	if sent, err := Signal(child, start+1, unix.SIGKILL); sent || err != nil {
		t.Fatalf("Signal with another start time: sent %v, %v", sent, err)
	}
	if !Same(child, start) {
		t.Fatal("the child died of a signal meant for another process")
	}
	if sent, err := Signal(child, start, unix.SIGKILL); !sent || err != nil {
		t.Fatalf("Signal: sent %v, %v", sent, err)
	}
}

func containsPID(sts []Stat, pid int) bool {
	for _, st := range sts {
		if st.PID == pid {
			return true
		}
	}
	return false
}
