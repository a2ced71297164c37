//go:build corralpprof

package main

// A debug-only build (go build -tags corralpprof ./cmd/corral) for profiling the daemon's memory
// (issue 13): when $CORRAL_PPROF_DIR is set, every corral process of this build serves
// net/http/pprof (recording every allocation unless $CORRAL_PPROF_RATE sets
// runtime.MemProfileRate) on the Unix socket $CORRAL_PPROF_DIR/pprof-<pid>.sock, e.g.
//
//	curl --unix-socket "$CORRAL_PPROF_DIR/pprof-$(cat ~/.corral/corral.pid).sock" \
//		-o heap.pb.gz http://x/debug/pprof/heap
//
// The release binary links none of this.

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

func init() {
	dir := os.Getenv("CORRAL_PPROF_DIR")
	if dir == "" {
		return
	}
	runtime.MemProfileRate = 1 // every allocation: per-process structures are small
	if r, err := strconv.Atoi(os.Getenv("CORRAL_PPROF_RATE")); err == nil {
		runtime.MemProfileRate = r // e.g. 524288, Go's default, for figures the profile does not inflate
	}
	p := filepath.Join(dir, fmt.Sprintf("pprof-%d.sock", os.Getpid()))
	ln, err := net.Listen("unix", p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral pprof:", err)
		return
	}
	go http.Serve(ln, nil) //nolint:errcheck // debug only; ends with the process
}
