package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// pm2Bin returns a real PM2, installed with npm into a cached directory ($CORRAL_PM2_CACHE, default
// <repo>/.cache/pm2; version $CORRAL_PM2_VERSION, default 7.0.4). When npm is missing or cannot
// install it (no registry) the test is skipped, saying why, and fails under CI.
func pm2Bin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CORRAL_PM2_CACHE")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), ".cache", "pm2")
	}
	bin := filepath.Join(dir, "node_modules", ".bin", "pm2")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		if nodetest.InCI() {
			t.Fatal("npm is not installed, so no real PM2 can write a dump")
		}
		t.Skip("skipped: npm is not installed, so no real PM2 can write a dump")
	}
	version := os.Getenv("CORRAL_PM2_VERSION")
	if version == "" {
		version = "7.0.4" // the PM2 the import was checked against
	}
	cmd := exec.Command(npm, "install", "--prefix", dir, "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
		"--loglevel=error", "pm2@"+version)
	out, err := runBounded(cmd, 5*time.Minute)
	if err != nil {
		if nodetest.InCI() {
			t.Fatalf("npm could not install pm2@%s: %v\n%s", version, err, ktail(out, 10))
		}
		t.Skipf("skipped: npm could not install pm2@%s (registry unreachable?): %v\n%s", version, err, ktail(out, 10))
	}
	return bin
}

// A dump written by a real PM2 (a cluster app of 2, a fork app with arguments and a cron, a
// stopped app) is imported: shown, started the same way, its unknown keys listed, and saved as an
// ecosystem file that starts the same apps.
func TestImportPM2RealDump(t *testing.T) {
	node := nodetest.Node(t)
	pm2 := pm2Bin(t)
	pm2Home, err := os.MkdirTemp("", "pm2h-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pm2Home)
	var pm2Env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "CORRAL_HOME" && k != "PM2_HOME" && k != "PORT" && k != "PATH" {
			pm2Env = append(pm2Env, kv)
		}
	}
	pm2Env = append(pm2Env, "PM2_HOME="+pm2Home, "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	runPM2 := func(args ...string) string {
		cmd := exec.Command(pm2, args...)
		cmd.Env = pm2Env
		out, err := runBounded(cmd, 2*time.Minute)
		if err != nil {
			t.Fatalf("pm2 %s: %v\n%s", strings.Join(args, " "), err, ktail(out, 20))
		}
		return out
	}
	t.Cleanup(func() {
		cmd := exec.Command(pm2, "kill")
		cmd.Env = pm2Env
		runBounded(cmd, time.Minute)
	})
	port := testutil.FreePort(t)
	dir := t.TempDir()
	eco := filepath.Join(dir, "pm2.config.js")
	health := nodetest.Example(t, "health.js")
	crash := nodetest.Example(t, "crash.js")
	src := fmt.Sprintf(`module.exports = { apps: [
  { name: 'api', script: %q, instances: 2, exec_mode: 'cluster', env: { PORT: %d, GREETING: 'hi' },
    max_memory_restart: '200M', kill_timeout: 4000, node_args: '--max-old-space-size=256' },
  { name: 'worker', script: 'sleep', args: '1000', interpreter: 'none', cron_restart: '0 3 * * *', env: { QUEUE: 'jobs' } },
  { name: 'job', script: %q, autorestart: false },
]};
`, health, port, crash)
	if err := os.WriteFile(eco, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	runPM2("start", eco)
	runPM2("stop", "job")
	runPM2("save")
	runPM2("kill")
	dump := filepath.Join(pm2Home, "dump.pm2")
	// A newer PM2's option that corral does not know, as such a PM2 would save it.
	var procs []map[string]any
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &procs); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p["name"] == "api" {
			p["blue_green"] = true
		}
	}
	raw, _ = json.Marshal(procs)
	if err := os.WriteFile(dump, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	_, env := readmeHome(t)
	env = append(env, "PM2_HOME="+pm2Home) // the default dump is $PM2_HOME/dump.pm2
	saved := filepath.Join(dir, "from-pm2.json")
	out := corral(t, env, "import-pm2", "--save", saved)
	t.Logf("corral import-pm2:\n%s", out)
	for _, want := range []string{
		"api: node " + health + ", 2 instances, cluster",
		"worker: none /usr/bin/sleep 1000, 1 instance, fork",
		"job: node " + crash + ", 1 instance, fork",
		"(PM2: stopped → add, not started)",
		"keys corral does not know, not imported: blue_green (api)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q", want)
		}
	}
	check := func(when string) {
		t.Helper()
		var list []struct {
			Name   string `json:"name"`
			PID    int    `json:"pid"`
			PM2Env struct {
				Status   string `json:"status"`
				ExecMode string `json:"exec_mode"`
				Args     []string
				Env      map[string]any `json:"env"`
			} `json:"pm2_env"`
		}
		if err := json.Unmarshal([]byte(corral(t, env, "jlist")), &list); err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, p := range list {
			got[p.Name] = append(got[p.Name], p.PM2Env.Status+"/"+p.PM2Env.ExecMode)
			if p.Name == "worker" && fmt.Sprint(p.PM2Env.Env["QUEUE"]) != "jobs" {
				t.Errorf("%s: worker env QUEUE = %v", when, p.PM2Env.Env["QUEUE"])
			}
		}
		want := map[string][]string{
			"api":    {"online/cluster_mode", "online/cluster_mode"},
			"worker": {"online/fork_mode"},
			"job":    {"stopped/fork_mode"},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: processes %v, want %v", when, got, want)
		}
		// online is the worker's 'online' (PM2's meaning); its server may bind a moment later.
		var err error
		if !testutil.Eventually(10*time.Second, func() bool {
			err = httpGetOK(fmt.Sprintf("http://127.0.0.1:%d/", port))
			return err == nil
		}) {
			t.Errorf("%s: api: %v", when, err)
		}
	}
	check("after import-pm2")

	// The saved ecosystem file starts the same apps.
	corral(t, env, "delete", "all")
	corral(t, env, "start", saved)
	check("after start " + filepath.Base(saved))
	b, _ := os.ReadFile(saved)
	if strings.Contains(string(b), "PM2_HOME") || !strings.Contains(string(b), `"GREETING": "hi"`) {
		t.Errorf("saved file:\n%s", b)
	}
	st, _ := os.Stat(saved)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("saved file mode %v", st.Mode())
	}
}

// httpGetOK makes one Connection: close GET and wants a 200.
func httpGetOK(url string) error {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
