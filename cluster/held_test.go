package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/corralhq/corral/cluster"
)

// A held worker listens but gets no connection from the round robin; Dial reaches it alone; after
// Release it takes its share.
func TestHeldWorkerDialAndRelease(t *testing.T) {
	p := newPrimary(t, cluster.Settings{SchedulingPolicy: cluster.PolicyRoundRobin}, "http", "ADDR=127.0.0.1:0")
	addrs := make(chan cluster.Address, 2)
	p.OnListening(func(w *cluster.Worker, a cluster.Address) { addrs <- a })
	free := fork(t, p, cluster.ForkOptions{})
	port := wait(t, addrs, "first worker listening").Port
	held := fork(t, p, cluster.ForkOptions{Held: true})
	wait(t, addrs, "held worker listening")
	if !held.Held() || free.Held() {
		t.Fatalf("Held: %v %v", held.Held(), free.Held())
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := 0; i < 10; i++ {
		if id := strings.Fields(get(t, url))[0]; id != fmt.Sprint(free.ID) {
			t.Fatalf("request %d served by worker %s while worker %d is held", i, id, held.ID)
		}
	}
	for _, w := range []*cluster.Worker{held, free} {
		c, err := w.Dial(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&body)
		c.Close()
		if id := strings.Fields(body.String())[0]; id != fmt.Sprint(w.ID) {
			t.Errorf("Dial of worker %d answered by worker %s", w.ID, id)
		}
	}
	held.Release()
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		seen[strings.Fields(get(t, url))[0]] = true
	}
	if !seen[fmt.Sprint(held.ID)] {
		t.Errorf("after Release, worker %d served nothing: %v", held.ID, seen)
	}
}
