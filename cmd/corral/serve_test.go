package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// `corral serve <dir> <port> --spa --basic-auth-...` starts a static server as an app, as PM2's
// serve does: files, the homepage for unknown paths, basic auth; stop and delete like any app.
func TestServe(t *testing.T) {
	_, env := testHome(t)
	site := t.TempDir()
	os.WriteFile(filepath.Join(site, "index.html"), []byte("<h1>home</h1>"), 0o644)
	os.MkdirAll(filepath.Join(site, "css"), 0o755)
	os.WriteFile(filepath.Join(site, "css", "a.css"), []byte("body{}"), 0o644)
	port := strconv.Itoa(testutil.FreePort(t))
	out := corral(t, env, "serve", site, port, "--spa", "--basic-auth-username", "u", "--basic-auth-password", "p")
	if !strings.Contains(out, "static-page-server-"+port) {
		t.Fatalf("serve:\n%s", out)
	}
	t.Cleanup(func() { corral(t, env, "kill") })

	get := func(path, user, pass string) (int, string) {
		t.Helper()
		var code int
		var body string
		testutil.WaitFor(t, 10*time.Second, "the server answers", func() bool {
			req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+path, nil)
			if user != "" {
				req.SetBasicAuth(user, pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			code, body = resp.StatusCode, string(b)
			return true
		})
		return code, body
	}
	if code, _ := get("/", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no auth: %d", code)
	}
	if code, _ := get("/", "u", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", code)
	}
	if code, body := get("/css/a.css", "u", "p"); code != 200 || body != "body{}" {
		t.Errorf("file: %d %q", code, body)
	}
	if code, body := get("/some/route", "u", "p"); code != 200 || body != "<h1>home</h1>" {
		t.Errorf("spa route: %d %q", code, body)
	}
	if code, _ := get("/css/", "u", "p"); code != 200 { // --spa: a directory without index is a route too
		t.Errorf("directory: %d", code)
	}
	corral(t, env, "stop", "static-page-server-"+port)
	if _, err := http.Get("http://127.0.0.1:" + port + "/"); err == nil {
		t.Error("still serving after stop")
	}
}
