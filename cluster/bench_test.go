package cluster_test

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
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

func init() { helpers["tiny"] = helperTiny }

// helperTiny is a minimal worker for the hand-off benchmarks: on every connection the primary hands
// it, it writes one byte and closes. Its cost per connection is as small as a worker's can be, so
// that the primary's share shows.
func helperTiny() {
	ln, err := cluster.Listen("tcp", os.Getenv("ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		c.Write([]byte{'x'})
		c.Close()
	}
}

// rawRoundTrip connects to 127.0.0.1:port with plain system calls (no allocation in this process),
// reads the tiny worker's byte and its end of file, and closes.
func rawRoundTrip(port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Connect(fd, &sa); err != nil {
		return err
	}
	var buf [8]byte
	got := 0
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		got += n
	}
	if got != 1 {
		return fmt.Errorf("read %d bytes, want 1", got)
	}
	return nil
}

// BenchmarkPrimaryHandoff is the primary's hand-off path alone, with real sockets: each iteration
// is one TCP connection, from a client making plain system calls, accepted by the primary, handed to
// one of two tiny workers (NODE_HANDLE with SCM_RIGHTS, NODE_HANDLE_ACK, the {accepted} reply) and
// answered with one byte. The workers are other processes, so allocs/op are the primary's (the
// client allocates nothing).
func BenchmarkPrimaryHandoff(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", par), func(b *testing.B) {
			port := testutil.FreePort(b)
			p := newPrimary(b, cluster.Settings{}, "tiny", fmt.Sprintf("ADDR=127.0.0.1:%d", port))
			forkListening(b, p, 2)
			if err := rawRoundTrip(port); err != nil { // warm: both workers' channels in use
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := rawRoundTrip(port); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
