package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// The README's Dashboards block, run: `corral monit` (and its alias) in a real terminal (tmux)
// shows the running app and quits on q; `corral events` prints the past events then follows
// until interrupted; `corral events <app> --nostream --json` prints JSON lines of that app only.
func TestReadmeDashboards(t *testing.T) {
	skipShort(t)
	nodetest.Node(t)
	readme := loadDoc(t, "README.md")
	cmds := shCommands(readmeBlock(t, readme, "dashboards"))
	home, env := readmeHome(t)
	dir := filepath.Dir(home)
	app := filepath.Join(dir, "web.js")
	os.WriteFile(app, []byte(`console.log('web up'); setInterval(() => {}, 1000);`), 0o644)
	shRun(t, dir, env, "corral start web.js --name web", 60*time.Second)
	shRun(t, dir, env, "corral restart web", 60*time.Second) // something for the feed

	monitRE := regexp.MustCompile(`^corral (monit|dashboard)$`)
	followRE := regexp.MustCompile(`^corral events$`)
	jsonRE := regexp.MustCompile(`^corral events (\S+) --nostream --json$`)
	ran := map[string]bool{}
	for _, c := range cmds {
		t.Logf("README.md:%d: %s", c.Line, c.Text)
		switch {
		case monitRE.MatchString(c.Text):
			ran["monit"] = true
			tm := newTmux(t, env, 80, 24)
			tm.waitFor("$")
			tm.typeText(c.Text + "; echo EXIT=$?")
			tm.keys("Enter")
			tm.waitScreen("web online in the table", func(s string) bool {
				return strings.Contains(s, "web") && strings.Contains(s, "online") && strings.Contains(s, "NAMESPACE")
			})
			tm.keys("q")
			tm.waitFor("EXIT=0")
			if m := regexp.MustCompile(`corral (\w+)`).FindStringSubmatch(c.Comment); m != nil { // "or: corral dashboard"
				tm.typeText("clear; corral " + m[1] + "; echo EXIT2=$?")
				tm.keys("Enter")
				tm.waitFor("NAMESPACE")
				tm.keys("q")
				tm.waitFor("EXIT2=0")
			}
		case followRE.MatchString(c.Text):
			ran["events"] = true
			cmd := exec.Command("bash", "-c", "exec "+c.Text)
			cmd.Dir, cmd.Env = dir, env
			p := testutil.Start(t, cmd)
			p.WaitLine(t, 30*time.Second, "web's restart in the past events", func(l string) bool {
				return strings.Contains(l, "web[0]") && strings.Contains(l, "restart") && strings.Contains(l, "(user)")
			})
			shRun(t, dir, env, "corral stop web", 60*time.Second)
			p.WaitLine(t, 30*time.Second, "the stop, followed live", func(l string) bool {
				return strings.Contains(l, "web[0]") && strings.Contains(l, "→ stopped")
			})
			cmd.Process.Signal(syscall.SIGINT)
			if err := p.Wait(t, 20*time.Second); err != nil {
				t.Errorf("%s: exit after ctrl+c: %v", c.Text, err)
			}
			shRun(t, dir, env, "corral start web", 60*time.Second)
		case jsonRE.MatchString(c.Text):
			ran["json"] = true
			out := shRun(t, dir, env, c.Text, 60*time.Second)
			app := jsonRE.FindStringSubmatch(c.Text)[1]
			lines := strings.Split(strings.TrimSpace(out), "\n")
			for _, l := range lines {
				var e struct {
					Type string `json:"type"`
					App  string `json:"app"`
				}
				if err := json.Unmarshal([]byte(l), &e); err != nil || e.App != app || e.Type == "" {
					t.Errorf("%s: line %q: %v", c.Text, l, err)
				}
			}
			if len(lines) < 3 {
				t.Errorf("%s: %d events:\n%s", c.Text, len(lines), out)
			}
		default:
			t.Errorf("README.md:%d: %q: a command TestReadmeDashboards does not know", c.Line, c.Text)
		}
	}
	for _, k := range []string{"monit", "events", "json"} {
		if !ran[k] {
			t.Errorf("the Dashboards block has no %s command any more: update TestReadmeDashboards", k)
		}
	}
}
