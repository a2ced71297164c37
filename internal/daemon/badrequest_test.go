package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
)

// TestClientMistakesAre400s sends requests with client mistakes to a real daemon over its control
// socket: each is answered HTTP 400, code bad_request, with the field at fault named (they were
// 500 "internal").
func TestClientMistakesAre400s(t *testing.T) {
	m := newTestManager(t, Config{})
	dir, err := os.MkdirTemp("", "corral-400-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, m, "test") }()
	t.Cleanup(func() { cancel(); <-done })
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	t.Cleanup(hc.CloseIdleConnections)

	post := func(method, body string) (int, api.ErrorBody) {
		t.Helper()
		resp, err := hc.Post("http://corral/v1/"+method, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var eb api.ErrorBody
		json.Unmarshal(data, &eb)
		return resp.StatusCode, eb
	}
	start(t, m, goApp(t, "web", "sleep", nil))
	for _, tc := range []struct {
		method, body, field, msg string
	}{
		{"start", `{"apps": [{"name": "x"}]}`, "apps[0].script", "script is missing"},
		{"start", `{"apps": [{"name": "ok", "script": "/bin/true"}, {"name": "y", "script": "nowhere-y.js", "cwd": "/"}]}`, "apps[1].script", "not found"},
		{"start", `{"apps": [{"name": "z", "script": "/bin/true", "exec_mode": "swarm"}]}`, "apps[0].exec_mode", "exec_mode"},
		{"start", `{"apps": []}`, "apps", "no app given"},
		{"stop", `{"targets": []}`, "targets", "no process given"},
		{"restart", `{"targets": ["/(/"]}`, "targets", "missing closing )"},
		{"scale", `{"name": "web", "spec": "lots"}`, "spec", "want N, +N or -N"},
		{"scale", `{"name": "web", "spec": "-5"}`, "spec", "at least 1 must remain"},
		{"scale", `{"name": "", "spec": "2"}`, "name", "no app given"},
		{"signal", `{"signal": "SIGNOPE", "targets": ["web"]}`, "signal", "unknown signal name"},
	} {
		status, eb := post(tc.method, tc.body)
		if status != http.StatusBadRequest || eb.Code != api.CodeBadRequest || eb.Field != tc.field || !strings.Contains(eb.Error, tc.msg) {
			t.Errorf("%s %s: HTTP %d %+v, want 400 bad_request field %q, error containing %q", tc.method, tc.body, status, eb, tc.field, tc.msg)
		}
	}
	// An unknown target is still a 404, and nothing was started by the rejected requests.
	if status, eb := post("stop", `{"targets": ["nope"]}`); status != http.StatusNotFound || eb.Code != api.CodeUnknownTarget {
		t.Errorf("unknown target: HTTP %d %+v", status, eb)
	}
	procs, _ := m.List(context.Background())
	if len(procs) != 1 || procs[0].Name != "web" {
		t.Errorf("procs after the rejected requests: %+v", procs)
	}
}
