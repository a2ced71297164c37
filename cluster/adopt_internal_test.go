//go:build linux

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// fakeWorker is the worker's end of an adopted channel, played by the test.
type fakeWorker struct {
	t    *testing.T
	c    *net.UnixConn
	buf  []byte // read but not yet returned
	fds  []int
	seen []string
}

// next returns the next line from the primary, with the fd that came with it (or -1).
func (f *fakeWorker) next() (string, int) {
	f.t.Helper()
	for {
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			line := string(f.buf[:i])
			f.buf = f.buf[i+1:]
			f.seen = append(f.seen, line)
			fd := -1
			if bytes.HasPrefix([]byte(line), []byte(`{"cmd":"NODE_HANDLE",`)) {
				if len(f.fds) == 0 {
					f.t.Fatalf("NODE_HANDLE without an fd: %s", line)
				}
				fd, f.fds = f.fds[0], f.fds[1:]
			}
			return line, fd
		}
		b := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4*4))
		f.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, oobn, _, _, err := f.c.ReadMsgUnix(b, oob)
		if err != nil {
			f.t.Fatalf("fake worker read: %v (lines so far: %q)", err, f.seen)
		}
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				f.fds = append(f.fds, fds...)
			}
		}
		f.buf = append(f.buf, b[:n]...)
	}
}

