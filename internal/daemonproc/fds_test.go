package daemonproc

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Spawn passes the daemon its standard descriptors and the readiness pipe only: not a
// descriptor this process inherited without close-on-exec (a shell's `exec 7>file`), which
// os/exec would otherwise pass on.
func TestSpawnPassesNoInheritedFDs(t *testing.T) {
	dir := shortDir(t)
	p := PathsFor(dir)
	f, err := os.Create(filepath.Join(dir, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A copy of it without FD_CLOEXEC stands for an inherited descriptor.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "fds")
	self := writeScript(t, dir, `ls /proc/$$/fd > `+out+`
printf 1 >&$CORRAL_READY_FD
`)
	if err := Spawn(context.Background(), p, self, os.Environ()); err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	fds := strings.Fields(string(data))
	for _, s := range fds {
		if s == strconv.Itoa(fd) {
			t.Fatalf("the daemon got fd %d (its fds: %v)", fd, fds)
		}
	}
	if !strings.Contains(" "+strings.Join(fds, " ")+" ", " 3 ") {
		t.Fatalf("the daemon has no readiness pipe as fd 3 (its fds: %v)", fds)
	}
}
