package drain

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
)

func TestInstall(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, Dir)
	p, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, script) {
		t.Fatalf("installed script differs (%v)", err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, p: 0o600} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
	}
	// Again: the same path, the file kept.
	if p2, err := Install(dir); err != nil || p2 != p {
		t.Fatalf("second Install: %q, %v; want %q", p2, err, p)
	}
	// A tampered file is replaced.
	if err := os.WriteFile(p, []byte("console.log('evil')"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, script) {
		t.Error("a modified script was kept")
	}
	// The file as a symlink: replaced by a regular file, the link's target untouched.
	target := filepath.Join(home, "target.js")
	os.WriteFile(target, []byte("x"), 0o600)
	os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(p); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("the script is still a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "x" {
		t.Error("the symlink's target was written")
	}
}

func TestInstallRefusesUnsafeDirs(t *testing.T) {
	home := t.TempDir()
	real := filepath.Join(home, "real")
	os.Mkdir(real, 0o700)
	link := filepath.Join(home, "link")
	os.Symlink(real, link)
	if _, err := Install(link); err == nil {
		t.Error("Install into a symlinked dir succeeded")
	}
	open := filepath.Join(home, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if _, err := Install(open); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("Install into a world-writable dir: %v", err)
	}
}

func TestEnv(t *testing.T) {
	e := Env("/s/drain.js", map[string]string{}, Config{Timeout: 1500 * time.Millisecond, Idle: -1})
	if e["NODE_OPTIONS"] != "--require /s/drain.js" {
		t.Errorf("NODE_OPTIONS %q", e["NODE_OPTIONS"])
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(e["CORRAL_DRAIN"]), &c); err != nil || c["t"] != 1500.0 || c["o"] != nil || c["i"] != nil {
		t.Errorf("CORRAL_DRAIN %q (%v)", e["CORRAL_DRAIN"], err)
	}
	e = Env(`/a dir/"q"\x.js`, map[string]string{"NODE_OPTIONS": "--max-old-space-size=64"}, Config{Timeout: time.Second, Idle: 200 * time.Millisecond})
	if want := `--require "/a dir/\"q\"\\x.js" --max-old-space-size=64`; e["NODE_OPTIONS"] != want {
		t.Errorf("NODE_OPTIONS %q, want %q", e["NODE_OPTIONS"], want)
	}
	json.Unmarshal([]byte(e["CORRAL_DRAIN"]), &c)
	if c["o"] != "--max-old-space-size=64" || c["i"] != 200.0 {
		t.Errorf("CORRAL_DRAIN %q", e["CORRAL_DRAIN"])
	}
}

func TestParseReport(t *testing.T) {
	r, ok := ParseReport([]byte(`{"corral_drain":{"drained":3,"cut":1,"ms":40}}`))
	if !ok || r != (Report{Drained: 3, Cut: 1, Ms: 40}) {
		t.Errorf("%+v %v", r, ok)
	}
	for _, s := range []string{`"ready"`, `{"corral_drain":null}`, `{"corral_drain":`, `{"other":1}`} {
		if _, ok := ParseReport([]byte(s)); ok {
			t.Errorf("%s taken for a report", s)
		}
	}
}

// TestScriptOnNodeLines loads the script into Node on every line and checks what the app sees:
// its own NODE_OPTIONS back, no CORRAL_DRAIN, no output, no signal listener before a server
// listens; and, with a server, that SIGINT without a listener of the app's still kills the
// process by SIGINT (after the drain), and that a SIGINT listener of the app's runs once the
// drain is done, with the server closed and its close() callback called without an error.
func TestScriptOnNodeLines(t *testing.T) {
	lines := nodetest.Lines(t)
	dir := t.TempDir()
	path, err := Install(filepath.Join(dir, Dir))
	if err != nil {
		t.Fatal(err)
	}
	for major, node := range lines {
		t.Run("node"+major, func(t *testing.T) {
			env := func(user map[string]string) []string {
				e := Env(path, user, Config{Timeout: 2 * time.Second, Idle: 100 * time.Millisecond})
				out := os.Environ()
				for k, v := range user {
					out = append(out, k+"="+v)
				}
				return append(out, "NODE_OPTIONS="+e["NODE_OPTIONS"], "CORRAL_DRAIN="+e["CORRAL_DRAIN"])
			}
			probe := `console.log(JSON.stringify({o: process.env.NODE_OPTIONS === undefined ? null : process.env.NODE_OPTIONS, d: process.env.CORRAL_DRAIN || null, s: process.listenerCount('SIGINT') + process.listenerCount('SIGTERM')}))`
			cmd := exec.Command(node, "-e", probe)
			cmd.Env = env(map[string]string{"NODE_OPTIONS": "--no-warnings"})
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != `{"o":"--no-warnings","d":null,"s":0}` {
				t.Errorf("what the app sees: %s (%v)", out, err)
			}
			cmd = exec.Command(node, "-e", probe)
			cmd.Env = env(map[string]string{})
			out, _ = cmd.CombinedOutput()
			if strings.TrimSpace(string(out)) != `{"o":null,"d":null,"s":0}` {
				t.Errorf("without NODE_OPTIONS of the user's: %s", out)
			}

			server := `const s = require('http').createServer((q, r) => r.end('ok')).listen(0, () => console.log('listening'));`
			// No SIGINT listener of the app's: killed by SIGINT, as without the drain.
			cmd = exec.Command(node, "-e", server)
			cmd.Env = env(map[string]string{})
			var buf syncBuffer
			cmd.Stdout, cmd.Stderr = &buf, &buf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &buf, "listening")
			cmd.Process.Signal(syscall.SIGINT)
			err = cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
				t.Errorf("SIGINT without a handler: %v, want killed by SIGINT; output %q", err, buf.String())
			}
			if buf.String() != "listening\n" {
				t.Errorf("output %q: the drain printed something", buf.String())
			}

			// A handler of the app's runs after the drain; close(cb) calls cb without an error.
			cmd = exec.Command(node, "-e", server+`process.on('SIGINT', () => { console.log('handler, listening=' + s.listening); s.close((err) => { console.log('closed ' + (err ? err.code : 'ok')); process.exit(7); }); });`)
			cmd.Env = env(map[string]string{})
			buf.Reset()
			cmd.Stdout, cmd.Stderr = &buf, &buf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, &buf, "listening")
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 7 || buf.String() != "listening\nhandler, listening=false\nclosed ok\n" {
				t.Errorf("SIGINT with a handler: exit %d, output %q", code, buf.String())
			}
		})
	}
}
