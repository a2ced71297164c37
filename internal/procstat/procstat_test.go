package procstat

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const hogSize = 50 << 20

// TestMain doubles as the helper processes the tests measure, selected by PROCSTAT_HELPER:
// "hog" holds 50 MB (and spins a core if PROCSTAT_SPIN=1), "parent" runs a hog child and holds
// little itself, "exit" exits at once. Helpers print "ready ..." when set up and exit when
// their stdin closes.
func TestMain(m *testing.M) {
	switch os.Getenv("PROCSTAT_HELPER") {
	case "":
		os.Exit(m.Run())
	case "hog":
		mem := make([]byte, hogSize)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
		if os.Getenv("PROCSTAT_SPIN") == "1" {
			go func() {
				for x := 0; ; x++ {
					mem[x%len(mem)]++
				}
			}()
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		runtime.KeepAlive(mem)
		os.Exit(0)
	case "parent":
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROCSTAT_HELPER=hog")
		cmd.Stdin = os.Stdin // the child also exits when the test closes our stdin
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "parent helper:", err)
			os.Exit(1)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			fmt.Fprintf(os.Stderr, "parent helper: child said %q: %v\n", line, err)
			os.Exit(1)
		}
		fmt.Printf("ready %d\n", cmd.Process.Pid)
		cmd.Wait()
		os.Exit(0)
	case "exit":
		os.Exit(0)
	}
	os.Exit(2)
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	ready string // the rest of its "ready" line
}

// startHelper starts a helper in its own process group, waits for its ready line and kills
// the whole group when the test ends.
func startHelper(t testing.TB, mode string, spin bool) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROCSTAT_HELPER="+mode)
	if spin {
		cmd.Env = append(cmd.Env, "PROCSTAT_SPIN=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		stdin.Close()
		cmd.Wait()
	})
	if mode == "exit" {
		return &helper{cmd: cmd}
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ready")
		if !ok {
			t.Fatalf("helper %s said %q", mode, line)
		}
		return &helper{cmd: cmd, ready: strings.TrimSpace(rest)}
	case <-time.After(20 * time.Second):
		t.Fatalf("helper %s not ready after 20s", mode)
	}
	return nil
}

// waitCPU samples pid until the CPU figure reaches min, failing after a deadline. CPU use
// accumulates over time and no event announces it, so this polls.
func waitCPU(t *testing.T, s *Sampler, pid int, min float64) Sample {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last Sample
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		smp, err := s.Sample(pid)
		if err != nil {
			t.Fatal(err)
		}
		if smp.CPU >= min {
			return smp
		}
		last = smp
	}
	t.Fatalf("pid %d: CPU stayed below %.0f%% (last %+v)", pid, min, last)
	return last
}

func TestSampleMemoryAndCPU(t *testing.T) {
	h := startHelper(t, "hog", true)
	var s Sampler
	pid := h.cmd.Process.Pid
	first, err := s.Sample(pid)
	if err != nil {
		t.Fatal(err)
	}
	if first.Memory < hogSize || first.Memory > 20*hogSize {
		t.Errorf("memory %d bytes, want about %d", first.Memory, hogSize)
	}
	smp := waitCPU(t, &s, pid, 5) // a spinning process; 5%: it may share a loaded machine
	t.Logf("first %+v, busy %+v", first, smp)
	if smp.CPU > 100*float64(runtime.NumCPU())+5 {
		t.Errorf("CPU %.1f%% is more than all cores", smp.CPU)
	}
	if smp.CPU != float64(int(smp.CPU*10+0.5))/10 {
		t.Errorf("CPU %v is not rounded to one decimal", smp.CPU)
	}
}

func TestSampleIncludesDescendants(t *testing.T) {
	h := startHelper(t, "parent", true)
	child, err := strconv.Atoi(h.ready)
	if err != nil {
		t.Fatalf("parent helper said %q", h.ready)
	}
	var s Sampler
	tree, err := s.Sample(h.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := s.Sample(child)
	if err != nil {
		t.Fatal(err)
	}
	if alone.Memory < hogSize {
		t.Errorf("child memory %d, want >= %d", alone.Memory, hogSize)
	}
	if tree.Memory <= alone.Memory {
		t.Errorf("tree memory %d not above the child's %d: the root or the child is missing", tree.Memory, alone.Memory)
	}
	t.Logf("tree %d bytes, child alone %d bytes", tree.Memory, alone.Memory)
	// The parent only waits; the CPU the tree uses is its child's.
	busy := waitCPU(t, &s, h.cmd.Process.Pid, 5)
	t.Logf("tree CPU %.1f%%", busy.CPU)

	// Without children files the tree is found by scanning parent pids, with the same result.
	var scan Sampler
	scan.init()
	scan.children = false
	smp, err := scan.Sample(h.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if smp.Memory <= alone.Memory {
		t.Errorf("scanning sampler saw %d bytes, not more than the child alone (%d)", smp.Memory, alone.Memory)
	}
}

func TestSampleDeadProcess(t *testing.T) {
	var s Sampler
	h := startHelper(t, "hog", false)
	pid := h.cmd.Process.Pid
	if _, err := s.Sample(pid); err != nil {
		t.Fatal(err)
	}
	h.cmd.Process.Kill()
	h.cmd.Wait() // reaped: the pid is gone
	if _, err := s.Sample(pid); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("sample of a dead pid: %v, want ErrProcessDone", err)
	}
	if _, ok := s.prev[pid]; ok {
		t.Error("sampler still remembers the dead pid")
	}

	// A zombie (exited, not yet reaped) counts as dead too.
	z := startHelper(t, "exit", false)
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, z.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sample(z.cmd.Process.Pid); !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("sample of a zombie: %v, want ErrProcessDone", err)
	}

	for _, bad := range []int{0, -1} {
		if _, err := s.Sample(bad); err == nil || !strings.Contains(err.Error(), strconv.Itoa(bad)) {
			t.Errorf("Sample(%d): %v", bad, err)
		}
	}
}

func TestForget(t *testing.T) {
	var s Sampler
	pid := os.Getpid()
	if _, err := s.Sample(pid); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.prev[pid]; !ok {
		t.Fatal("sample not remembered")
	}
	s.Forget(pid)
	if _, ok := s.prev[pid]; ok {
		t.Fatal("Forget kept the pid")
	}
}

func TestParseStat(t *testing.T) {
	line := "1234 (a b) (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 11 0 98765 1000000 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, ok := parseStat([]byte(line))
	if !ok {
		t.Fatal("parse failed")
	}
	want := Stat{PID: 1234, State: 'S', PPID: 1, PGRP: 1234, Session: 1234, Ticks: 250 + 50 + 7 + 3, Threads: 11, Start: 98765, RSS: 2048}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "1234 (x", "1234 (x) S 1 2 3"} {
		if _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func BenchmarkSample(b *testing.B) {
	h := startHelper(b, "parent", false) // a two-process tree, the shape of a typical app
	pid := h.cmd.Process.Pid
	var s Sampler
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSampleSelf(b *testing.B) {
	var s Sampler
	pid := os.Getpid() // several threads: one children file per thread
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sample(pid); err != nil {
			b.Fatal(err)
		}
	}
}
