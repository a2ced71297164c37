package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// TestReadmeDrainRecipes runs every `corral start` line of the README's drain recipes for other
// languages (the block that begins "# Other languages") for real: the Go cluster program
// (examples/seed), gunicorn and uvicorn under --listen with the bundled wsgi.py/asgi.py. Each is
// reloaded twice under keep-alive load (8 connections, POSTs, never retried by the client): the
// Go and gunicorn recipes must fail no request; uvicorn, which closes idle keep-alive connections
// when it stops (the README says so), must fail none on a new connection.
func TestReadmeDrainRecipes(t *testing.T) {
	skipShort(t)
	b := readmeBlock(t, loadDoc(t, "README.md"), "drainrecipes")
	dir := t.TempDir()
	copyDir(t, "testdata/readme", dir)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "server"), "./examples/seed")
	build.Dir = moduleRoot(t)
	if out, err := runBounded(build, 5*time.Minute); err != nil {
		t.Fatalf("build examples/seed: %v\n%s", err, out)
	}
	n := 0
	for i, line := range strings.Split(b.Text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "corral start ") {
			continue
		}
		n++
		lineNo := b.Line + 1 + i
		tool := "go"
		for _, x := range []string{"gunicorn", "uvicorn"} {
			if strings.Contains(line, x) {
				tool = x
			}
		}
		t.Run(tool, func(t *testing.T) {
			if tool != "go" {
				if _, err := exec.LookPath(tool); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatalf("%s not found on PATH; run bash .ci/run setup", tool)
					}
					t.Skipf("%s not found on PATH", tool)
				}
			}
			_, env := readmeHome(t)
			port := testutil.FreePort(t)
			cmdLine := regexp.MustCompile(`--listen :\d+`).ReplaceAllString(line, "--listen 127.0.0.1:"+strconv.Itoa(port))
			env = append(env, "PORT="+strconv.Itoa(port))
			t.Logf("README.md:%d: %s", lineNo, line)
			shRun(t, dir, env, cmdLine, time.Minute)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			testutil.WaitFor(t, 30*time.Second, "the app answers", func() bool {
				resp, err := http.Get(url)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == 200
			})
			load := startDrainLoad(url, 8, 40*time.Millisecond, false)
			load.waitOK(t, 40)
			for range 2 {
				shRun(t, dir, env, "corral reload all", time.Minute)
				load.waitOK(t, 40)
			}
			ok, failed, reused := load.finish()
			t.Logf("%s: %d ok, %d failed (%d on a kept-alive connection)", tool, ok, len(failed), reused)
			switch {
			case tool == "uvicorn" && len(failed) > reused:
				t.Errorf("uvicorn: %d requests failed on new connections: %s", len(failed)-reused, strings.Join(failed[:min(len(failed), 10)], "; "))
			case tool != "uvicorn" && len(failed) > 0:
				t.Errorf("%s: %d of %d requests failed over 2 reloads: %s", tool, len(failed), ok+int64(len(failed)), strings.Join(failed[:min(len(failed), 10)], "; "))
			}
			shRun(t, dir, env, "corral kill", time.Minute)
		})
	}
	if n != 3 {
		t.Errorf("%v: %d `corral start` lines, want 3 (Go, gunicorn, uvicorn)", b, n)
	}
}
