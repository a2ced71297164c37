package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// socketIOModules returns the node_modules directory where .ci/run installs socket.io and
// socket.io-client ($CORRAL_SOCKETIO, default <repo>/.cache/socketio); missing, the test is skipped
// (failed under CI).
func socketIOModules(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CORRAL_SOCKETIO")
	if dir == "" {
		dir = filepath.Join(nodetest.ModuleRoot(), ".cache", "socketio")
	}
	nm := filepath.Join(dir, "node_modules")
	for _, pkg := range []string{"socket.io", "socket.io-client"} {
		if _, err := os.Stat(filepath.Join(nm, pkg, "package.json")); err != nil {
			msg := "npm " + pkg + " not installed in " + dir + " (run `bash .ci/run setup`)"
			if nodetest.InCI() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return nm
}

type sioResult struct {
	OK, Failed int
	Errors     []string
	Pids       map[string]int
}

// A real Socket.IO server in 4 cluster instances, and 40 clients on the long-polling transport from 16
// client addresses: with --sticky every handshake and poll succeeds (and the clients spread over the
// instances); without it, they fail (the polls of one session land on other instances: "Session ID
// unknown").
func TestSocketIOStickySessions(t *testing.T) {
	skipShort(t)
	node := nodetest.Node(t)
	nm := socketIOModules(t)
	server, _ := filepath.Abs("testdata/socketio/server.js")
	client, _ := filepath.Abs("testdata/socketio/client.js")
	_, env := testHome(t)
	env = append(env, "NODE_PATH="+nm)
	run := func(port int) sioResult {
		t.Helper()
		cmd := exec.Command(node, client, "http://127.0.0.1:"+strconv.Itoa(port))
		cmd.Env = append(env, "CLIENTS=40", "ROUNDS=5")
		out, err := runBounded(cmd, 2*time.Minute)
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		var r sioResult
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
			t.Fatalf("client said %q: %v", out, err)
		}
		return r
	}
	for _, sticky := range []bool{true, false} {
		port := testutil.FreePort(t)
		name := "sio-" + strconv.FormatBool(sticky)
		args := []string{"start", server, "-i", "4", "--name", name}
		if sticky {
			args = append(args, "--sticky")
		}
		corral(t, append(env, "PORT="+strconv.Itoa(port)), args...)
		waitOnlineN(t, t.TempDir(), env, name, 4)
		waitAllServing(t, port, 4)
		r := run(port)
		t.Logf("--sticky=%v: %+v", sticky, r)
		switch {
		case sticky && (r.OK != 40 || r.Failed != 0 || len(r.Pids) < 2):
			t.Logf("instances: %v\n%s", jlist(t, t.TempDir(), env), corral(t, env, "show", name))
			t.Fatalf("with --sticky: %d ok, %d failed (%v), served by %d instances", r.OK, r.Failed, r.Errors, len(r.Pids))
		case !sticky && r.Failed < 30:
			t.Fatalf("without --sticky: %d ok, %d failed: round-robin should break most long-polling sessions", r.OK, r.Failed)
		}
	}
	corral(t, env, "delete", "all")
}

// waitAllServing waits until n different pids have answered a plain GET on port from the 16 client
// addresses the Socket.IO clients use: every instance has joined the listening socket. (Sticky
// assignments are made over the instances present: one that joins later takes its share of the
// clients, whose sessions then break.)
func waitAllServing(t *testing.T, port, n int) {
	t.Helper()
	pids := map[string]bool{}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	if !testutil.Eventually(30*time.Second, func() bool {
		for i := 0; i < 32 && len(pids) < n; i++ {
			if body := getFrom(t, fmt.Sprintf("127.0.0.%d", 10+i%16), url); regexp.MustCompile(`^\d+$`).MatchString(body) {
				pids[body] = true
			}
		}
		return len(pids) >= n
	}) {
		t.Fatalf("%d instances answered on port %d, want %d", len(pids), port, n)
	}
}

// getFrom does one Connection: close GET of url from the local address ip and returns the body.
func getFrom(t *testing.T, ip, url string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return strings.TrimSpace(string(b))
}
