package api

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
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// fakeBackend records calls and answers from a small in-memory table.
type fakeBackend struct {
	mu    sync.Mutex
	procs []Proc
	calls []string
	logs  chan LogLine
}

func (f *fakeBackend) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeBackend) match(targets []string) ([]Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Proc
	for _, t := range targets {
		found := false
		for _, p := range f.procs {
			if t == "all" || t == p.Name || t == fmt.Sprint(p.PMID) {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			return nil, UnknownTargetError(t)
		}
	}
	return out, nil
}

func (f *fakeBackend) Start(_ context.Context, apps []appspec.App, opts StartOptions) ([]Proc, error) {
	f.record("start %d force=%v", len(apps), opts.Force)
	var out []Proc
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range apps {
		p := Proc{PMID: len(f.procs), Name: a.Name, Status: "online", App: a, Env: a.Env, StartedAt: time.UnixMilli(1700000000123)}
		f.procs = append(f.procs, p)
		out = append(out, p)
	}
	return out, nil
}
func (f *fakeBackend) Stop(_ context.Context, t []string) ([]Proc, error) {
	f.record("stop %v", t)
	return f.match(t)
}
func (f *fakeBackend) Restart(_ context.Context, t []string, o RestartOptions) ([]Proc, error) {
	f.record("restart %v update=%v env=%v", t, o.UpdateEnv, o.Env)
	if o.Notes != nil {
		*o.Notes = append(*o.Notes, "restart note")
	}
	return f.match(t)
}
func (f *fakeBackend) Reload(_ context.Context, t []string, o RestartOptions) ([]Proc, error) {
	f.record("reload %v", t)
	if o.Notes != nil {
		*o.Notes = append(*o.Notes, "fell back to restart")
	}
	return f.match(t)
}
func (f *fakeBackend) Delete(_ context.Context, t []string) ([]Proc, error) {
	f.record("delete %v", t)
	return f.match(t)
}
func (f *fakeBackend) Scale(_ context.Context, name, spec string) ([]Proc, error) {
	f.record("scale %s %s", name, spec)
	return f.match([]string{name})
}
func (f *fakeBackend) List(context.Context) ([]Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Proc(nil), f.procs...), nil
}
func (f *fakeBackend) Signal(_ context.Context, sig string, t []string) ([]Proc, error) {
	f.record("signal %s %v", sig, t)
	return f.match(t)
}
func (f *fakeBackend) Reset(_ context.Context, t []string) ([]Proc, error) {
	f.record("reset %v", t)
	return f.match(t)
}
func (f *fakeBackend) Flush(_ context.Context, t []string) error {
	f.record("flush %v", t)
	_, err := f.match(t)
	return err
}
func (f *fakeBackend) ReloadLogs(context.Context) error {
	f.record("reloadLogs")
	return nil
}
func (f *fakeBackend) Logs(ctx context.Context, t []string) (<-chan LogLine, error) {
	if _, err := f.match(t); err != nil {
		return nil, err
	}
	return f.logs, nil
}
func (f *fakeBackend) Apps(context.Context) ([]appspec.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var apps []appspec.App
	for _, p := range f.procs {
		apps = append(apps, p.App)
	}
	return apps, nil
}
func (f *fakeBackend) Shutdown(context.Context) error {
	f.record("shutdown")
	return errors.New("shutdown failed: disk on fire")
}

