package api

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

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
