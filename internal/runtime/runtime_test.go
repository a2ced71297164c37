package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/runtime"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// In RUNTIME_TEST mode the test binary is the container entrypoint: Init, then Run with the apps the
// environment describes.
func TestMain(m *testing.M) {
	if os.Getenv("RUNTIME_TEST") == "" {
		os.Exit(m.Run())
	}
	if code, ok := runtime.Init(); ok {
		os.Exit(code)
	}
	port, _ := strconv.Atoi(os.Getenv("APP_PORT"))
	apps := []appspec.App{
		{Name: "web", Script: os.Getenv("NODE_BIN"), Args: []string{os.Getenv("GRACEFUL_JS")}, Interpreter: "none",
			Instances: 2, ExecMode: "fork", Env: map[string]string{"PORT": strconv.Itoa(port), "HOST": "127.0.0.1", "PATH": os.Getenv("PATH")},
			IncrementVar: "PORT"},
		{Name: "orphaner", Script: os.Getenv("ORPHAN_SH"), Interpreter: "none",
			Env: map[string]string{"ORPHAN_PID_FILE": os.Getenv("ORPHAN_PID_FILE"), "PATH": os.Getenv("PATH")}},
	}
	code := runtime.Run(context.Background(), apps, runtime.Options{ProbeAddr: "127.0.0.1:0", Ready: func(addr string) {
		fmt.Printf("PROBE %s\n", addr)
	}})
	os.Exit(code)
}

func TestRuntimeAsEntrypoint(t *testing.T) {
	node := nodetest.Node(t)
	dir := t.TempDir()
	graceful, _ := filepath.Abs("../../examples/node/graceful.js")
	orphan, _ := filepath.Abs("testdata/orphan.sh")
	port := freePortPair(t) // web's two instances listen on port and port+1 (increment_var)
	pidFile := filepath.Join(dir, "orphan.pid")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNTIME_TEST=1", "NODE_BIN="+node, "GRACEFUL_JS="+graceful, "ORPHAN_SH="+orphan,
		"ORPHAN_PID_FILE="+pidFile, "APP_PORT="+strconv.Itoa(port), "CORRAL_HOME="+dir)
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
	var all []string
	waitLine := func(pred func(string) bool, what string) string {
		t.Helper()
		for _, l := range all {
			if pred(l) {
				return l
			}
		}
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("runtime output ended waiting for %s; got %q", what, all)
				}
				all = append(all, l)
				if pred(l) {
					return l
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("timed out waiting for %s; got %q", what, all)
			}
		}
	}
	probe := strings.TrimPrefix(waitLine(func(l string) bool { return strings.HasPrefix(l, "PROBE ") }, "probe"), "PROBE ")
	// Output is prefixed with the app name.
	waitLine(func(l string) bool {
		return strings.Contains(l, "|web | graceful.js") && strings.Contains(l, "listening")
	}, "web listening")
	waitLine(func(l string) bool { return strings.HasSuffix(l, "|orphaner | orphan.sh started") }, "orphaner")

	get := func(path string) (int, string) {
		res, err := http.Get("http://" + probe + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var sb strings.Builder
		bufio.NewReader(res.Body).WriteTo(&sb)
		return res.StatusCode, sb.String()
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d %s", code, body)
	}
	// /readyz turns 200 once every instance is online.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body := get("/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never ready: %s", body)
		}
	}
	res, err := http.Get("http://" + probe + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	up := fams["corral_process_up"]
	if up == nil || len(up.Metric) != 3 {
		t.Fatalf("corral_process_up: %v", up)
	}
	for _, mt := range up.Metric {
		if mt.GetGauge().GetValue() != 1 {
			t.Fatalf("process not up: %v", mt)
		}
	}
	if fams["corral_process_memory_bytes"] == nil || fams["corral_process_restarts_total"] == nil {
		t.Fatalf("metric families: %v", keys(fams))
	}

	// The orphaned grandchild is reaped once it exits: its /proc entry disappears (a zombie keeps one).
	var orphanPid int
	for deadline := time.Now().Add(10 * time.Second); orphanPid == 0; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		orphanPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("no orphan pid")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphanPid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphanPid))
			t.Fatalf("orphan %d not reaped: %s", orphanPid, st)
		}
	}

	// SIGTERM: every app is stopped gracefully and the runtime exits 0, leaving no process.
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(func(l string) bool { return strings.Contains(l, "shutting down (SIGINT)") }, "graceful stop of web")
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("runtime exit: %v", err)
	}
	if err := syscall.Kill(-cmd.Process.Pid, 0); err != syscall.ESRCH {
		t.Fatalf("processes left in the runtime's group after exit: %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// freePortPair returns a port p such that p and p+1 are both free right now.
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		ln.Close()
		if err == nil {
			ln2.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}
