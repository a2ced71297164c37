package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// 10,000 hand-offs and 100 worker restarts leave the primary with the descriptors it started with.
func TestNoFDLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	testutil.CheckGoroutines(t)
	port := testutil.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	before := openFDs(t)
	p := cluster.NewPrimary(cluster.Settings{Args: []string{"-test.run=^$"}, HoldListeners: true,
		ExtraEnv: []string{"CLUSTER_TEST_HELPER=http", workerGORACE, fmt.Sprintf("ADDR=127.0.0.1:%d", port)}})
	t.Cleanup(func() { killAndShutdown(t, p) }) // on failure; a second Shutdown is harmless
	ws := forkListening(t, p, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for i := 0; i < 10000/8; i++ {
				res, err := c.Get(url)
				if err != nil {
					errs <- err
					return
				}
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		old := ws[i%2]
		var err error
		if i%2 == 0 {
			err = old.Kill(nil) // crash-like
		} else {
			err = old.Disconnect() // graceful
		}
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		wait(t, old.Done(), "exit of the replaced worker")
		ws[i%2] = forkListening(t, p, 1)[0]
	}
	get(t, url)
	killAndShutdown(t, p) // every worker gone and every goroutine of p ended: no descriptor in flight
	http.DefaultClient.CloseIdleConnections()
	if after := openFDs(t); after > before {
		t.Fatalf("open fds: %d before, %d after 10,000 hand-offs and 100 restarts", before, after)
	}
}
