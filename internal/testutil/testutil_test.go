package testutil

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestFreePortRun(t *testing.T) {
	base := FreePortRun(t, 3)
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			t.Fatalf("port %d of the run is not free: %v", base+i, err)
		}
		ln.Close()
	}
}

func TestProcLines(t *testing.T) {
	p := Start(t, exec.Command("sh", "-c", "echo one; echo two >&2; echo three; exit 3"))
	if got := p.WaitPrefix(t, 5*time.Second, "thr"); got != "three" {
		t.Fatalf("WaitPrefix = %q", got)
	}
	err := p.Wait(t, 5*time.Second)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit 3", err)
	}
	if out := p.Output(); !strings.Contains(out, "two") {
		t.Fatalf("stderr not merged: %q", out)
	}
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func TestCheckGoroutinesFindsALeak(t *testing.T) {
	f := &fakeTB{TB: t}
	CheckGoroutines(f)
	stop := make(chan struct{})
	go func() { <-stop }()
	start := time.Now()
	for _, c := range f.cleanups {
		c()
	}
	close(stop)
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "leaked") {
		t.Fatalf("a leaked goroutine was not reported: %q", f.errors)
	}
	if time.Since(start) < 4*time.Second {
		t.Fatalf("reported before the grace period")
	}

	f = &fakeTB{TB: t}
	CheckGoroutines(f)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	for _, c := range f.cleanups {
		c()
	}
	if len(f.errors) != 0 {
		t.Fatalf("a goroutine that ended was reported: %q", f.errors)
	}
}
