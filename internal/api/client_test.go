package api_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// serve starts Serve on a fresh Unix socket and returns a client for it.
func serve(t *testing.T, b api.Backend) *api.Client {
	t.Helper()
	c, _ := serveAt(t, b)
	return c
}

// Every method reaches the backend with its arguments, and its answer comes back.
func TestClientRoundTrip(t *testing.T) {
	f := &apitest.Fake{}
	c := serve(t, f)
	ctx := context.Background()

	yes := false
	procs, err := c.Start(ctx, []appspec.App{{Name: "web", Script: "/srv/app.js", Env: map[string]string{"PORT": "3000"}, Autorestart: &yes, Instances: 2}}, api.StartOptions{Force: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if len(procs) != 2 || procs[0].Name != "web" || procs[0].Env["PORT"] != "3000" || procs[0].App.AutorestartOn() || procs[0].App.Instances != 2 {
		t.Fatalf("Start returned %+v", procs)
	}
	if stored := f.Procs()[0].StartedAt; !procs[0].StartedAt.Equal(stored) {
		t.Errorf("StartedAt lost precision: %v, want %v", procs[0].StartedAt, stored)
	}

	_, notes, err := c.Reload(ctx, []string{"web"}, api.RestartOptions{})
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if want := []string{"web: " + apitest.ForkNote}; !reflect.DeepEqual(notes, want) {
		t.Errorf("notes = %q, want %q", notes, want)
	}
	if _, _, err := c.Restart(ctx, []string{"0"}, api.RestartOptions{UpdateEnv: true, Env: map[string]string{"A": "1"}}); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	ov := api.Overrides{}
	if err := ov.Set("kill_timeout", int64(5000)); err != nil {
		t.Fatal(err)
	}
	procs, _, err = c.Restart(ctx, []string{"1"}, api.RestartOptions{Overrides: &ov})
	if err != nil {
		t.Fatalf("Restart with overrides: %v", err)
	}
	if len(procs) != 2 || procs[0].App.KillTimeout != 5000 || procs[1].App.KillTimeout != 5000 {
		t.Errorf("overrides not applied to every instance of the app: %+v", procs)
	}
	if _, err := c.Scale(ctx, "web", "+1"); err != nil {
		t.Fatalf("Scale: %v", err)
	}
	if _, err := c.Signal(ctx, "SIGUSR2", []string{"all"}); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if _, err := c.Reset(ctx, []string{"web"}); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := c.Flush(ctx, []string{"web"}); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := c.ReloadLogs(ctx); err != nil {
		t.Fatalf("ReloadLogs: %v", err)
	}
	if _, err := c.Stop(ctx, []string{"web"}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || len(apps) != 1 || apps[0].Script != "/srv/app.js" || apps[0].Instances != 2 {
		t.Fatalf("Apps = %+v, %v", apps, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := c.Delete(ctx, []string{"web"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	pong, err := c.Ping(ctx)
	if err != nil || !pong.Pong || pong.PID != os.Getpid() {
		t.Fatalf("Ping = %+v, %v", pong, err)
	}

	want := []string{
		"start 1 force=true",
		"reload [web]",
		"restart [0] update-env=map[A:1]",
		"restart [1] overrides=[kill_timeout]",
		"scale web +1",
		"signal SIGUSR2 [all]",
		"reset [web]",
		"flush [web]",
		"reloadLogs",
		"stop [web]",
		"apps",
		"list",
		"delete [web]",
	}
	if got := f.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestErrors(t *testing.T) {
	f := &apitest.Fake{ShutdownErr: errors.New("shutdown failed: disk on fire")}
	c := serve(t, f)
	ctx := context.Background()

	_, err := c.Stop(ctx, []string{"nope"})
	if !errors.Is(err, api.ErrUnknownTarget) {
		t.Fatalf("Stop(nope) = %v, want ErrUnknownTarget", err)
	}
	if !strings.Contains(err.Error(), "process or namespace not found: nope") {
		t.Errorf("message = %q", err.Error())
	}
	if api.IsUnreachable(err) {
		t.Errorf("a remote error is not 'unreachable'")
	}
	err = c.Shutdown(ctx)
	if err == nil || errors.Is(err, api.ErrUnknownTarget) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Shutdown = %v", err)
	}
	var re *api.RemoteError
	if !errors.As(err, &re) || re.Code != api.CodeInternal {
		t.Errorf("Shutdown error %#v, want RemoteError internal", err)
	}
	if err := c.CallForTest(ctx, "bogus"); err == nil || !strings.Contains(err.Error(), "no such method") {
		t.Errorf("bogus method: %v", err)
	}
}

func TestLogsStream(t *testing.T) {
	f := &apitest.Fake{LogStream: make(chan api.LogLine)}
	c := serve(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := f.Start(ctx, []appspec.App{{Name: "web"}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Logs(ctx, []string{"ghost"}); !errors.Is(err, api.ErrUnknownTarget) {
		t.Fatalf("Logs(ghost) = %v", err)
	}
	ch, err := c.Logs(ctx, []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sent := api.LogLine{PMID: 0, Name: "web", Stream: "out", Text: fmt.Sprintf("line %d", i), Time: time.UnixMilli(int64(i))}
		f.LogStream <- sent // unbuffered: the server took it
		select {
		case got := <-ch:
			if got.Text != sent.Text || got.Stream != "out" || !got.Time.Equal(sent.Time) {
				t.Fatalf("got %+v, want %+v", got, sent)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("log line not delivered")
		}
	}
	cancel()
	for range ch { // must close once ctx is done
	}
}

func TestLogsEndWhenBackendCloses(t *testing.T) {
	f := &apitest.Fake{LogStream: make(chan api.LogLine, 1)}
	if _, err := f.Start(context.Background(), []appspec.App{{Name: "web"}}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	c := serve(t, f)
	f.LogStream <- api.LogLine{Text: "last"}
	close(f.LogStream)
	ch, err := c.Logs(context.Background(), []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for l := range ch {
		got = append(got, l.Text)
	}
	if !reflect.DeepEqual(got, []string{"last"}) {
		t.Errorf("got %q", got)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	c := api.NewClient(filepath.Join(dir, "missing.sock"))
	_, err := c.List(context.Background())
	if !api.IsUnreachable(err) {
		t.Fatalf("List on a missing socket: %v, want unreachable", err)
	}
}

// A peer whose credentials cannot be read (here: a TCP connection) is refused.
func TestPeerCheckRefusesNonUnixPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, &apitest.Fake{}, "test") }()
	defer func() { cancel(); <-done }()
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/list", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
}
