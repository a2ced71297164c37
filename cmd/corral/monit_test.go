package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// tmuxTerm is a tmux server of its own (its socket in a temporary directory) with one pane
// running a shell, for driving a TUI in a real terminal.
type tmuxTerm struct {
	t    *testing.T
	sock string
}

// newTmux starts a w×h tmux pane running sh with env. It skips the test without tmux (fails
// under CI, where .ci/run installs it).
func newTmux(t *testing.T, env []string, w, h int) *tmuxTerm {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux not found on PATH (bash .ci/run setup installs it)")
		}
		t.Skip("tmux not found on PATH (bash .ci/run setup installs it)")
	}
	dir, err := os.MkdirTemp("", "tmux-")
	if err != nil {
		t.Fatal(err)
	}
	tm := &tmuxTerm{t: t, sock: filepath.Join(dir, "s")}
	t.Cleanup(func() {
		exec.Command("tmux", "-S", tm.sock, "kill-server").Run()
		os.RemoveAll(dir)
	})
	cmd := exec.Command("tmux", "-S", tm.sock, "-f", "/dev/null", "new-session", "-d", "-s", "t",
		"-x", strconv.Itoa(w), "-y", strconv.Itoa(h), "env PS1='$ ' sh")
	cmd.Env = append(env, "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	return tm
}

func (tm *tmuxTerm) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys sends tmux key names (Enter, Escape, C-c) or single characters, one send-keys each,
// as a person types.
func (tm *tmuxTerm) keys(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		tm.run("send-keys", "-t", "t", k)
	}
}

// typeText types s literally.
func (tm *tmuxTerm) typeText(s string) {
	tm.t.Helper()
	tm.run("send-keys", "-t", "t", "-l", s)
}

// screen returns what the pane shows now.
func (tm *tmuxTerm) screen() string {
	tm.t.Helper()
	return tm.run("capture-pane", "-p", "-t", "t")
}

// waitScreen waits until cond holds for the screen, failing with the last screen.
func (tm *tmuxTerm) waitScreen(what string, cond func(s string) bool) string {
	tm.t.Helper()
	var s string
	if !testutil.Eventually(30*time.Second, func() bool {
		s = tm.screen()
		return cond(s)
	}) {
		tm.t.Fatalf("timed out waiting for %s; the screen:\n%s", what, s)
	}
	return s
}

func (tm *tmuxTerm) waitFor(text string) string {
	tm.t.Helper()
	return tm.waitScreen(fmt.Sprintf("%q on the screen", text), func(s string) bool { return strings.Contains(s, text) })
}

// jlistPIDs returns the pid of each app name (their first instance).
func jlistPIDs(t *testing.T, env []string) map[string]int {
	t.Helper()
	var procs []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	out := corral(t, env, "jlist")
	if err := json.Unmarshal([]byte(out), &procs); err != nil {
		t.Fatalf("jlist: %v\n%s", err, out)
	}
	pids := map[string]int{}
	for _, p := range procs {
		if _, ok := pids[p.Name]; !ok {
			pids[p.Name] = p.PID
		}
	}
	return pids
}

// `corral monit` in a real 80×24 terminal (tmux): the table shows the running apps, a restart
// from the keyboard changes the pid, the log pane shows a line the app printed while it was
// open, the dashboard says so when the daemon goes away, and q restores the terminal (main
// screen, cooked mode, echo, visible cursor).
func TestMonitInTmux(t *testing.T) {
	nodetest.Node(t)
	p, env := testHome(t)
	dir := filepath.Dir(p.Home)
	ticker := filepath.Join(dir, "ticker.js")
	os.WriteFile(ticker, []byte(`console.log('started ' + process.pid);
process.on('SIGUSR2', () => console.log('usr2 received by ' + process.pid));
setInterval(() => {}, 1000);
`), 0o644)
	idle := filepath.Join(dir, "idle.js")
	os.WriteFile(idle, []byte(`setInterval(() => {}, 1000);`), 0o644)
	corral(t, env, "start", ticker)
	corral(t, env, "start", idle, "-i", "2")

	tm := newTmux(t, env, 80, 24)
	tm.waitFor("$")
	tm.typeText(filepath.Join(binDir, "corral") + " monit; echo MONIT_EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo")
	tm.keys("Enter")

	s := tm.waitScreen("the table with both apps online", func(s string) bool {
		return strings.Contains(s, "ticker") && strings.Contains(s, "idle ×2") && strings.Count(s, "online") >= 3
	})
	for _, col := range []string{"ID", "NAME", "NAMESPACE", "MODE", "PID", "STATUS", "↺", "UPTIME", "CPU", "MEM"} {
		if !strings.Contains(s, col) {
			t.Errorf("column %s missing at 80×24:\n%s", col, s)
		}
	}
	pids := jlistPIDs(t, env)
	old := pids["ticker"]
	if !strings.Contains(s, strconv.Itoa(old)) {
		t.Fatalf("ticker's pid %d not on the screen:\n%s", old, s)
	}

	// Select ticker with the filter; its log pane opens with the lines already printed.
	tm.keys("/")
	tm.typeText("ticker")
	tm.keys("Enter")
	tm.waitFor("started " + strconv.Itoa(old))
	// A line printed now appears live.
	corral(t, env, "sendSignal", "SIGUSR2", "ticker")
	tm.waitFor("usr2 received by " + strconv.Itoa(old))

	// Restart from the keyboard, with its confirmation.
	tm.keys("r")
	tm.waitFor("Restart ticker[0]?")
	tm.keys("y")
	var now int
	testutil.WaitFor(t, 30*time.Second, "a new pid for ticker", func() bool {
		now = jlistPIDs(t, env)["ticker"]
		return now > 0 && now != old
	})
	tm.waitFor("started " + strconv.Itoa(now)) // the new process's first line, live
	tm.waitScreen("the new pid in the table", func(s string) bool {
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "ticker") && strings.Contains(l, " "+strconv.Itoa(now)+" ") && strings.Contains(l, "online") {
				return true
			}
		}
		return false
	})

	// The events pane has the restart.
	tm.keys("Tab")
	tm.waitFor("(restart)")

	// The daemon goes away: the dashboard says so instead of dying.
	corral(t, env, "kill")
	tm.waitFor("daemon")
	tm.waitScreen("the daemon-gone message", func(s string) bool {
		return strings.Contains(s, "the daemon went away") || strings.Contains(s, "daemon is not running")
	})

	tm.keys("q")
	tm.waitFor("MONIT_EXIT=0")
	report := func(s string) string { // the line after MONIT_EXIT=0: stty's icanon and echo flags
		_, after, _ := strings.Cut(s, "MONIT_EXIT=0\n")
		line, _, _ := strings.Cut(after, "\n")
		return strings.TrimSpace(line)
	}
	s = tm.waitScreen("stty's report", func(s string) bool { return report(s) != "" })
	if got := report(s); got != "icanon echo" {
		t.Errorf("stty after q reports %q, want \"icanon echo\" (the terminal was left in raw mode):\n%s", got, s)
	}
	if strings.Contains(s, "NAMESPACE") {
		t.Errorf("the dashboard is still on the screen after q (alternate screen not left):\n%s", s)
	}
	if got := strings.TrimSpace(tm.run("display-message", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}")); got != "0 1" {
		t.Errorf("alternate_on cursor_flag = %q after q, want \"0 1\"", got)
	}

	// SIGTERM and SIGHUP restore the terminal too (the daemon is gone: monit now says so at once).
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		corral(t, env, "ping") // a daemon again
		tm.typeText("clear; " + filepath.Join(binDir, "corral") + " monit; echo MONIT_EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo")
		tm.keys("Enter")
		tm.waitFor("NAMESPACE")
		shell, _ := strconv.Atoi(strings.TrimSpace(tm.run("display-message", "-p", "-t", "t", "#{pane_pid}")))
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", shell, shell))
		pid, err := strconv.Atoi(strings.TrimSpace(string(kids)))
		if err != nil {
			t.Fatalf("the pane's shell %d has children %q, want monit alone", shell, kids)
		}
		syscall.Kill(pid, sig)
		s = tm.waitScreen("stty's report after "+sig.String(), func(s string) bool { return report(s) != "" })
		if got := report(s); got != "icanon echo" {
			t.Errorf("after %v: stty reports %q, want \"icanon echo\":\n%s", sig, got, s)
		}
		if got := strings.TrimSpace(tm.run("display-message", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}")); got != "0 1" {
			t.Errorf("after %v: alternate_on cursor_flag = %q, want \"0 1\"", sig, got)
		}
	}
}

// Without a daemon, monit says so and exits 1 (it does not start one, and touches no terminal).
func TestMonitWithoutDaemon(t *testing.T) {
	p, env := testHome(t)
	cmd := exec.Command(filepath.Join(binDir, "corral"), "monit")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the corral daemon is not running") {
		t.Fatalf("monit without a daemon: %v\n%s", err, out)
	}
	if _, err := os.Stat(p.Socket); !os.IsNotExist(err) {
		t.Fatalf("monit started a daemon")
	}
}

// On a terminal, start of many instances, reload and scale print a line per instance step;
// piped, their output is what it always was.
func TestProgressOnATerminal(t *testing.T) {
	nodetest.Node(t)
	p, env := testHome(t)
	dir := filepath.Dir(p.Home)
	srv := filepath.Join(dir, "srv.js")
	os.WriteFile(srv, []byte(`require('http').createServer((q, s) => s.end('ok\n')).listen(0);`), 0o644)
	tm := newTmux(t, env, 120, 50)
	tm.waitFor("$")
	bin := filepath.Join(binDir, "corral")
	tm.typeText(fmt.Sprintf("clear; %s start %s -i 2 --name srv; %s reload srv; echo END-1", bin, srv, bin))
	tm.keys("Enter")
	s := tm.waitScreen("END-1", func(s string) bool { return hasLine(s, "END-1") })
	for _, want := range []string{
		"[corral] ✓ srv[0] online (pid ", "[corral] ✓ srv[1] online (pid ",
		"[corral] ⟳ srv[0] starting a replacement", "[corral] ⟳ srv[1] done: pid ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("%q missing on the terminal:\n%s", want, s)
		}
	}
	if i, j := strings.Index(s, "✓ srv[1] online"), strings.Index(s, "[corral] Done."); i < 0 || j < i {
		t.Errorf("the per-instance progress should come before Done.:\n%s", s)
	}

	out := filepath.Join(dir, "out.txt")
	tm.typeText(fmt.Sprintf("clear; %s reload srv > %s; %s scale srv 3 >> %s; echo END-2", bin, out, bin, out))
	tm.keys("Enter")
	tm.waitScreen("END-2", func(s string) bool { return hasLine(s, "END-2") })
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "⟳") || strings.Contains(string(data), "online (pid") {
		t.Errorf("progress lines in redirected output:\n%s", data)
	}
	if !strings.HasPrefix(string(data), "[corral] [srv](0) ✓\n[corral] [srv](1) ✓\n") || !strings.Contains(string(data), "[corral] Scaling srv to 3\n") {
		t.Errorf("redirected output changed:\n%s", data)
	}

	// resurrect, on a terminal, after the daemon and its apps are gone.
	corral(t, env, "save")
	corral(t, env, "kill")
	tm.typeText(fmt.Sprintf("clear; %s resurrect; echo END-3", bin))
	tm.keys("Enter")
	s = tm.waitScreen("END-3", func(s string) bool { return hasLine(s, "END-3") })
	for _, want := range []string{"[corral] ✓ srv[0] online (pid ", "[corral] ✓ srv[2] online (pid ", "[corral] Restored srv"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q missing on the terminal after resurrect:\n%s", want, s)
		}
	}
	corral(t, env, "kill")
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
