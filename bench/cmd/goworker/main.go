// Command goworker is a Go HTTP worker for benchmarks: it answers every request with "hello world"
// (headers X-Worker-Pid and X-Worker-Id, like examples/node/app.js) on a cluster listener, so it runs
// under a Go or a Node cluster primary, or alone.
//
// Usage:
//
//	PORT=8080 goworker
//
// It listens on :$PORT (default 8080) and exits 0 after a graceful stop (the "shutdown" message, SIGINT
// or SIGTERM). Positional arguments are ignored (a Node primary passes its script name).
//
// With GOWORKER_TINY=1 it is instead a minimal worker for hand-off benchmarks (bench/handoff.sh): on
// every connection it reads once (the request), writes a fixed "200 ok" response with Connection:
// close and closes, with no HTTP server, so that a connection costs the worker as little as it can.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

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
	if err := cluster.ServeHTTP(srv, "tcp", net.JoinHostPort("", port)); err != nil {
		fmt.Fprintf(os.Stderr, "goworker: serve on port %s: %v\n", port, err)
		os.Exit(1)
	}
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
