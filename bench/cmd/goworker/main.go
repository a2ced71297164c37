// Command goworker is a Go HTTP worker for benchmarks: it answers every request with "hello world"
// (headers X-Worker-Pid and X-Worker-Id, like examples/node/app.js) on a cluster listener, so it runs
// under a Go or a Node cluster primary, or alone.
//
// Usage:
//
//	PORT=8080 goworker
//
// It listens on :$PORT (default 8080) and exits 0 after a graceful stop (the "shutdown" message, SIGINT
// or SIGTERM). Positional arguments are ignored (a Node primary passes its script name). Outside a
// cluster, with LISTEN_FDS set (socket activation, `corral start --listen`) it serves on fd 3 instead,
// and with REUSEPORT=1 it binds :$PORT with SO_REUSEPORT (several instances in fork mode, as under PM2).
//
// With GOWORKER_TINY=1 it is instead a minimal worker for hand-off benchmarks (bench/handoff.sh): on
// every connection it reads once (the request), writes a fixed "200 ok" response with Connection:
// close and closes, with no HTTP server, so that a connection costs the worker as little as it can.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"

	"github.com/corralhq/corral/cluster"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if os.Getenv("GOWORKER_TINY") == "1" {
		tiny(port)
		return
	}
	pid := strconv.Itoa(os.Getpid())
	id := strconv.Itoa(cluster.ID())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Pid", pid)
		w.Header().Set("X-Worker-Id", id)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("hello world"))
	})}
	if !cluster.IsWorker() && (os.Getenv("LISTEN_FDS") != "" || os.Getenv("REUSEPORT") == "1") {
		serveAlone(srv, port)
		return
	}
	if err := cluster.ServeHTTP(srv, "tcp", net.JoinHostPort("", port)); err != nil {
		fmt.Fprintf(os.Stderr, "goworker: serve on port %s: %v\n", port, err)
		os.Exit(1)
	}
}

// serveAlone serves srv on the activation socket (fd 3) or on :port with SO_REUSEPORT, until it fails.
func serveAlone(srv *http.Server, port string) {
	var l net.Listener
	var err error
	if os.Getenv("LISTEN_FDS") != "" {
		l, err = net.FileListener(os.NewFile(3, "listen"))
	} else {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		l, err = lc.Listen(context.Background(), "tcp", net.JoinHostPort("", port))
	}
	if err == nil {
		err = srv.Serve(l)
	}
	fmt.Fprintf(os.Stderr, "goworker: serve: %v\n", err)
	os.Exit(1)
}

var tinyResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

// tiny serves every connection with one read, one write and a close; it exits when the listener
// closes (the primary's disconnect) or on a signal.
func tiny(port string) {
	ln, err := cluster.Listen("tcp", net.JoinHostPort("", port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "goworker: listen on port %s: %v\n", port, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err != nil {
				return
			}
			c.Write(tinyResponse)
		}()
	}
}
