// Package testutil holds the helpers the tests of this module share: free ports, waiting for a
// condition, running a helper process and reading its output line by line, and a goroutine-leak check.
//
// It is imported only by _test.go files.
package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process may take it
// before the caller binds it; where the code under test can bind port 0 and report the address it got,
// prefer that.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePortRun returns a port p such that p, p+1, ... p+n-1 were all free a moment ago (for apps
// whose instances listen on consecutive ports).
func FreePortRun(t testing.TB, n int) int {
	t.Helper()
	// Bases below the kernel's ephemeral range (32768 and up by default): there, the client
	// connections of other tests running at the same time keep the neighbours of a free port busy.
	for try := 0; try < 200; try++ {
		base := 20000 + rand.IntN(12000)
		ok := true
		var held []net.Listener
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			held = append(held, ln)
		}
		for _, ln := range held {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no run of %d free ports found", n)
	return 0
}

// WaitFor polls cond until it reports true, failing the test with what in the message after timeout.
// Use it only where no event exists to wait on; the poll interval starts at 1ms and grows to 50ms.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Eventually polls cond until it reports true or timeout passes, and reports whether it did.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	d := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(d)
		if d < 50*time.Millisecond {
			d *= 2
		}
	}
}

// Proc is a helper process started by Start, whose stdout (and stderr, merged) is read line by line.
type Proc struct {
	Cmd *exec.Cmd

	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
	eof   bool
	done  chan struct{} // closed when the process has been waited for
	err   error         // Wait's result
}

// Start starts cmd in its own process group with stdout and stderr merged into a pipe that Proc reads.
// The test's cleanup kills the whole group and waits for the process, so nothing outlives the test.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	w.Close()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.read(r)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Path, p.Output())
		}
	})
	return p
}

func (p *Proc) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// WaitLine waits until a line for which match reports true has been printed, and returns it. It fails
// the test after timeout or when the output ends first.
func (p *Proc) WaitLine(t testing.TB, timeout time.Duration, what string, match func(string) bool) string {
	t.Helper()
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := 0
	for {
		for ; seen < len(p.lines); seen++ {
			if match(p.lines[seen]) {
				return p.lines[seen]
			}
		}
		if p.eof {
			t.Fatalf("output ended before %s; output:\n%s", what, strings.Join(p.lines, "\n"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; output:\n%s", timeout, what, strings.Join(p.lines, "\n"))
		}
		p.cond.Wait()
	}
}

// WaitPrefix waits for a line that starts with prefix and returns it.
func (p *Proc) WaitPrefix(t testing.TB, timeout time.Duration, prefix string) string {
	t.Helper()
	return p.WaitLine(t, timeout, fmt.Sprintf("a line starting %q", prefix), func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// Lines returns the lines printed so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Output returns everything printed so far, one line each.
func (p *Proc) Output() string { return strings.Join(p.Lines(), "\n") }

// Done is closed once the process has exited and been waited for.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns Wait's error.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.Cmd.Path, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// CheckGoroutines records the goroutines running now and, at the test's cleanup (registered last, so
// it runs after the cleanups registered later), waits up to 5s for every goroutine started since to
// end; the test fails with their stacks if some are still there. Call it first in a test, or in
// TestMain-level helpers, before the code under test starts goroutines.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := goroutineIDs()
	t.Cleanup(func() {
		var leaked []string
		ok := Eventually(5*time.Second, func() bool {
			leaked = leaked[:0]
			for id, stack := range goroutineStacks() {
				if _, old := before[id]; !old && !ignorable(stack) {
					leaked = append(leaked, stack)
				}
			}
			return len(leaked) == 0
		})
		if !ok {
			t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// ignorable reports goroutines that belong to the runtime or the testing package, not to the code
// under test.
func ignorable(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run", "testing.tRunner", "testing.runTests", "testing.(*M).",
		"runtime.goexit0", "os/signal.signal_recv", "os/signal.loop",
		"testutil.CheckGoroutines", "testutil.goroutineStacks",
		"runtime/pprof", "runtime.ensureSigM", "created by runtime.gc", "runtime.forcegchelper",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

func goroutineIDs() map[string]struct{} {
	ids := make(map[string]struct{})
	for id := range goroutineStacks() {
		ids[id] = struct{}{}
	}
	return ids
}

// goroutineStacks returns the stack of every goroutine keyed by its "goroutine N" header.
func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		head, _, _ := strings.Cut(s, "\n")
		// "goroutine 7 [running]:" -> "goroutine 7"
		if i := strings.Index(head, " ["); i > 0 {
			head = head[:i]
		}
		out[head] = s
	}
	return out
}
