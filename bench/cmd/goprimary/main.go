// Command goprimary is a cluster primary for benchmarks, built on the cluster package: it forks N
// workers of any executable (a Node app under node, or a Go worker), waits for SIGINT or SIGTERM, then
// stops the workers and exits.
//
// Usage:
//
//	goprimary [-workers N] [-exec PROGRAM] [-port PORT] [-policy rr|none] [--] [ARGS...]
//
// Each worker runs PROGRAM ARGS... (e.g. -exec node -- examples/node/app.js) with PORT=<port> in its
// environment. Once every worker listens, goprimary prints "goprimary <pid> ready <N>". Workers that exit
// are not restarted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "goprimary:", err)
		os.Exit(1)
	}
}

func run() error {
	workers := flag.Int("workers", 2, "number of workers to fork")
	program := flag.String("exec", "node", "worker executable (looked up on PATH)")
	port := flag.Int("port", 8080, "value of PORT in the workers' environment (negative: leave PORT alone)")
	policy := flag.String("policy", "rr", "scheduling policy: rr (round-robin) or none (shared socket)")
	readyTimeout := flag.Duration("ready-timeout", 30*time.Second, "how long to wait for every worker to listen")
	stopTimeout := flag.Duration("stop-timeout", 5*time.Second, "how long to wait for workers to finish after the disconnect before SIGKILL")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the primary to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *workers < 1 {
		return fmt.Errorf("-workers %d: need at least 1", *workers)
	}
	path, err := exec.LookPath(*program)
	if err != nil {
		return fmt.Errorf("-exec %s: %w", *program, err)
	}
	var sched cluster.Policy
	switch *policy {
	case "rr":
		sched = cluster.PolicyRoundRobin
	case "none":
		sched = cluster.PolicyNone
	default:
		return fmt.Errorf("-policy %q: want rr or none", *policy)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	p := cluster.NewPrimary(cluster.Settings{
		Exec:             path,
		Args:             flag.Args(),
		SchedulingPolicy: sched,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	// On the way out, whatever happened: disconnect every worker, give them -stop-timeout to finish,
	// then SIGKILL the rest, and wait for the primary's goroutines.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), *stopTimeout)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			fmt.Fprintf(os.Stderr, "goprimary: shutdown: %v\n", err)
		}
	}()

	stopping := make(chan struct{})
	p.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
		select {
		case <-stopping:
		default:
			fmt.Fprintf(os.Stderr, "goprimary: worker %d exited (code %d, signal %v)\n", w.ID, code, sig)
		}
	})

	env := map[string]string{}
	if *port >= 0 {
		env["PORT"] = strconv.Itoa(*port)
	}
	var forked []*cluster.Worker
	for i := 0; i < *workers; i++ {
		w, err := p.Fork(env)
		if err != nil {
			return fmt.Errorf("fork worker %d of %d: %w", i+1, *workers, err)
		}
		forked = append(forked, w)
	}

	deadline := time.NewTimer(*readyTimeout)
	defer deadline.Stop()
	for _, w := range forked {
		select {
		case <-w.Listening():
		case <-w.Done():
			return fmt.Errorf("worker %d exited before listening (code %d)", w.ID, w.ExitCode())
		case <-deadline.C:
			return fmt.Errorf("worker %d not listening after %v", w.ID, *readyTimeout)
		case <-ctx.Done():
			close(stopping)
			return nil
		}
	}
	fmt.Printf("goprimary %d ready %d\n", os.Getpid(), len(forked))

	<-ctx.Done()
	close(stopping)
	return nil
}
