package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// The seed program, built and run for real: N workers come online, a killed worker is reported with
// its signal and replaced, requests are served throughout, and SIGTERM leaves no worker behind.
func TestSeed(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "seed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	port := testutil.FreePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	p := testutil.Start(t, cmd)
	const timeout = 20 * time.Second
	// index returns where line was printed, -1 if it was not.
	index := func(line string) int { return slices.Index(p.Lines(), line) }
	is := func(want string) func(string) bool { return func(l string) bool { return l == want } }
	n := runtime.NumCPU()
	setup := fmt.Sprintf("Primary cluster setting up %d workers...", n)
	p.WaitLine(t, timeout, "the set-up line", is(setup))
	if index(setup) != 0 {
		t.Fatalf("%q is not the first line:\n%s", setup, p.Output())
	}
	online := regexp.MustCompile(`^Worker (\d+) is online$`)
	seen := map[string]bool{}
	// newOnline waits for an online line of a worker not seen yet and returns its pid.
	newOnline := func(what string) int {
		t.Helper()
		m := online.FindStringSubmatch(p.WaitLine(t, timeout, what, func(l string) bool {
			m := online.FindStringSubmatch(l)
			return m != nil && !seen[m[1]]
		}))
		seen[m[1]] = true
		pid, _ := strconv.Atoi(m[1])
		return pid
	}
	var pids []int
	for len(pids) < n {
		pids = append(pids, newOnline(fmt.Sprintf("worker %d of %d online", len(pids)+1, n)))
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	getOK := func() {
		t.Helper()
		var err error
		// Polled: online comes before listening, and nothing reports the listening.
		if !testutil.Eventually(timeout, func() bool {
			var res *http.Response
			if res, err = (&http.Client{Timeout: 10 * time.Second}).Get(url); err != nil {
				return false
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(b) != "hello world" {
				t.Fatalf("body %q", b)
			}
			return true
		}) {
			t.Fatal(err)
		}
	}
	getOK()
	syscall.Kill(pids[0], syscall.SIGKILL)
	died := fmt.Sprintf("Worker %d died with code: -1, and signal: killed", pids[0])
	p.WaitLine(t, timeout, "the death of the killed worker", is(died))
	p.WaitLine(t, timeout, "the replacement's start", is("Starting a new worker"))
	newOnline("the replacement online")
	if i, j := index(died), index("Starting a new worker"); i > j {
		t.Fatalf("the replacement started before the death was reported:\n%s", p.Output())
	}
	getOK()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("primary exit: %v", err)
	}
	for _, pid := range pids[1:] {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("worker %d still alive after the primary stopped", pid)
		}
	}
}
