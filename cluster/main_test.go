package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// The test binary doubles as every worker the tests need: a worker runs the helper named by
// CLUSTER_TEST_HELPER instead of the tests (the os/exec test suite's trick). A "raw" helper is started
// through env(1) with the cluster variables removed, so the cluster package leaves fd 3 alone and the
// helper speaks the wire protocol by hand, badly on purpose.
var helpers = map[string]func(){
	"http":  helperHTTP,
	"exit":  helperExit,
	"echo":  helperEcho,
	"udp":   helperUDP,
	"raw":   helperRaw,
	"idle":  helperIdle,
	"lines": helperLines,
	"stuck": helperStuck,
}

func TestMain(m *testing.M) {
	if name := os.Getenv("CLUSTER_TEST_HELPER"); name != "" && (cluster.IsWorker() || os.Getenv("RAW_CHANNEL_FD") != "" || os.Getenv("ADOPT_PRIMARY_FD") != "") {
		f, ok := helpers[name]
		if !ok {
			fmt.Fprintln(os.Stderr, "unknown helper", name)
			os.Exit(2)
		}
		f()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperHTTP serves "<worker id> <pid>" with the graceful helper.
func helperHTTP() {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d", cluster.ID(), os.Getpid())
	})}
	network := os.Getenv("NETWORK")
	if network == "" {
		network = "tcp"
	}
	if err := cluster.ServeHTTP(srv, network, os.Getenv("ADDR")); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// helperIdle ignores everything, the primary's disconnect included; only a signal (or the primary's
// death, which closes its channel) ends it.
func helperIdle() {
	for {
		time.Sleep(time.Hour)
	}
}

// helperStuck serves with ServeWith and a 300ms ShutdownTimeout a handler that never finishes (it
// tells the primary "in-handler" when a request is in it); when the drain is cut it prints the error
// and exits 3.
func helperStuck() {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cluster.Send("in-handler")
		<-r.Context().Done()
	})}
	ln, err := cluster.Listen("tcp", os.Getenv("ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	if err := cluster.ServeWith(srv, ln, cluster.ServeOptions{ShutdownTimeout: 300 * time.Millisecond}); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		if errors.Is(err, context.DeadlineExceeded) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

// helperLines writes LINES numbered lines to stdout and exits.
func helperLines() {
	n, _ := strconv.Atoi(os.Getenv("LINES"))
	w := bufio.NewWriterSize(os.Stdout, 4096)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "%05d\n", i)
	}
	w.Flush()
}

func helperExit() {
	code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
	os.Exit(code)
}

// helperEcho sends back every message, wrapped, and leaves on "bye".
func helperEcho() {
	if err := cluster.Send(map[string]any{"hello": cluster.ID()}); err != nil {
		os.Exit(3)
	}
	for m := range cluster.Messages() {
		cluster.Send(map[string]json.RawMessage{"echo": m})
		if string(m) == `"bye"` {
			return
		}
	}
}

func helperUDP() {
	pc, err := cluster.ListenPacket("udp4", os.Getenv("ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte(fmt.Sprintf("%d:%s", cluster.ID(), buf[:n])), from)
	}
}

// helperRaw speaks the protocol by hand on RAW_CHANNEL_FD and misbehaves as RAW_MODE says.
func helperRaw() {
	fd, _ := strconv.Atoi(os.Getenv("RAW_CHANNEL_FD"))
	f := os.NewFile(uintptr(fd), "raw")
	c, err := net.FileConn(f)
	if err != nil {
		os.Exit(5)
	}
	uc := c.(*net.UnixConn)
	write := func(s string) { uc.Write([]byte(s)) }
	switch os.Getenv("RAW_MODE") {
	case "garbage":
		write(`{"cmd":"NODE_CLUSTER","act":"online","seq":0}` + "\n")
		write("\n{not json}\n\"unterminated\n[1,2\n{\"cmd\":5}\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"nonsense\",\"seq\":1}\n")
		write(`{"cmd":"NODE_CLUSTER","ack":999,"seq":2}` + "\n")                // an ack nobody waits for
		write(`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"x":1}}` + "\n") // a handle without an fd
		write(`{"cmd":"NODE_HANDLE_ACK"}` + "\n")                               // an ACK for nothing
		r, w, _ := os.Pipe()                                                    // a handle with an fd
		uc.WriteMsgUnix([]byte(`{"cmd":"NODE_HANDLE","type":"net.Socket","msg":"user-handle"}`+"\n"), syscallRights(int(r.Fd())), nil)
		r.Close()
		w.Close()
		write(`"after-garbage"` + "\n")
		write(`{"cmd":"NODE_CLUSTER","act":"queryServer","ind`) // and hang up mid-message
		os.Exit(7)
	case "nonblock":
		// Listens, then reports whether the first connection's fd arrived non-blocking.
		write(`{"cmd":"NODE_CLUSTER","act":"online","seq":0}` + "\n")
		write(`{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":1}` + "\n")
		buf := make([]byte, 4096)
		oob := make([]byte, 64)
		uc.Read(buf)
		write(`{"cmd":"NODE_CLUSTER","act":"listening","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":2}` + "\n")
		for {
			_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
			if err != nil {
				os.Exit(8)
			}
			if oobn == 0 {
				continue
			}
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			fds, _ := syscall.ParseUnixRights(&msgs[0])
			fl, _ := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFL, 0)
			write(`{"cmd":"NODE_HANDLE_ACK"}` + "\n")
			write(fmt.Sprintf(`{"nonblock":%v}`, fl&unix.O_NONBLOCK != 0) + "\n")
			select {}
		}
	case "closeread":
		// Comes online and listens, then stops reading its channel (shutdown(SHUT_RD)) but stays alive:
		// the primary's next write to it fails with EPIPE.
		write(`{"cmd":"NODE_CLUSTER","act":"online","seq":0}` + "\n")
		write(`{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":1}` + "\n")
		buf := make([]byte, 4096)
		uc.Read(buf) // the reply
		uc.CloseRead()
		write(`{"cmd":"NODE_CLUSTER","act":"listening","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":2}` + "\n")
		time.Sleep(time.Minute) // killed by the test before that
		os.Exit(10)
	case "blackhole":
		// Comes online and listens, then dies on the first connection without acknowledging it.
		write(`{"cmd":"NODE_CLUSTER","act":"online","seq":0}` + "\n")
		q := `{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":1}`
		write(q + "\n")
		buf := make([]byte, 4096)
		oob := make([]byte, 64)
		uc.Read(buf) // the reply
		write(`{"cmd":"NODE_CLUSTER","act":"listening","index":0,"data":null,"address":"127.0.0.1","port":` + os.Getenv("PORT") + `,"addressType":4,"flags":0,"backlog":511,"seq":2}` + "\n")
		for {
			_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
			if err != nil || oobn > 0 {
				os.Exit(9) // a connection arrived: vanish without NODE_HANDLE_ACK
			}
		}
	}
}

