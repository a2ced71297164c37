package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// The README's "Web dashboard" block, run as documented (only the port is substituted) in a
// private home: `corral web --port N` serves on 127.0.0.1:N and prints a URL whose token signs a
// client in (and nothing is served without it), `corral web` prints the same URL again, and
// `corral web --stop` closes the port and forgets the setting.
func TestReadmeWeb(t *testing.T) {
	skipShort(t)
	readme := loadDoc(t, "README.md")
	home, env := readmeHome(t)
	dir := t.TempDir()
	steps := []struct {
		re   *regexp.Regexp
		done bool
	}{{re: regexp.MustCompile(`^corral web --port (\d+)$`)}, {re: regexp.MustCompile(`^corral web$`)}, {re: regexp.MustCompile(`^corral web --stop$`)}}
	var link *url.URL
	port := testutil.FreePort(t)
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, cmd := range shCommands(readmeBlock(t, readme, "web")) {
		t.Logf("README.md:%d: %s", cmd.Line, cmd.Text)
		kind := -1
		for i, s := range steps {
			if s.re.MatchString(cmd.Text) {
				kind = i
			}
		}
		switch kind {
		case 0:
			line := replaceRE(t, cmd.Text, `--port \d+`, "--port "+strconv.Itoa(port), 1)
			out := shRun(t, dir, env, line, time.Minute)
			m := webURLRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("%s printed no URL:\n%s", line, out)
			}
			var err error
			if link, err = url.Parse(m[1]); err != nil || link.Host != "127.0.0.1:"+strconv.Itoa(port) || link.Query().Get("token") == "" {
				t.Fatalf("URL %s: want http://127.0.0.1:%d/?token=…", m[1], port)
			}
			resp, err := noFollow.Get("http://" + link.Host + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET / without the token: %s, want 401", resp.Status)
			}
			resp, err = noFollow.Get(link.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
				t.Fatalf("GET the printed URL: %s with %d cookies, want 200 and a cookie", resp.Status, len(resp.Cookies()))
			}
			req, _ := http.NewRequest("GET", "http://"+link.Host+"/", nil)
			req.AddCookie(resp.Cookies()[0])
			if resp, err = noFollow.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET / signed in: %s, want 200", resp.Status)
			}
			if st, err := os.Stat(filepath.Join(home, "web.json")); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("web.json: %v, want a 0600 file", err)
			}
		case 1:
			if link == nil {
				t.Fatalf("README.md:%d: %s before the dashboard is served", cmd.Line, cmd.Text)
			}
			out := shRun(t, dir, env, cmd.Text, time.Minute)
			if m := webURLRE.FindStringSubmatch(out); m == nil || m[1] != link.String() {
				t.Errorf("%s: %s, want the same URL %s", cmd.Text, out, link)
			}
		case 2:
			out := shRun(t, dir, env, cmd.Text, time.Minute)
			if !strings.Contains(out, "stopped") {
				t.Errorf("%s: %s", cmd.Text, out)
			}
			if link != nil {
				if resp, err := http.Get("http://" + link.Host + "/"); err == nil {
					resp.Body.Close()
					t.Errorf("the dashboard still answers after %s", cmd.Text)
				}
			}
			if _, err := os.Stat(filepath.Join(home, "web.json")); !os.IsNotExist(err) {
				t.Errorf("web.json after %s: %v", cmd.Text, err)
			}
		default:
			t.Errorf("README.md:%d: %q: TestReadmeWeb has no check for it; add one", cmd.Line, cmd.Text)
			continue
		}
		steps[kind].done = true
	}
	for _, s := range steps {
		if !s.done {
			t.Errorf("the README's web block has no command matching %s any more: update TestReadmeWeb", s.re)
		}
	}
}
