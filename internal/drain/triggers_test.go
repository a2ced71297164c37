package drain

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
)

// triggerPrimary is a Node cluster primary (Node's own, not corral's) with one worker that loads
// the drain (from DRAIN_NODE_OPTIONS / DRAIN_CONF) and serves HTTP. A line on stdin names what
// the primary does to the worker: "disconnect" (worker.disconnect()) or "shutdown"
// (worker.send('shutdown')). The worker logs "got shutdown" from its own 'message' listener; the
// primary logs "exit <code>" when the worker exits.
const triggerPrimary = `
const cluster = require('cluster');
if (cluster.isPrimary) {
  const w = cluster.fork({ NODE_OPTIONS: process.env.DRAIN_NODE_OPTIONS, CORRAL_DRAIN: process.env.DRAIN_CONF });
  w.on('message', (m) => { if (m && m.corral_drain) console.log('report ' + JSON.stringify(m.corral_drain)); });
  w.on('exit', (code, sig) => { console.log('exit ' + code + ' ' + sig); process.exit(0); });
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    if (d.includes('disconnect')) w.disconnect();
    if (d.includes('shutdown')) w.send('shutdown');
  });
} else {
  const s = require('http').createServer((q, r) => r.end('ok'));
  s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));
  process.on('message', (m) => {
    if (m === 'shutdown') { console.log('got shutdown'); s.close(() => process.exit(3)); }
  });
}
`

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDrainTriggers: the primary's disconnect and the 'shutdown' message start the drain too (here
// under Node's own cluster primary, on every Node line): an idle keep-alive connection still gets
// its next request answered with Connection: close, the worker reports its drain on the channel,
// and only then does the stop reach Node's cluster code (the worker exits 0 after the disconnect)
// or the app's 'message' listener (which runs and exits 3).
func TestDrainTriggers(t *testing.T) {
	lines := nodetest.Lines(t)
	dir := t.TempDir()
	path, err := Install(filepath.Join(dir, Dir))
	if err != nil {
		t.Fatal(err)
	}
	e := Env(path, map[string]string{}, Config{Timeout: 3 * time.Second, Idle: 2 * time.Second})
	script := filepath.Join(dir, "primary.js") // cluster.fork runs process.argv[1]: no -e
	if err := os.WriteFile(script, []byte(triggerPrimary), 0o600); err != nil {
		t.Fatal(err)
	}
	for major, node := range lines {
		for _, trigger := range []string{"disconnect", "shutdown"} {
			t.Run("node"+major+"/"+trigger, func(t *testing.T) {
				cmd := exec.Command(node, script)
				cmd.Env = append(os.Environ(), "DRAIN_NODE_OPTIONS="+e["NODE_OPTIONS"], "DRAIN_CONF="+e["CORRAL_DRAIN"])
				stdin, _ := cmd.StdinPipe()
				var out syncBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer cmd.Process.Kill()
				waitFor(t, &out, "port ")
				port := regexp.MustCompile(`port (\d+)`).FindStringSubmatch(out.String())[1]
				conn, err := net.Dial("tcp", "127.0.0.1:"+port)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				get := keptAliveGET(conn)
				if resp, err := get(); err != nil || resp.StatusCode != 200 || resp.Close {
					t.Fatalf("first request: %v %v", resp, err)
				}
				fmt.Fprintln(stdin, trigger)
				// The primary stops routing at once, the worker reacts a moment later: keep using the
				// connection until an answer says Connection: close; none may fail (without the drain
				// Node closes the connection whenever it is idle at that moment).
				deadline := time.Now().Add(10 * time.Second)
				for {
					resp, err := get()
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("request on the kept-alive connection after %s: %v %v (output %q)", trigger, resp, err, out.String())
					}
					if resp.Close {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no Connection: close 10 s after %s: %q", trigger, out.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
				if strings.Contains(out.String(), "got shutdown") {
					t.Error("the app's 'message' listener got 'shutdown' before the drain was done")
				}
				waitFor(t, &out, "exit ")
				o := out.String()
				if !strings.Contains(o, `report {"drained":1,"cut":0`) {
					t.Errorf("no drain report with 1 connection drained: %q", o)
				}
				want := "exit 0 null"
				if trigger == "shutdown" {
					want = "exit 3 null"
					if !strings.Contains(o, "got shutdown") {
						t.Errorf("the app never got 'shutdown': %q", o)
					}
				}
				if !strings.Contains(o, want) {
					t.Errorf("output %q, want %q", o, want)
				}
			})
		}
	}
}

// keptAliveGET returns a function that sends one GET on conn, a kept-alive connection, and reads
// its answer (5 s deadline).
func keptAliveGET(conn net.Conn) func() (*http.Response, error) {
	r := bufio.NewReader(conn)
	return func() (*http.Response, error) {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
}
