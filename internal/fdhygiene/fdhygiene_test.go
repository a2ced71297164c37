package fdhygiene

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself: `fdh-helper MODE` is started by a shell that opened fds 7
// and 9 (`exec 7>file 9<file`), applies MODE, and starts `fdh-list` with one pipe passed on
// purpose (its fd 3); fdh-list prints the fds it inherited.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "fdh-helper" {
		os.Exit(helper(os.Args[2]))
	}
	if len(os.Args) > 1 && os.Args[1] == "fdh-list" {
		fmt.Printf("grandchild inherited=%s\n", inherited())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// inherited lists the fds of this process that are not close-on-exec: those it got through
// execve (everything the Go runtime opens itself is close-on-exec).
func inherited() string {
	fds, err := OpenFDs()
	if err != nil {
		return "error:" + err.Error()
	}
	var out []string
	for _, fd := range fds {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			out = append(out, strconv.Itoa(fd))
		}
	}
	return strings.Join(out, ",")
}

func open(fds []int) string {
	var out []string
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			out = append(out, strconv.Itoa(fd))
		}
	}
	return strings.Join(out, ",")
}

func helper(mode string) int {
	var err error
	switch mode {
	case "cloexec":
		err = CloexecFrom(3)
	case "walk": // the fallback used where close_range is missing
		err = cloexecWalk(3)
	case "walk-noproc": // ... and without /proc
		readDirNames = func(string) ([]string, error) { return nil, errors.New("no /proc") }
		err = cloexecWalk(3)
	case "close":
		err = CloseInherited()
	case "close-keep7": // the keeper's start-up: close what is inherited but kept, mark the rest
		if err = CloseInherited(7); err == nil {
			err = CloexecFrom(3)
		}
	}
	if err != nil {
		fmt.Printf("helper err=%v\n", err)
		return 1
	}
	fmt.Printf("helper mode=%s has=%s\n", mode, open([]int{7, 9}))
	self, _ := os.Executable()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Printf("helper err=%v\n", err)
		return 1
	}
	defer r.Close()
	cmd := exec.Command(self, "fdh-list")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w} // passed on purpose: the grandchild's fd 3
	if err := cmd.Run(); err != nil {
		fmt.Printf("helper err=%v\n", err)
		return 1
	}
	return 0
}

func TestGrandchildInheritsOnlyWhatIsPassed(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "held")
	for _, tc := range []struct {
		mode, helperHas, grandchild string
	}{
		{"none", "7,9", ""},           // without hygiene the shell's fds leak (and whatever the test inherited)
		{"cloexec", "7,9", "0,1,2,3"}, // marked: still open in the helper, not passed on
		{"walk", "7,9", "0,1,2,3"},
		{"walk-noproc", "7,9", "0,1,2,3"},
		{"close", "", "0,1,2,3"}, // closed in the helper too
		{"close-keep7", "7", "0,1,2,3"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", `exec 7>"$1" 9<"$1"; exec "$2" fdh-helper "$3"`, "sh", file, self, tc.mode)
			cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			want := fmt.Sprintf("helper mode=%s has=%s\ngrandchild inherited=%s\n", tc.mode, tc.helperHas, tc.grandchild)
			if tc.grandchild == "" { // the control: fds 7 and 9 must show up among the leaked ones
				got := strings.TrimPrefix(strings.Split(string(out), "\n")[1], "grandchild inherited=")
				leaked := strings.Split(got, ",")
				if !slices.Contains(leaked, "7") || !slices.Contains(leaked, "9") {
					t.Fatalf("without hygiene the grandchild inherited %s; want 7 and 9 among them", got)
				}
				t.Logf("without hygiene the grandchild inherits fds %s", got)
				return
			}
			if string(out) != want {
				t.Fatalf("got\n%swant\n%s", out, want)
			}
		})
	}
}