// serve starts Serve on a fresh Unix socket and returns a client for it.
func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-api-")
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
	go func() { done <- Serve(ctx, ln, b) }()
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func TestClientRoundTrip(t *testing.T) {
	f := &fakeBackend{logs: make(chan LogLine, 4)}
	c := serve(t, f)
	ctx := context.Background()

	yes := false
	procs, err := c.Start(ctx, []appspec.App{{Name: "web", Script: "/srv/app.js", Env: map[string]string{"PORT": "3000"}, Autorestart: &yes, Instances: 2}}, StartOptions{Force: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if len(procs) != 1 || procs[0].Name != "web" || procs[0].Env["PORT"] != "3000" || procs[0].App.AutorestartOn() || procs[0].App.Instances != 2 {
		t.Fatalf("Start returned %+v", procs)
	}
	if !procs[0].StartedAt.Equal(time.UnixMilli(1700000000123)) {
		t.Errorf("StartedAt lost precision: %v", procs[0].StartedAt)
	}

	var notes []string
	if _, err := c.Reload(ctx, []string{"web"}, RestartOptions{Notes: &notes}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !reflect.DeepEqual(notes, []string{"fell back to restart"}) {
		t.Errorf("notes = %q", notes)
	}
	if _, err := c.Restart(ctx, []string{"0"}, RestartOptions{UpdateEnv: true, Env: map[string]string{"A": "1"}}); err != nil {
		t.Fatalf("Restart: %v", err)
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
	if err != nil || len(apps) != 1 || apps[0].Script != "/srv/app.js" {
		t.Fatalf("Apps = %+v, %v", apps, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 {
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
		"restart [0] update=true env=map[A:1]",
		"scale web +1",
		"signal SIGUSR2 [all]",
		"reset [web]",
		"flush [web]",
		"reloadLogs",
		"stop [web]",
		"delete [web]",
	}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
}

func TestErrors(t *testing.T) {
	f := &fakeBackend{}
	c := serve(t, f)
	ctx := context.Background()

	_, err := c.Stop(ctx, []string{"nope"})
	if !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Stop(nope) = %v, want ErrUnknownTarget", err)
	}
	if !strings.Contains(err.Error(), "process or namespace not found: nope") {
		t.Errorf("message = %q", err.Error())
	}
	if IsUnreachable(err) {
		t.Errorf("a remote error is not 'unreachable'")
	}
	err = c.Shutdown(ctx)
	if err == nil || errors.Is(err, ErrUnknownTarget) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Shutdown = %v", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeInternal {
		t.Errorf("Shutdown error %#v, want RemoteError internal", err)
	}
	if err := c.call(ctx, "bogus", nil, nil); err == nil || !strings.Contains(err.Error(), "no such method") {
		t.Errorf("bogus method: %v", err)
	}
}

func TestLogsStream(t *testing.T) {
	f := &fakeBackend{logs: make(chan LogLine)}
	f.procs = []Proc{{PMID: 0, Name: "web"}}
	c := serve(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if _, err := c.Logs(ctx, []string{"ghost"}); !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("Logs(ghost) = %v", err)
	}
	ch, err := c.Logs(ctx, []string{"web"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sent := LogLine{PMID: 0, Name: "web", Stream: "out", Text: fmt.Sprintf("line %d", i), Time: time.UnixMilli(int64(i))}
		f.logs <- sent // unbuffered: the server took it
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
	f := &fakeBackend{logs: make(chan LogLine, 1)}
	f.procs = []Proc{{PMID: 0, Name: "web"}}
	c := serve(t, f)
	f.logs <- LogLine{Text: "last"}
	close(f.logs)
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
	c := NewClient(filepath.Join(dir, "missing.sock"))
	_, err := c.List(context.Background())
	if !IsUnreachable(err) {
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
	go func() { done <- Serve(ctx, ln, &fakeBackend{}) }()
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

// The peer uid of a Unix connection is the connecting process's uid.
func TestPeerUID(t *testing.T) {
	dir, err := os.MkdirTemp("", "corral-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", filepath.Join(dir, "p.sock"))
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil || uid != os.Getuid() {
		t.Fatalf("peerUID = %d, %v; want %d", uid, err, os.Getuid())
	}
}

// The guard refuses a peer with a foreign uid.
func TestGuardRefusesOtherUsers(t *testing.T) {
	h := &handler{uid: 4242}
	called := false
	g := h.guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	for _, tc := range []struct {
		uid  int
		want bool
	}{{4242, true}, {0, true}, {4243, false}} {
		called = false
		req, _ := http.NewRequest("POST", "/v1/list", nil)
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, peer{uid: tc.uid}))
		rec := &recorder{header: http.Header{}}
		g.ServeHTTP(rec, req)
		if called != tc.want {
			t.Errorf("uid %d: served=%v, want %v (status %d)", tc.uid, called, tc.want, rec.status)
		}
	}
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }
