package container_test

import (
	"bufio"
	"context"
	"fmt"
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
	"github.com/corralhq/corral/internal/container"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// In RUNTIME_TEST mode the test binary is the container entrypoint: Init, then Run with the apps the
// environment describes.
func TestMain(m *testing.M) {
	if os.Getenv("RUNTIME_TEST") == "" {
		os.Exit(m.Run())
	}
	if code, ok := container.Init(); ok {
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
	code := container.Run(context.Background(), apps, container.Options{ProbeAddr: "127.0.0.1:0", Ready: func(addr string) {
		fmt.Printf("PROBE %s\n", addr)
	}})
	os.Exit(code)
}

func TestRuntimeAsEntrypoint(t *testing.T) {
	node := nodetest.Node(t)
	dir := t.TempDir()
	graceful := nodetest.Example(t, "graceful.js")
	orphan, _ := filepath.Abs("testdata/orphan.sh")
	port := testutil.FreePortRun(t, 2) // web's two instances listen on port and port+1 (increment_var)
	pidFile := filepath.Join(dir, "orphan.pid")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNTIME_TEST=1", "NODE_BIN="+node, "GRACEFUL_JS="+graceful, "ORPHAN_SH="+orphan,
		"ORPHAN_PID_FILE="+pidFile, "APP_PORT="+strconv.Itoa(port), "CORRAL_HOME="+dir)
	p := testutil.Start(t, cmd)
	const timeout = 20 * time.Second
	probe := strings.TrimPrefix(p.WaitPrefix(t, timeout, "PROBE "), "PROBE ")
	// Output is prefixed with the app name.
	p.WaitLine(t, timeout, "web listening", func(l string) bool {
		return strings.Contains(l, "|web | graceful.js") && strings.Contains(l, "listening")
	})
	p.WaitLine(t, timeout, "orphaner started", func(l string) bool { return strings.HasSuffix(l, "|orphaner | orphan.sh started") })

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
	// /readyz turns 200 once every instance is online (polled: the probe is the interface under test).
	var body string
	if !testutil.Eventually(timeout, func() bool {
		var code int
		code, body = get("/readyz")
		return code == 200
	}) {
		t.Fatalf("/readyz never ready: %s", body)
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
	// Neither has an event to wait on: the pid file is written by a process the test does not own, and
	// reaping shows only as the /proc entry going away.
	var orphanPid int
	testutil.WaitFor(t, 10*time.Second, "the orphan's pid file", func() bool {
		b, _ := os.ReadFile(pidFile)
		orphanPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return orphanPid != 0
	})
	if !testutil.Eventually(10*time.Second, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", orphanPid))
		return os.IsNotExist(err)
	}) {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphanPid))
		t.Fatalf("orphan %d not reaped: %s", orphanPid, st)
	}

	// SIGTERM: every app is stopped gracefully and the runtime exits 0, leaving no process.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, timeout, "graceful stop of web", func(l string) bool { return strings.Contains(l, "shutting down (SIGINT)") })
	if err := p.Wait(t, 30*time.Second); err != nil {
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
