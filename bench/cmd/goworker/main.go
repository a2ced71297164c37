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
