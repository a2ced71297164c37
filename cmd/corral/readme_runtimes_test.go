package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// The README's runtimes block, run as written (bun and deno on PATH, app.mjs the bundled node:http app,
// chat.js the bundled Socket.IO server): every app has 4 online cluster instances that serve, and the
// --sticky app serves Socket.IO's long polling from 16 client addresses without a failure.
func TestReadmeRuntimes(t *testing.T) {
	skipShort(t)
	node := nodetest.Node(t)
	bun, deno := nodetest.Bun(t), nodetest.Deno(t)
	nm := socketIOModules(t)
	cmds := shCommands(readmeBlock(t, loadDoc(t, "README.md"), "runtimes"))
	_, env := readmeHome(t)
	dir := t.TempDir()
	copyFile(t, "testdata/runtimes/app.mjs", filepath.Join(dir, "app.mjs"))
	copyFile(t, "testdata/socketio/server.js", filepath.Join(dir, "chat.js"))
	env = append(env, "PATH="+filepath.Dir(bun)+":"+filepath.Dir(deno)+":"+binDir+":"+os.Getenv("PATH"), "NODE_PATH="+nm)
	if len(cmds) != 3 {
		t.Fatalf("the runtimes block has %d commands; TestReadmeRuntimes checks 3", len(cmds))
	}
	for _, c := range cmds {
		m := regexp.MustCompile(`^corral start (\S+) -i (\d+) .*?(?:--name (\S+))?`).FindStringSubmatch(c.Text)
		if m == nil {
			t.Fatalf("README.md:%d: %q is not a `corral start … -i N` line", c.Line, c.Text)
		}
		port := testutil.FreePort(t)
		out := shRun(t, dir, append(env, "PORT="+strconv.Itoa(port)), c.Text, time.Minute)
		if !strings.Contains(out, "in cluster_mode ("+m[2]+" instances)") {
			t.Fatalf("README.md:%d: %s:\n%s", c.Line, c.Text, out)
		}
		name := strings.TrimSuffix(m[1], filepath.Ext(m[1]))
		if n := regexp.MustCompile(`--name (\S+)`).FindStringSubmatch(c.Text); n != nil {
			name = n[1]
		}
		n, _ := strconv.Atoi(m[2])
		waitOnlineN(t, dir, env, name, n)
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		if !strings.Contains(c.Text, "--sticky") {
			if !testutil.Eventually(20*time.Second, func() bool { _, err := getBody(url); return err == nil }) {
				t.Fatalf("README.md:%d: %s does not serve", c.Line, name)
			}
			continue
		}
		waitAllServing(t, port, n)
		cmd := exec.Command(node, filepath.Join(mustAbs(t, "testdata/socketio"), "client.js"), url)
		cmd.Env = append(env, "CLIENTS=32", "ROUNDS=3")
		res, err := runBounded(cmd, 2*time.Minute)
		if err != nil {
			t.Fatalf("socket.io client: %v\n%s", err, res)
		}
		var r sioResult
		if err := json.Unmarshal([]byte(strings.TrimSpace(res)), &r); err != nil || r.OK != 32 || r.Failed != 0 {
			t.Fatalf("README.md:%d: Socket.IO clients of the --sticky app: %s (%v)", c.Line, res, err)
		}
	}
	shRun(t, dir, env, "corral kill", time.Minute)
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
