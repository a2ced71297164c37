package drain

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestIdleConnectionGetsItsLastRequest is the drain's core promise, on every Node line, for http
// and https servers without corral: a keep-alive connection idle when SIGINT arrives still gets
// its next request answered (with Connection: close) during the grace, then the process dies by
// SIGINT as it would have. Without the drain Node closes the idle connection at once (tested too,
// so that the test can tell).
func TestIdleConnectionGetsItsLastRequest(t *testing.T) {
	lines := nodetest.Lines(t)
	dir := t.TempDir()
	path, err := Install(filepath.Join(dir, Dir))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, dir)
	apps := map[string]string{
		"http": `const s = require('http').createServer((q, r) => r.end('ok'));` +
			`process.on('SIGINT', () => { console.log('handler'); s.close(); });` +
			`s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));`,
		"https": fmt.Sprintf(`const fs = require('fs'); const s = require('https').createServer({cert: fs.readFileSync(%q), key: fs.readFileSync(%q)}, (q, r) => r.end('ok'));`, cert, key) +
			`process.on('SIGINT', () => { console.log('handler'); s.close(); });` +
			`s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));`,
	}
	for major, node := range lines {
		for kind, src := range apps {
			for _, withDrain := range []bool{true, false} {
				name := fmt.Sprintf("node%s/%s/drain=%v", major, kind, withDrain)
				t.Run(name, func(t *testing.T) {
					cmd := exec.Command(node, "-e", src)
					cmd.Env = os.Environ()
					if withDrain {
						e := Env(path, map[string]string{}, Config{Timeout: 3 * time.Second, Idle: 2 * time.Second})
						cmd.Env = append(cmd.Env, "NODE_OPTIONS="+e["NODE_OPTIONS"], "CORRAL_DRAIN="+e["CORRAL_DRAIN"])
					}
					var out syncBuffer
					cmd.Stdout, cmd.Stderr = &out, &out
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					defer cmd.Process.Kill()
					waitFor(t, &out, "port ")
					port := regexp.MustCompile(`port (\d+)`).FindStringSubmatch(out.String())[1]
					var conn net.Conn
					conn, err = net.Dial("tcp", "127.0.0.1:"+port)
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					if kind == "https" {
						conn = tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
					}
					get := keptAliveGET(conn)
					if resp, err := get(); err != nil || resp.StatusCode != 200 || resp.Close {
						t.Fatalf("first request: %v %v", resp, err)
					}
					cmd.Process.Signal(syscall.SIGINT)
					if withDrain {
						// The drain has begun once the listener is closed (a new connection is refused).
						deadline := time.Now().Add(10 * time.Second)
						for {
							c, err := net.Dial("tcp", "127.0.0.1:"+port)
							if err != nil {
								break
							}
							c.Close()
							if time.Now().After(deadline) {
								t.Fatal("the server still accepts 10 s after SIGINT")
							}
							time.Sleep(5 * time.Millisecond)
						}
						// The drain holds the signal: the app's handler has not run yet.
						resp, err := get()
						if err != nil || resp.StatusCode != 200 || !resp.Close {
							t.Fatalf("request on the idle connection after SIGINT: %v %v; want 200 with Connection: close", resp, err)
						}
						if strings.Contains(out.String(), "handler") {
							t.Error("the app's SIGINT handler ran before the drain was done")
						}
					} else {
						// Without the drain, the handler's server.close() closes the idle connection
						// (Node 19 and later; Node 18 leaves it to keepAliveTimeout).
						if major == "18" {
							return
						}
						waitFor(t, &out, "handler")
						deadline := time.Now().Add(5 * time.Second)
						for {
							if _, err := get(); err != nil {
								break // closed, as expected
							}
							if time.Now().After(deadline) {
								t.Fatal("without the drain the idle connection stayed open")
							}
						}
						return
					}
					done := make(chan error, 1)
					go func() { done <- cmd.Wait() }()
					select {
					case <-done:
					case <-time.After(10 * time.Second):
						t.Fatalf("still running 10 s after SIGINT: %q", out.String())
					}
					// The app's handler closed the server (nothing else keeps it alive): exit 0.
					if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(out.String(), "handler") {
						t.Errorf("exit %d, output %q; want the handler to run and the process to end", code, out.String())
					}
				})
			}
		}
	}
}