// handle reads the next line, which must be a NODE_HANDLE whose newconn is for key, and returns its
// seq and fd.
func (f *fakeWorker) handle(key string) (int64, int) {
	f.t.Helper()
	line, fd := f.next()
	var m struct {
		Cmd string
		Msg wireMsg
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Cmd != "NODE_HANDLE" || m.Msg.Act != "newconn" || m.Msg.Key != key {
		f.t.Fatalf("want a newconn for %q, got %s", key, line)
	}
	return m.Msg.Seq, fd
}

func (f *fakeWorker) write(lines ...string) {
	f.t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	if _, err := f.c.Write(b); err != nil {
		f.t.Fatalf("fake worker write: %v", err)
	}
}

// An adopted worker's channel is read from the middle of a line, and carries replies to the earlier
// primary's last hand-off. Neither may be taken for something of the new primary: the tail is
// dropped, and the worker gets no connection until its first round trip is answered, so the stale
// NODE_HANDLE_ACK (or NACK) cannot acknowledge the new primary's first hand-off, and the stale
// {"ack","accepted"} meets no callback (seq numbers continue above the old ones).
func TestAdoptIgnoresWhatWasMeantForTheEarlierPrimary(t *testing.T) {
	for _, stale := range []string{"NODE_HANDLE_ACK", "NODE_HANDLE_NACK"} {
		t.Run(stale, func(t *testing.T) {
			testutil.CheckGoroutines(t)
			// The worker's process: anything that runs until killed; the test plays its channel.
			proc := exec.Command("sleep", "600")
			if err := proc.Start(); err != nil {
				t.Fatal(err)
			}
			reaped := make(chan struct{})
			t.Cleanup(func() {
				proc.Process.Kill()
				<-reaped
			})
			statusCalls := make(chan int, 1)
			status := func(pid int) (int, os.Signal, bool) {
				statusCalls <- pid
				proc.Wait()
				close(reaped)
				ws := proc.ProcessState.Sys().(syscall.WaitStatus)
				if ws.Signaled() {
					return -1, ws.Signal(), true
				}
				return ws.ExitStatus(), nil, true
			}

			p := NewPrimary(Settings{})
			t.Cleanup(func() {
				for _, w := range p.Workers() { // on failure: the fake worker would not leave when asked
					w.Kill(syscall.SIGKILL)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := p.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			})
			msgs := make(chan string, 10)
			p.OnMessage(func(w *Worker, m json.RawMessage) { msgs <- string(m) })
			exits := make(chan string, 1)
			p.OnExit(func(w *Worker, code int, sig os.Signal) { exits <- fmt.Sprintf("%d %d %v", w.ID, code, sig) })

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			lnFile, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close() // the duplicate keeps the socket listening
			if err := p.AdoptListener("k", lnFile); err != nil {
				t.Fatal(err)
			}

			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			wf := os.NewFile(uintptr(fds[1]), "worker end")
			wc, err := net.FileConn(wf)
			wf.Close()
			if err != nil {
				t.Fatal(err)
			}
			fw := &fakeWorker{t: t, c: wc.(*net.UnixConn)}
			t.Cleanup(func() { fw.c.Close() })
			// What the earlier primary left: the tail of a reply it had read the first half of.
			fw.write(`ccepted":true,"seq":8}`)

			p.SetNextSeq(1000)
			w, err := p.Adopt(AdoptSpec{ID: 7, Pid: proc.Process.Pid, Channel: os.NewFile(uintptr(fds[0]), "primary end"),
				Keys: []string{"k"}, Listening: true, Status: status})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.NextWorkerID(); got != 8 {
				t.Errorf("NextWorkerID after adopting worker 7 = %d, want 8", got)
			}
			select {
			case <-w.Listening():
			default:
				t.Error("Listening not closed for a worker adopted as listening")
			}

			// A connection arrives at once, while the first round trip is unanswered: it must wait, in
			// the socket's backlog (no worker is free, so the primary does not even watch the socket).
			client, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			p.mu.Lock()
			rr := p.handles["k"].(*rrHandle)
			armed, queued, early := rr.armed, len(rr.queue), rr.busy[w]
			p.mu.Unlock()
			if armed || queued != 0 || early != nil {
				t.Fatalf("before the adopted worker's first round trip: watched %v, %d queued, hand-off %+v; want the connection left in the backlog", armed, queued, early)
			}

			// The first round trip. The stale reply comes first, as from a worker that was slow to
			// answer the earlier primary's last hand-off.
			seq, fd := fw.handle(adoptSyncKey)
			if seq != 1000 {
				t.Errorf("first round trip has seq %d, want 1000 (SetNextSeq)", seq)
			}
			unix.Close(fd)
			fw.write(`{"cmd":"`+stale+`"}`, `{"cmd":"NODE_CLUSTER","ack":5,"accepted":true,"seq":9}`,
				`{"cmd":"NODE_HANDLE_ACK"}`, fmt.Sprintf(`{"cmd":"NODE_CLUSTER","ack":%d,"accepted":false,"seq":10}`, seq))
			if stale == "NODE_HANDLE_NACK" {
				// The NACK was taken for the round trip's: a second one follows, and only its answer counts.
				seq2, fd := fw.handle(adoptSyncKey)
				if seq2 <= seq {
					t.Errorf("second round trip seq %d after %d", seq2, seq)
				}
				unix.Close(fd)
				fw.write(`{"cmd":"NODE_HANDLE_ACK"}`, fmt.Sprintf(`{"cmd":"NODE_CLUSTER","ack":%d,"accepted":false,"seq":11}`, seq2))
			}

			// Now the connection goes to the worker, whose ACK is still to come.
			cseq, cfd := fw.handle("k")
			fw.write(`{"sync":1}`) // everything the worker wrote before has been read once this arrives
			if m := wait(t, msgs, "the worker's message"); m != `{"sync":1}` {
				t.Fatalf("message %s", m)
			}
			p.mu.Lock()
			ho := rr.busy[w]
			acked := ho != nil && ho.acked
			p.mu.Unlock()
			if ho == nil || acked {
				t.Fatalf("hand-off in flight = %+v: a reply meant for the earlier primary acknowledged it", ho)
			}
			fw.write(`{"cmd":"NODE_HANDLE_ACK"}`, fmt.Sprintf(`{"cmd":"NODE_CLUSTER","ack":%d,"accepted":true,"seq":12}`, cseq))
			conn := os.NewFile(uintptr(cfd), "conn")
			conn.Write([]byte("hello from the adopted worker"))
			conn.Close()
			client.SetReadDeadline(time.Now().Add(20 * time.Second))
			if b, err := io.ReadAll(client); string(b) != "hello from the adopted worker" {
				t.Fatalf("client read %q, %v", b, err)
			}

			// Messages both ways; the channel survived the garbage.
			if err := w.Send(map[string]int{"n": 1}); err != nil {
				t.Fatal(err)
			}
			for {
				line, _ := fw.next()
				if line == `{"n":1}` {
					break
				}
				if !bytes.Contains([]byte(line), []byte(`"NODE_CLUSTER"`)) {
					t.Fatalf("unexpected line before the message: %s", line)
				}
			}
			if !w.IsConnected() {
				t.Fatal("the adopted worker's channel closed")
			}

			// Kill: the exit comes from the pidfd and its status from AdoptSpec.Status.
			if err := w.Kill(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if pid := wait(t, statusCalls, "Status"); pid != proc.Process.Pid {
				t.Errorf("Status asked for pid %d, want %d", pid, proc.Process.Pid)
			}
			if e := wait(t, exits, "exit"); e != "7 -1 killed" {
				t.Fatalf("exit event %q, want worker 7 killed by SIGKILL", e)
			}
		})
	}
}

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
