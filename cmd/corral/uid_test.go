package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// --uid runs an app as another user with that user's HOME (root only); a directory the user cannot
// enter gives an error that says so.
func TestStartAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nodetest.Node(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	dir, err := os.MkdirTemp("", "corral-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	app := "console.log(`uid=${process.getuid()} home=${process.env.HOME}`); setInterval(() => {}, 1 << 30);\n"
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	corral := func(wd string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "corral"), args...)
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "CORRAL_HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { corral(dir, "kill") })

	if out, err := corral(dir, "start", "app.js", "--name", "asnobody", "--uid", "nobody"); err != nil {
		t.Fatalf("start --uid nobody: %v\n%s", err, out)
	}
	want := "uid=" + nobody.Uid + " home=" + nobody.HomeDir
	logFile := filepath.Join(home, "logs", "asnobody-out.log")
	var b []byte
	if !testutil.Eventually(20*time.Second, func() bool { // no event: the daemon writes the file
		b, _ = os.ReadFile(logFile)
		return strings.Contains(string(b), want)
	}) {
		t.Fatalf("%s holds %q, want %q", logFile, b, want)
	}

	private := t.TempDir() // 0700, root's: nobody cannot enter it
	os.WriteFile(filepath.Join(private, "app.js"), []byte(app), 0o644)
	out, err := corral(private, "start", "app.js", "--name", "locked", "--uid", "nobody")
	if err == nil || !strings.Contains(out, "must be able to enter "+private) {
		t.Fatalf("start in a directory nobody cannot enter: %v\n%s", err, out)
	}
	if out, err := corral(dir, "start", "app.js", "--name", "ghost", "--uid", "no-such-user-here"); err == nil || !strings.Contains(out, "no-such-user-here") {
		t.Fatalf("unknown user: %v\n%s", err, out)
	}
}
