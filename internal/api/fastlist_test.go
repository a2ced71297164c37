package api_test

import (
	"context"
	"encoding/json"
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

// TestListRows: ls's rows carry every field the table and --sort read, equal to List's, and no
// environment.
func TestListRows(t *testing.T) {
	f := &apitest.Fake{}
	c := serve(t, f)
	ctx := context.Background()
	if _, err := c.Start(ctx, []appspec.App{
		{Name: "web", Script: "/srv/app.js", ExecMode: "cluster", Instances: 2, Env: map[string]string{"SECRET": "x"}},
		{Name: "sock", Namespace: "ns", Script: "/srv/s", Listen: []string{"127.0.0.1:0"}},
	}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stop(ctx, []string{"sock"}); err != nil {
		t.Fatal(err)
	}
	full, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.ListRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(full) || len(rows) != 3 {
		t.Fatalf("%d rows, %d procs", len(rows), len(full))
	}
	for i, p := range full {
		want := api.RowOf(p).Proc()
		if !reflect.DeepEqual(rows[i], want) {
			t.Errorf("row %d = %+v\nwant %+v", i, rows[i], want)
		}
		r := rows[i]
		if r.PMID != p.PMID || r.Name != p.Name || r.Namespace != p.Namespace || r.PID != p.PID || r.Status != p.Status ||
			r.App.ExecMode != p.App.ExecMode || !reflect.DeepEqual(r.App.Listen, p.App.Listen) ||
			!r.StartedAt.Equal(p.StartedAt) || r.Restarts != p.Restarts || r.CPU != p.CPU || r.Memory != p.Memory {
			t.Errorf("row %d = %+v, proc %+v", i, r, p)
		}
		if r.Env != nil || r.App.Env != nil || r.App.ShellEnv != nil {
			t.Errorf("row %d carries an environment: %+v", i, r)
		}
	}
	if r := api.RowOf(api.Proc{Name: "x"}).Proc(); !r.StartedAt.IsZero() {
		t.Errorf("zero StartedAt came back as %v", r.StartedAt)
	}
}

// jlistFake is a backend that renders jlist itself, as the daemon does.
type jlistFake struct {
	*apitest.Fake
	out []byte
}

func (j jlistFake) JList(context.Context) ([]byte, error) { return j.out, nil }

// TestJList: the daemon's rendering comes back byte for byte; a backend without one gives an
// error matching errors.ErrUnsupported (the CLI renders List's answer then).
func TestJList(t *testing.T) {
	ctx := context.Background()
	big := make([]byte, 0, 300<<10)
	big = append(big, '[')
	for len(big) < 300<<10 {
		big = append(big, `{"name":"a\"b","x":1},`...)
	}
	big = append(big[:len(big)-1], ']')
	c := serve(t, jlistFake{Fake: &apitest.Fake{}, out: big})
	out, err := c.JList(ctx)
	if err != nil || string(out) != string(big) {
		t.Fatalf("JList = %d bytes, %v; want the backend's %d bytes", len(out), err, len(big))
	}

	c = serve(t, &apitest.Fake{})
	if _, err := c.JList(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("JList from a backend without it: %v, want errors.ErrUnsupported", err)
	}
}

// TestListRowsFromOlderDaemon: a daemon that predates rows ignores the view and answers every
// Proc; ListRows returns them. One without /v1/jlist answers "no such method": ErrUnsupported.
func TestListRowsFromOlderDaemon(t *testing.T) {
	started := time.Unix(1795563145, 570000000)
	procs := []api.Proc{{PMID: 3, Name: "old", PID: 42, Status: "online", StartedAt: started, Env: map[string]string{"A": "1"}}}
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
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/list", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.ProcsResponse{Procs: procs})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "no such method: " + r.URL.Path, Code: api.CodeNotFound})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	c := api.NewClient(sock)
	defer c.Close()
	got, err := c.ListRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "old" || got[0].Env["A"] != "1" || !got[0].StartedAt.Equal(started) {
		t.Errorf("ListRows = %+v", got)
	}
	if _, err := c.JList(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("JList from an older daemon: %v, want errors.ErrUnsupported", err)
	}
}

// TestLastPong: a client remembers its last successful ping (ls reads the daemon's version from
// the ping that found it).
func TestLastPong(t *testing.T) {
	c := serve(t, &apitest.Fake{})
	if _, ok := c.LastPong(); ok {
		t.Fatal("LastPong before any ping")
	}
	pong, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c.LastPong()
	if !ok || got != pong || got.Version != "test" {
		t.Errorf("LastPong = %+v, %v; want %+v", got, ok, pong)
	}
}

// TestStartLean: a lean start answers the started instances without their environments; a plain
// one with them.
func TestStartLean(t *testing.T) {
	c := serve(t, &apitest.Fake{})
	ctx := context.Background()
	app := appspec.App{Name: "web", Script: "/srv/app.js", Env: map[string]string{"PORT": "3000"}, ShellEnv: map[string]string{"HOME": "/h"}}
	procs, err := c.Start(ctx, []appspec.App{app}, api.StartOptions{Lean: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Name != "web" || procs[0].PID == 0 || procs[0].Env != nil || procs[0].App.Env != nil || procs[0].App.ShellEnv != nil {
		t.Errorf("lean start answered %+v", procs)
	}
	app.Name = "web2"
	procs, err = c.Start(ctx, []appspec.App{app}, api.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].App.Env["PORT"] != "3000" || procs[0].App.ShellEnv["HOME"] != "/h" {
		t.Errorf("start answered %+v", procs)
	}
}

// benchClient serves a Fake holding 100 apps with 40 environment variables each (the shape of
// bench/lighter.sh's) and returns a client for it.
func benchClient(b *testing.B) *api.Client {
	b.Helper()
	dir, err := os.MkdirTemp("", "corral-api-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	f := &apitest.Fake{}
	env := map[string]string{}
	for i := range 40 {
		env[fmt.Sprintf("VAR_%02d", i)] = strings.Repeat("v", 30)
	}
	var apps []appspec.App
	for i := range 100 {
		apps = append(apps, appspec.App{Name: fmt.Sprintf("s%03d", i), Script: "/bin/sleep", Args: []string{"100000"}, ShellEnv: env, Env: map[string]string{"PORT": "3000"}})
	}
	if _, err := f.Start(context.Background(), apps, api.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, f, "test") }()
	c := api.NewClient(sock)
	b.Cleanup(func() {
		c.Close()
		cancel()
		<-done
	})
	return c
}

// BenchmarkList100 and BenchmarkListRows100: what ls cost before and costs now on the wire
// (the daemon's encoding and the CLI's decoding, one process here).
func BenchmarkList100(b *testing.B) {
	c := benchClient(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.List(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListRows100(b *testing.B) {
	c := benchClient(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ListRows(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
