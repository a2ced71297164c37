package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
)

// corralBin is the absolute, symlink-free path of the test binary, as the
// binary itself sees it (os.Executable).
func corralBin(t *testing.T) string {
	t.Helper()
	bin, err := filepath.EvalSymlinks(filepath.Join(binDir, "corral"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// unitValues returns the values of the unit's key= lines.
func unitValues(unit, key string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// unitWords splits a unit command line or Environment= value into words,
// undoing systemd's double quotes, backslash escapes and %% (enough for the
// units corral writes).
func unitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == '%' && i+1 < len(s) && s[i+1] == '%':
			i++
			w.WriteByte('%')
			inWord = true
		case c == ' ' && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// `startup --print-only` prints a Type=notify unit whose ExecStart runs this
// binary's daemon with --resurrect, plus how to install it; it changes nothing.
func TestStartupPrintOnly(t *testing.T) {
	p, env := testHome(t)
	bin := corralBin(t)
	out := corral(t, env, "startup", "systemd", "--print-only", "--service-name", "corral-test")
	for _, want := range []string{
		"/etc/systemd/system/corral-test.service",
		"\nType=notify\n",
		"\nExecStart=" + bin + " __keeper --foreground --resurrect\n",
		"\nExecReload=" + bin + " reload all\n",
		"CORRAL_HOME=" + p.Home,
		"systemctl daemon-reload",
		"systemctl enable corral-test.service",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("startup output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat("/etc/systemd/system/corral-test.service"); err == nil {
		t.Error("--print-only wrote the unit")
	}
	// PM2's spellings: -n for --service-name, --wait-ip accepted.
	if out := corral(t, env, "startup", "systemd", "--print-only", "-n", "corral-pm2", "--wait-ip"); !strings.Contains(out, "/etc/systemd/system/corral-pm2.service") {
		t.Errorf("startup -n: %s", out)
	}
	// --hp names the user's home; the daemon's state lives in <hp>/.corral.
	out = corral(t, env, "startup", "--dry-run", "--hp", "/srv/app home")
	if !strings.Contains(out, `Environment=`) || !strings.Contains(out, `CORRAL_HOME=/srv/app home/.corral"`) {
		t.Errorf("--hp: %s", out)
	}
	for _, args := range [][]string{{"startup", "upstart"}, {"startup", "--print-only", "--service-name", "bad/name"}} {
		cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
		cmd.Env = env
		if msg, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("corral %s succeeded: %s", strings.Join(args, " "), msg)
		}
	}
}

// The unit's ExecStart, run with its Environment under a NOTIFY_SOCKET,
// resurrects the saved apps and only then sends READY=1.
func TestStartupUnitResurrectsBeforeReady(t *testing.T) {
	nodetest.Node(t)
	p, env := testHome(t)
	app := filepath.Join(filepath.Dir(p.Home), "idle.js")
	if err := os.WriteFile(app, []byte("setInterval(() => {}, 1 << 30);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	corral(t, env, "start", app, "--name", "one", "-i", "2")
	corral(t, env, "start", app, "--name", "two")
	corral(t, env, "save")
	corral(t, env, "kill")

	unit := corral(t, env, "startup", "--print-only")
	execStart := unitValues(unit, "ExecStart")
	if len(execStart) != 1 {
		t.Fatalf("ExecStart lines: %q", execStart)
	}
	argv := unitWords(t, execStart[0])
	// Only the unit's environment: PATH and CORRAL_HOME.
	var unitEnv []string
	for _, v := range unitValues(unit, "Environment") {
		unitEnv = append(unitEnv, unitWords(t, v)...)
	}
	if len(unitEnv) != 2 {
		t.Fatalf("Environment: %q", unitEnv)
	}

	sock := filepath.Join(filepath.Dir(p.Home), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(unitEnv, "NOTIFY_SOCKET="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	notify.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	n, err := notify.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(string(buf[:n]), "READY=1") {
		t.Fatalf("sd_notify got %q", buf[:n])
	}
	// The daemon logged the resurrect before it notified.
	if log, _ := os.ReadFile(p.LogFile); !strings.Contains(string(log), "resurrect: done") {
		t.Errorf("READY=1 before the resurrect was done; corral.log:\n%s", log)
	}
	// Right after READY=1 the saved apps are there.
	var list []struct {
		Name   string `json:"name"`
		PID    int    `json:"pid"`
		PM2Env struct {
			ExecMode string `json:"exec_mode"`
		} `json:"pm2_env"`
	}
	if err := json.Unmarshal([]byte(corral(t, env, "jlist")), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Name+":"+e.PM2Env.ExecMode)
		if e.PID <= 0 {
			t.Errorf("%s has no pid", e.Name)
		}
	}
	if strings.Join(got, " ") != "one:cluster_mode one:cluster_mode two:fork_mode" {
		t.Errorf("after READY=1: %v", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("daemon exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit on SIGTERM")
	}
	for _, e := range list {
		if !gone(e.PID, 5*time.Second) {
			t.Errorf("app %s (pid %d) outlived the daemon", e.Name, e.PID)
		}
	}
}

// As root, startup writes the unit and runs systemctl daemon-reload and
// enable; unstartup disables and removes it. Without systemctl nothing is
// written. systemctl is a fake that records its arguments; the unit goes to a
// temporary directory.
func TestStartupInstallAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, env := testHome(t)
	dir := t.TempDir()
	fakeBin := filepath.Join(dir, "bin")
	unitDir := filepath.Join(dir, "units")
	calls := filepath.Join(dir, "calls.txt")
	for _, d := range []string{fakeBin, unitDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\necho \"$*\" >> '" + calls + "'\n"
	if err := os.WriteFile(filepath.Join(fakeBin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	withPath := func(path string) []string {
		out := []string{"PATH=" + path}
		for _, kv := range env {
			if !strings.HasPrefix(kv, "PATH=") {
				out = append(out, kv)
			}
		}
		return out
	}
	unitPath := filepath.Join(unitDir, "corral-test.service")
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// No systemctl on $PATH: an error, and nothing written.
	out, err := run(withPath(filepath.Join(dir, "empty")), "startup", "systemd", "--unit-dir", unitDir, "--service-name", "corral-test")
	if err == nil || !strings.Contains(out, "systemctl not found") {
		t.Fatalf("startup without systemctl: %v %s", err, out)
	}
	if entries, _ := os.ReadDir(unitDir); len(entries) != 0 {
		t.Fatalf("startup without systemctl wrote %v", entries)
	}

	env = withPath(fakeBin)
	if out, err := run(env, "startup", "systemd", "--unit-dir", unitDir, "--service-name", "corral-test"); err != nil {
		t.Fatalf("startup: %v\n%s", err, out)
	}
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := run(env, "startup", "--print-only", "--service-name", "corral-test")
	if !strings.Contains(want, string(data)) || !strings.Contains(string(data), "ExecStart="+corralBin(t)+" __keeper --foreground --resurrect") {
		t.Errorf("installed unit differs from the printed one:\n%s\nprinted:\n%s", data, want)
	}
	if st, _ := os.Stat(unitPath); st.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v", st.Mode())
	}
	if got, _ := os.ReadFile(calls); string(got) != "daemon-reload\nenable corral-test.service\n" {
		t.Errorf("systemctl calls after startup: %q", got)
	}

	os.Remove(calls)
	if out, err := run(env, "unstartup", "systemd", "--unit-dir", unitDir, "--service-name", "corral-test"); err != nil {
		t.Fatalf("unstartup: %v\n%s", err, out)
	}
	if _, err := os.Stat(unitPath); !os.IsNotExist(err) {
		t.Errorf("unit still there: %v", err)
	}
	if got, _ := os.ReadFile(calls); string(got) != "disable corral-test.service\ndaemon-reload\n" {
		t.Errorf("systemctl calls after unstartup: %q", got)
	}
	if out, err := run(env, "unstartup", "--unit-dir", unitDir, "--service-name", "corral-test"); err == nil || !strings.Contains(out, "no unit") {
		t.Errorf("unstartup of a missing unit: %v %s", err, out)
	}
}
