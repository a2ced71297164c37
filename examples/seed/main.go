// Command seed is the cluster example from the write-up this project grew from, in Go: the primary
// forks one worker per CPU, logs when each comes online and when one dies, and forks a replacement for
// every worker that exits. Each worker serves "hello world" on :8080 (or $PORT); the primary accepts
// the connections and hands them to the workers round-robin.
//
//	go run ./examples/seed
//	curl localhost:8080
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/corralhq/corral/cluster"
)

func main() {
	if cluster.IsPrimary() {
		primary()
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		fmt.Fprint(w, "hello world")
	})}
	if err := cluster.ServeHTTP(srv, "tcp", ":"+port); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func primary() {
	numWorkers := runtime.NumCPU()
	fmt.Printf("Primary cluster setting up %d workers...\n", numWorkers)
	stopping := make(chan struct{})
	cluster.OnOnline(func(w *cluster.Worker) {
		fmt.Printf("Worker %d is online\n", w.Process.Pid)
	})
	cluster.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
		fmt.Printf("Worker %d died with code: %d, and signal: %v\n", w.Process.Pid, code, sig)
		select {
		case <-stopping:
			return
		default:
		}
		fmt.Println("Starting a new worker")
		if _, err := cluster.Fork(nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
	for i := 0; i < numWorkers; i++ {
		if _, err := cluster.Fork(nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	close(stopping)
	for _, w := range cluster.Workers() {
		w.Disconnect()
	}
	for _, w := range cluster.Workers() {
		<-w.Done()
	}
}