func syscallRights(fd int) []byte { return syscall.UnixRights(fd) }

// --- test utilities ---

// newPrimary returns a Primary whose workers run helper. It checks that every goroutine started from
// here on has ended when the test ends, after the cleanup has killed the workers and shut p down.
func newPrimary(t testing.TB, s cluster.Settings, helper string, env ...string) *cluster.Primary {
	t.Helper()
	testutil.CheckGoroutines(t)
	if s.Exec == "" {
		s.Args = []string{"-test.run=^$"}
	}
	s.ExtraEnv = append(append(s.ExtraEnv, "CLUSTER_TEST_HELPER="+helper, workerGORACE), env...)
	p := cluster.NewPrimary(s)
	t.Cleanup(func() { killAndShutdown(t, p) })
	return p
}

// workerGORACE spares each helper worker of a -race test binary the race runtime's 1s sleep at exit
// (atexit_sleep_ms), which made every graceful exit take a second. Races are still reported.
var workerGORACE = "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")

// killAndShutdown kills every worker of p with SIGKILL, then shuts p down, which waits for all the
// goroutines p started.
func killAndShutdown(t testing.TB, p *cluster.Primary) {
	t.Helper()
	for _, w := range p.Workers() {
		w.Kill(syscall.SIGKILL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown after killing the workers: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Shutdown did not return within 30s")
	}
}

// rawPrimary returns a primary whose workers are this binary with the cluster variables stripped, so
// the helper drives fd 3 itself.
func rawPrimary(t testing.TB, mode string, env ...string) *cluster.Primary {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := cluster.Settings{Exec: "env", Args: []string{"-u", "NODE_UNIQUE_ID", "-u", "NODE_CHANNEL_FD", "RAW_CHANNEL_FD=3", "RAW_MODE=" + mode, exe, "-test.run=^$"}}
	return newPrimary(t, s, "raw", env...)
}

// mixedPrimary returns a primary that runs both kinds of worker: a fork with forkRaw's options is the
// raw helper in mode, any other fork the Go helper.
func mixedPrimary(t testing.TB, mode, helper string, env ...string) *cluster.Primary {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `if [ -n "$RAW" ]; then exec env -u NODE_UNIQUE_ID -u NODE_CHANNEL_FD RAW_CHANNEL_FD=3 RAW_MODE=` + mode +
		` "$0" -test.run='^$'; else exec "$0" -test.run='^$'; fi`
	return newPrimary(t, cluster.Settings{Exec: "sh", Args: []string{"-c", script, exe}}, helper, env...)
}

// forkRaw are the ForkOptions that make a mixedPrimary start its raw helper.
var forkRaw = cluster.ForkOptions{Env: map[string]string{"RAW": "1", "CLUSTER_TEST_HELPER": "raw"}}

func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// fork forks one worker and fails the test if that fails.
func fork(t testing.TB, p *cluster.Primary, o cluster.ForkOptions) *cluster.Worker {
	t.Helper()
	w, err := p.ForkWith(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// get does one request on a fresh connection and returns the body.
func get(t testing.TB, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Close = true
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// closeLoad is steady Connection: close traffic from a few clients to one URL, counting what
// succeeds and what fails, for the tests that replace workers under load.
type closeLoad struct {
	ok, failed atomic.Int64
	errs       sync.Map // error text → true
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startCloseLoad(url string, clients int) *closeLoad {
	l := &closeLoad{stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		l.wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				res, err := c.Get(url)
				if err != nil {
					l.failed.Add(1)
					l.errs.Store(err.Error(), true)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				l.ok.Add(1)
			}
		})
	}
	return l
}

// served waits until n more requests have succeeded.
func (l *closeLoad) served(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d more answered requests", n), func() bool { return l.ok.Load() >= want })
}

// finish stops the traffic and fails the test if any request failed; it returns the successes.
func (l *closeLoad) finish(t *testing.T, during string) int64 {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if n := l.failed.Load(); n != 0 {
		var list []string
		l.errs.Range(func(k, _ any) bool { list = append(list, k.(string)); return true })
		t.Fatalf("%d of %d requests failed %s: %v", n, l.ok.Load()+n, during, list)
	}
	return l.ok.Load()
}
