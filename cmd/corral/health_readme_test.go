package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// The README's "Health checks and start order" section, run: the ecosystem file and notify.py
// blocks are written as files, and every command of its shell block runs and is checked; the
// broken reload runs under Connection: close load, and its figures are logged.
func TestReadmeHealthChecks(t *testing.T) {
	skipShort(t)
	nodetest.Node(t)
	needTool(t, "python3") // for notify.py
	readme := loadDoc(t, "README.md")
	dir := t.TempDir()
	dbPort, webPort, apiPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	ports := strings.NewReplacer("5433", strconv.Itoa(dbPort), "3000", strconv.Itoa(webPort), "3001", strconv.Itoa(apiPort))
	eco := readmeBlock(t, readme, "health-eco").Text
	if !strings.Contains(eco, "5433") || !strings.Contains(eco, "3000") {
		t.Fatal("the ecosystem block's ports changed: update TestReadmeHealthChecks")
	}
	write := func(name, text string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("ecosystem.config.js", ports.Replace(eco), 0o644)
	write("notify.py", readmeBlock(t, readme, "health-notify").Text, 0o644)
	write("migrate.sh", "echo migrated\n", 0o755)
	src, err := os.ReadFile(nodetest.Example(t, "health.js"))
	if err != nil {
		t.Fatal(err)
	}
	write("health.js", string(src), 0o644)
	_, env := readmeHome(t)

	type proc struct {
		Name   string `json:"name"`
		PID    int    `json:"pid"`
		PM2Env struct {
			Status    string `json:"status"`
			ExitCode  int    `json:"exit_code"`
			Readiness string `json:"readiness"`
		} `json:"pm2_env"`
	}
	jlist := func() map[string][]proc {
		var list []proc
		if err := json.Unmarshal([]byte(corral(t, env, "jlist")), &list); err != nil {
			t.Fatal(err)
		}
		m := map[string][]proc{}
		for _, p := range list {
			m[p.Name] = append(m[p.Name], p)
		}
		return m
	}
	// events returns "<app> <status>" for each status change so far.
	events := func() []string {
		out := corral(t, env, "events", "--nostream", "--json")
		var seq []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var e struct {
				Type, App, To string
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.Type == "status" {
				seq = append(seq, e.App+" "+e.To)
			}
		}
		return seq
	}
	before := func(seq []string, a, b string) bool {
		ia, ib := -1, -1
		for i, s := range seq {
			if s == a && ia < 0 {
				ia = i
			}
			if s == b && ib < 0 {
				ib = i
			}
		}
		return ia >= 0 && ib >= 0 && ia < ib
	}

	cmds := shCommands(readmeBlock(t, readme, "health"))
	if len(cmds) != 6 {
		t.Fatalf("the health block has %d commands, TestReadmeHealthChecks checks 6: update it", len(cmds))
	}
	run := func(c shCmd) (string, error) {
		cmd := exec.Command("bash", "-c", ports.Replace(c.Text))
		cmd.Dir, cmd.Env = dir, env
		return runBounded(cmd, 2*time.Minute)
	}
	for _, c := range cmds {
		t.Logf("README.md:%d: %s", c.Line, c.Text)
		switch {
		case c.Text == "corral start ecosystem.config.js":
			if out, err := run(c); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			l := jlist()
			if len(l["db"]) != 1 || l["db"][0].PM2Env.Status != "online" || l["db"][0].PM2Env.Readiness != "ready" ||
				len(l["migrate"]) != 1 || l["migrate"][0].PM2Env.Status != "stopped" || l["migrate"][0].PM2Env.ExitCode != 0 ||
				len(l["web"]) != 2 || l["web"][0].PM2Env.Status != "online" || l["web"][1].PM2Env.Status != "online" {
				t.Fatalf("after start: %+v", l)
			}
			seq := events()
			if !before(seq, "db online", "migrate launching") || !before(seq, "migrate stopped", "web launching") {
				t.Errorf("start order: %q", seq)
			}
		case c.Text == "corral show web":
			out, err := run(c)
			if err != nil || !regexpMatch(`readiness\s+│ ready`, out) || !strings.Contains(out, "online") {
				t.Errorf("show web: %v\n%s", err, out)
			}
		case strings.HasPrefix(c.Text, "BROKEN=1 corral reload web"):
			old := map[string]bool{}
			for _, p := range jlist()["web"] {
				old[strconv.Itoa(p.PID)] = true
			}
			load := startCloseLoad(fmt.Sprintf("http://127.0.0.1:%d/", webPort), 4)
			load.waitOK(t, 50)
			out, err := run(c)
			sent, failed, servedBy, firstErr := load.stop()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 || !strings.Contains(out, "keeps serving") || !strings.Contains(out, "503") {
				t.Fatalf("the broken reload: %v (want exit status 1 with the probe's output)\n%s", err, out)
			}
			t.Logf("broken deploy: %d requests during the reload, %d failed, served by %v (old workers %v)\n%s",
				sent, failed, servedBy, old, strings.TrimSpace(out))
			if failed > 0 || sent == 0 {
				t.Errorf("%d of %d requests failed; first: %v", failed, sent, firstErr)
			}
			for pid := range servedBy {
				if !old[pid] {
					t.Errorf("pid %s, not an old worker, served requests", pid)
				}
			}
			for _, p := range jlist()["web"] {
				if !old[strconv.Itoa(p.PID)] || p.PM2Env.Status != "online" {
					t.Errorf("after the broken reload: %+v", p)
				}
			}
		case c.Text == "corral stop ecosystem.config.js":
			if out, err := run(c); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			seq := events()
			if !before(seq, "web stopped", "db stopping") {
				t.Errorf("stop order: %q", seq)
			}
		case strings.Contains(c.Text, "--readiness-http"):
			if out, err := run(c); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if p := jlist()["api"]; len(p) != 1 || p[0].PM2Env.Status != "online" || p[0].PM2Env.Readiness != "ready" {
				t.Errorf("api: %+v", p)
			}
		case strings.Contains(c.Text, "notify.py"):
			began := time.Now()
			out, err := run(c)
			took := time.Since(began)
			if p := jlist()["notify"]; err != nil || len(p) != 1 || p[0].PM2Env.Status != "online" || took > 20*time.Second {
				t.Errorf("notify.py: %v after %v: %+v\n%s", err, took, p, out)
			}
			t.Logf("notify.py online after %v", took.Round(time.Millisecond))
		default:
			t.Errorf("README.md:%d: %q: no check in TestReadmeHealthChecks", c.Line, c.Text)
		}
	}
	corral(t, env, "kill")
}

func regexpMatch(re, s string) bool {
	ok, _ := regexp.MatchString(re, s)
	return ok
}

// closeLoad sends Connection: close GETs from n clients until stopped.
type closeLoad struct {
	mu       sync.Mutex
	sent     int
	failed   int
	ok       int
	servedBy map[string]int
	firstErr error
	done     chan struct{}
	wg       sync.WaitGroup
}

func startCloseLoad(url string, n int) *closeLoad {
	l := &closeLoad{servedBy: map[string]int{}, done: make(chan struct{})}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for range n {
		l.wg.Go(func() {
			for {
				select {
				case <-l.done:
					return
				default:
				}
				resp, err := client.Get(url)
				pid := ""
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					pid = resp.Header.Get("X-Worker-Pid")
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %s from pid %s", resp.Status, pid)
					}
				}
				l.mu.Lock()
				l.sent++
				if err != nil {
					l.failed++
					if l.firstErr == nil {
						l.firstErr = err
					}
				} else {
					l.ok++
					l.servedBy[pid]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitOK waits until n requests succeeded (polling the counter: the load is the event).
func (l *closeLoad) waitOK(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l.mu.Lock()
		ok := l.ok
		l.mu.Unlock()
		if ok >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("load: only %d requests succeeded in 20s", ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *closeLoad) stop() (sent, failed int, servedBy map[string]int, firstErr error) {
	close(l.done)
	l.wg.Wait()
	return l.sent, l.failed, l.servedBy, l.firstErr
}

// The README's "Moving from PM2" block, run against a real PM2 running an app: each command, in
// order, with PM2_HOME private.
func TestReadmeMovingFromPM2(t *testing.T) {
	skipShort(t)
	node := nodetest.Node(t)
	pm2 := pm2Bin(t)
	readme := loadDoc(t, "README.md")
	cmds := shCommands(readmeBlock(t, readme, "pm2import"))
	dir := t.TempDir()
	pm2Home, err := os.MkdirTemp("", "pm2h-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pm2Home)
	_, env := readmeHome(t)
	var clean []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "PM2_HOME" {
			clean = append(clean, kv)
		}
	}
	env = append(clean, "PM2_HOME="+pm2Home,
		"PATH="+binDir+string(os.PathListSeparator)+filepath.Dir(pm2)+string(os.PathListSeparator)+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	sh := func(line string) (string, error) {
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir, cmd.Env = dir, env
		return runBounded(cmd, 2*time.Minute)
	}
	t.Cleanup(func() { sh("pm2 kill") })
	port := testutil.FreePort(t)
	health := nodetest.Example(t, "health.js")
	if out, err := sh(fmt.Sprintf("PORT=%d pm2 start %s --name shop -i 2", port, health)); err != nil {
		t.Fatalf("pm2 start: %v\n%s", err, out)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	procs := func() string {
		out, err := sh("corral jlist")
		if err != nil {
			t.Fatalf("jlist: %v\n%s", err, out)
		}
		var list []struct {
			Name   string `json:"name"`
			PM2Env struct {
				Status string `json:"status"`
			} `json:"pm2_env"`
		}
		json.Unmarshal([]byte(out), &list)
		var s []string
		for _, p := range list {
			s = append(s, p.Name+":"+p.PM2Env.Status)
		}
		return strings.Join(s, " ")
	}
	for _, c := range cmds {
		t.Logf("README.md:%d: %s", c.Line, c.Text)
		out, err := sh(c.Text)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.Text, err, out)
		}
		switch c.Text {
		case "pm2 save":
		case "corral import-pm2 --dry-run":
			if !strings.Contains(out, "shop: node "+health+", 2 instances, cluster") || procs() != "" {
				t.Errorf("dry run: %s\nprocesses: %s", out, procs())
			}
		case "pm2 kill":
		case "corral import-pm2 --save ecosystem.pm2.json":
			if got := procs(); got != "shop:online shop:online" {
				t.Errorf("after import: %q\n%s", got, out)
			}
			if err := httpGetOK(url); err != nil {
				t.Error(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "ecosystem.pm2.json")); err != nil {
				t.Error(err)
			}
		case "corral save":
			if !strings.Contains(out, "shop (2 instances, cluster)") {
				t.Errorf("save: %s", out)
			}
		default:
			t.Errorf("README.md:%d: %q: no check in TestReadmeMovingFromPM2", c.Line, c.Text)
		}
	}
	sh("corral kill")
}
