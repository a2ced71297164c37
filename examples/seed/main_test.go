package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The seed program, built and run for real: N workers come online, a killed worker is reported with
// its signal and replaced, requests are served throughout, and SIGTERM leaves no worker behind.
func TestSeed(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "seed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("primary stopped talking")
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("timed out")
		}
		return ""
	}
	n := runtime.NumCPU()
	if l := next(); l != fmt.Sprintf("Primary cluster setting up %d workers...", n) {
		t.Fatalf("first line %q", l)
	}
	online := regexp.MustCompile(`^Worker (\d+) is online$`)
	var pids []int
	for len(pids) < n {
		m := online.FindStringSubmatch(next())
		if m == nil {
			t.Fatal("expected an online line")
		}
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	getOK := func() {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; {
			res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(b) != "hello world" {
					t.Fatalf("body %q", b)
				}
				return
			}
			if time.Now().After(deadline) { // online comes before listening: retry until it serves
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	getOK()
	syscall.Kill(pids[0], syscall.SIGKILL)
	if l := next(); l != fmt.Sprintf("Worker %d died with code: -1, and signal: killed", pids[0]) {
		t.Fatalf("after SIGKILL: %q", l)
	}
	if l := next(); l != "Starting a new worker" {
		t.Fatalf("%q", l)
	}
	if !online.MatchString(next()) {
		t.Fatal("replacement did not come online")
	}
	getOK()
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("primary exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("primary did not exit within 30s of SIGTERM")
	}
	for _, pid := range pids[1:] {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("worker %d still alive after the primary stopped", pid)
		}
	}
}
