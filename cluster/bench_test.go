package cluster_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
)

// BenchmarkHandoffConnectionClose measures new connections per second through a Go primary to two Go
// workers: each iteration is one request on a fresh connection (accept, SCM_RIGHTS hand-off, ACK,
// response, close).
func BenchmarkHandoffConnectionClose(b *testing.B) {
	port := testutil.FreePort(b)
	p := newPrimary(b, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	forkListening(b, p, 2)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		for pb.Next() {
			res, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
		}
	})
}

// BenchmarkKeepAlive is the same with keep-alive connections: after the first hand-off the primary is
// out of the data path.
func BenchmarkKeepAlive(b *testing.B) {
	port := testutil.FreePort(b)
	p := newPrimary(b, cluster.Settings{}, "http", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
	forkListening(b, p, 2)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{}
		for pb.Next() {
			res, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
		}
	})
}
