package daemon

import (
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"
)

// Debug-only profiling of the daemon process, for benchmarks (bench/handoff.sh): off unless the
// environment the daemon starts with asks for it, and then written to files the caller names.
//
//	CORRAL_DEBUG_CPUPROFILE=FILE   a pprof CPU profile
//	CORRAL_DEBUG_TRACE=FILE        a runtime/trace execution trace
//	CORRAL_DEBUG_PROFILE_AFTER=D   start D (a Go duration) after the daemon started (default 0)
//	CORRAL_DEBUG_PROFILE_FOR=D     stop after D (default: when the daemon closes)
//
// Nothing here runs on any path of the daemon but its start and close.

// debugProfile is the profiling in progress, guarded by mu.
type debugProfile struct {
	mu      sync.Mutex
	timer   *time.Timer
	files   []*os.File
	cpu     bool
	trace   bool
	stopped bool
}

func startDebugProfile(lg *slog.Logger) *debugProfile {
	cpuPath, tracePath := os.Getenv("CORRAL_DEBUG_CPUPROFILE"), os.Getenv("CORRAL_DEBUG_TRACE")
	if cpuPath == "" && tracePath == "" {
		return nil
	}
	after, _ := time.ParseDuration(os.Getenv("CORRAL_DEBUG_PROFILE_AFTER"))
	span, _ := time.ParseDuration(os.Getenv("CORRAL_DEBUG_PROFILE_FOR"))
	d := &debugProfile{}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timer = time.AfterFunc(after, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.stopped {
			return
		}
		if cpuPath != "" {
			if f, err := os.OpenFile(cpuPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				lg.Warn("debug cpu profile", "err", err)
			} else if err := pprof.StartCPUProfile(f); err != nil {
				lg.Warn("debug cpu profile", "err", err)
				f.Close()
			} else {
				d.files, d.cpu = append(d.files, f), true
			}
		}
		if tracePath != "" {
			if f, err := os.OpenFile(tracePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				lg.Warn("debug trace", "err", err)
			} else if err := trace.Start(f); err != nil {
				lg.Warn("debug trace", "err", err)
				f.Close()
			} else {
				d.files, d.trace = append(d.files, f), true
			}
		}
		if span > 0 {
			d.timer = time.AfterFunc(span, d.stop)
		}
	})
	return d
}

// stop ends the profiling (or cancels it if it has not begun) and closes its files; a nil d does
// nothing. Only the first call counts.
func (d *debugProfile) stop() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	d.timer.Stop()
	if d.cpu {
		pprof.StopCPUProfile()
	}
	if d.trace {
		trace.Stop()
	}
	for _, f := range d.files {
		f.Close()
	}
}
