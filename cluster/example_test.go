package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
)

// Outside a cluster, Listen is net.Listen, so the same program runs on its own or as a worker.
func ExampleListen() {
	ln, err := cluster.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(cluster.IsWorker(), ln.Addr().Network())
	// Output: false tcp
}

// The classic Node example: the primary forks one worker per CPU and replaces every worker that
// exits; workers share port 8080, the primary handing each connection to the next worker.
func ExampleIsPrimary() {
	if cluster.IsPrimary() {
		cluster.OnOnline(func(w *cluster.Worker) { log.Printf("worker %d online", w.Process.Pid) })
		cluster.OnExit(func(w *cluster.Worker, code int, sig os.Signal) {
			log.Printf("worker %d died (code %d, signal %v); starting another", w.Process.Pid, code, sig)
			cluster.Fork(nil)
		})
		for i := 0; i < runtime.NumCPU(); i++ {
			cluster.Fork(nil)
		}
		select {}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from worker", cluster.ID())
	})}
	log.Fatal(cluster.ServeHTTP(srv, "tcp", ":8080"))
}

// A Go primary running unmodified Node.js workers: `server.listen(3000)` in server.js makes the
// primary listen on 3000 and hand connections to the workers round-robin.
func ExampleNewPrimary() {
	p := cluster.NewPrimary(cluster.Settings{Exec: "node", Args: []string{"server.js"}})
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { log.Printf("worker %d listening on %v", w.ID, a) })
	p.OnMessage(func(w *cluster.Worker, m json.RawMessage) { log.Printf("worker %d: %s", w.ID, m) })
	for i := 0; i < 4; i++ {
		w, err := p.Fork(map[string]string{"ROLE": "web"})
		if err != nil {
			log.Fatal(err)
		}
		w.Send("hello") // process.on('message') receives 'hello'
	}
}

// A primary that stops on SIGTERM: its workers get 30 seconds to drain and exit, then are killed.
func ExamplePrimary_Shutdown() {
	p := cluster.NewPrimary(cluster.Settings{Exec: "node", Args: []string{"server.js"}})
	for i := 0; i < 4; i++ {
		if _, err := p.Fork(nil); err != nil {
			log.Fatal(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Print(err) // some workers had to be killed
	}
}

// A worker that drains gracefully: on the "shutdown" message, SIGINT, SIGTERM or the primary's
// disconnect it stops taking connections, answers with Connection: close, finishes in-flight requests
// and returns nil.
func ExampleServeHTTP() {
	srv := &http.Server{Handler: http.NotFoundHandler()}
	if err := cluster.ServeHTTP(srv, "tcp", ":8080"); err != nil {
		log.Fatal(err)
	}
	os.Exit(0)
}
