package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/sys/unix"
)

// pair returns a Channel and the raw peer socket. The test fails if a goroutine the channel started
// outlives it.
func pair(t testing.TB, opts Options) (*Channel, *net.UnixConn) {
	t.Helper()
	testutil.CheckGoroutines(t)
	parent, child, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := FromFD(int(child.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	child.Close()
	c := New(parent, opts)
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

func within[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out")
	}
	var z T
	return z
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		in       string
		internal bool
		cmd      string
		bad      bool
	}{
		{`{"cmd":"NODE_CLUSTER","act":"online"}`, true, "NODE_CLUSTER", false},
		{`{"cmd":"NODE_FOO"}`, true, "NODE_FOO", false},
		{`{"cmd":"NODE_"}`, false, "NODE_", false},
		{`{"cmd":"node_bar"}`, false, "node_bar", false},
		{`{"cmd":5}`, false, "", false},
		{`"plain"`, false, "", false},
		{`[1,2]`, false, "", false},
		{`{not json}`, false, "", true},
		{``, false, "", true},
	} {
		internal, cmd, err := Classify([]byte(c.in))
		if (err != nil) != c.bad || internal != c.internal || (internal && cmd != c.cmd) {
			t.Errorf("Classify(%s) = %v %q %v", c.in, internal, cmd, err)
		}
	}
}

func TestMessagesAndSplitReads(t *testing.T) {
	got := make(chan Message, 10)
	c, peer := pair(t, Options{OnMessage: func(m Message) { got <- m }})
	// One message split across writes, two in one write, UTF-8 split in the middle of a rune.
	peer.Write([]byte(`{"a":`))
	peer.Write([]byte("1}\n\"x\"\n\"\xc3"))
	peer.Write([]byte("\xa9\"\n"))
	for _, want := range []string{`{"a":1}`, `"x"`, `"é"`} {
		if m := within(t, got); string(m.Raw) != want || m.FD != -1 {
			t.Fatalf("got %s (fd %d), want %s", m.Raw, m.FD, want)
		}
	}
	if err := c.Send(map[string]int{"b": 2}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _ := peer.Read(buf)
	if string(buf[:n]) != "{\"b\":2}\n" {
		t.Fatalf("peer read %q", buf[:n])
	}
}

// While a handle is unacknowledged nothing else is written; ACK opens the gate.
func TestHandleGate(t *testing.T) {
	c, peer := pair(t, Options{})
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	replied := make(chan error, 1)
	c.SendHandle(map[string]string{"act": "newconn"}, "net.Native", int(r.Fd()), func(err error) { replied <- err })
	c.Send("after")
	buf := make([]byte, 1000)
	oob := make([]byte, 100)
	n, oobn, _, _, err := peer.ReadMsgUnix(buf, oob)
	if err != nil || oobn == 0 {
		t.Fatalf("read handle: n=%d oobn=%d err=%v", n, oobn, err)
	}
	if want := `{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"act":"newconn"}}` + "\n"; string(buf[:n]) != want {
		t.Fatalf("handle line %q", buf[:n])
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	fds, _ := unix.ParseUnixRights(&msgs[0])
	if len(fds) != 1 {
		t.Fatalf("%d fds with the handle", len(fds))
	}
	unix.Close(fds[0])
	// Nothing may follow before the ACK. (A bounded look: the gate is the absence of an event.)
	peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := peer.Read(buf); err == nil {
		t.Fatalf("wrote %q before NODE_HANDLE_ACK", buf[:n])
	}
	peer.SetReadDeadline(time.Time{})
	peer.Write([]byte(`{"cmd":"NODE_HANDLE_ACK"}` + "\n"))
	if err := within(t, replied); err != nil {
		t.Fatalf("reply %v", err)
	}
	n, _ = peer.Read(buf)
	if string(buf[:n]) != "\"after\"\n" {
		t.Fatalf("after ACK: %q", buf[:n])
	}
}

func TestHandleNACKAndClose(t *testing.T) {
	c, peer := pair(t, Options{})
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	replied := make(chan error, 2)
	c.SendHandle("one", "net.Native", int(r.Fd()), func(err error) { replied <- err })
	c.SendHandle("two", "net.Native", int(r.Fd()), func(err error) { replied <- err })
	buf := make([]byte, 1000)
	peer.Read(buf)
	peer.Write([]byte(`{"cmd":"NODE_HANDLE_NACK"}` + "\n"))
	if err := within(t, replied); !errors.Is(err, ErrNACK) {
		t.Fatalf("first reply %v, want ErrNACK", err)
	}
	peer.Read(buf) // the second handle went out after the NACK
	c.Close()
	if err := within(t, replied); !errors.Is(err, ErrClosed) {
		t.Fatalf("second reply %v, want ErrClosed", err)
	}
	if err := c.Send("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

// A NODE_HANDLE from the peer is ACKed when its fd arrived, NACKed when not.
func TestReceiveHandle(t *testing.T) {
	got := make(chan Message, 2)
	_, peer := pair(t, Options{OnMessage: func(m Message) { got <- m }})
	peer.Write([]byte(`{"cmd":"NODE_HANDLE","type":"net.Native","msg":"nofd"}` + "\n"))
	buf := make([]byte, 100)
	n, _ := peer.Read(buf)
	if string(buf[:n]) != `{"cmd":"NODE_HANDLE_NACK"}`+"\n" {
		t.Fatalf("answer to a handle without fd: %q", buf[:n])
	}
	r, w, _ := os.Pipe()
	defer w.Close()
	peer.WriteMsgUnix([]byte(`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn"}}`+"\n"), unix.UnixRights(int(r.Fd())), nil)
	r.Close()
	n, _ = peer.Read(buf)
	if string(buf[:n]) != `{"cmd":"NODE_HANDLE_ACK"}`+"\n" {
		t.Fatalf("answer to a handle: %q", buf[:n])
	}
	m := within(t, got)
	if m.FD < 0 || !m.Internal || m.Cmd != "NODE_CLUSTER" || m.HandleType != "net.Native" {
		t.Fatalf("message %+v", m)
	}
	unix.Close(m.FD)
}

// A write that fails at once (the peer shut its read side: EPIPE) closes the channel, and the
// callbacks it causes (the handle's onReply, OnClose) run on the channel's goroutine, not on the
// sender's: a sender holding a lock that the callbacks take must not deadlock.
func TestCallbacksNeverRunOnTheSendersGoroutine(t *testing.T) {
	var mu sync.Mutex // stands for the caller's lock (cluster's Primary.mu)
	closed := make(chan error, 1)
	replied := make(chan error, 1)
	c, peer := pair(t, Options{OnClose: func(err error) { mu.Lock(); defer mu.Unlock(); closed <- err }})
	if err := peer.CloseRead(); err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	sent := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		sent <- c.SendHandle("conn", "net.Native", int(r.Fd()), func(err error) { mu.Lock(); defer mu.Unlock(); replied <- err })
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("SendHandle: %v (want nil: queued; the failure goes to onReply)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SendHandle did not return: it ran a callback on its caller's goroutine, under the caller's lock")
	}
	if err := within(t, replied); !errors.Is(err, ErrClosed) {
		t.Fatalf("onReply(%v), want ErrClosed", err)
	}
	if err := within(t, closed); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("OnClose(%v), want the EPIPE of the failed write", err)
	}
	within(t, c.Done())
	if err := c.Send("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after the failure: %v, want ErrClosed", err)
	}
}

// Close returns at once, under a lock OnClose takes; OnClose follows on the writer goroutine, before Done.
func TestCloseRunsOnCloseOnTheWriter(t *testing.T) {
	var mu sync.Mutex
	var ran bool
	c, _ := pair(t, Options{OnClose: func(err error) { mu.Lock(); ran = true; mu.Unlock() }})
	mu.Lock()
	c.Close()
	mu.Unlock()
	within(t, c.Done())
	mu.Lock()
	defer mu.Unlock()
	if !ran {
		t.Fatal("Done closed before OnClose ran")
	}
}

func TestOversizedLineClosesChannel(t *testing.T) {
	closed := make(chan error, 1)
	_, peer := pair(t, Options{MaxLine: 1024, OnClose: func(err error) { closed <- err }})
	peer.Write(bytes.Repeat([]byte("x"), 4096))
	if err := within(t, closed); err == nil || !strings.Contains(err.Error(), "longer than 1024") {
		t.Fatalf("close error %v", err)
	}
}

func TestSendWaitAndRawValidation(t *testing.T) {
	c, peer := pair(t, Options{})
	done := make(chan error, 1)
	go func() { done <- c.SendWait("w") }()
	buf := make([]byte, 10)
	n, _ := peer.Read(buf)
	if string(buf[:n]) != "\"w\"\n" || within(t, done) != nil {
		t.Fatalf("SendWait wrote %q", buf[:n])
	}
	if err := c.SendRaw([]byte("a\nb")); err == nil {
		t.Fatal("SendRaw accepted a newline")
	}
	if err := c.Send(func() {}); err == nil {
		t.Fatal("Send accepted an unencodable value")
	}
}

// FuzzChannel feeds arbitrary bytes to a channel: it must never panic or hang, and every line it
// delivers must be valid JSON.
func FuzzChannel(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"NODE_CLUSTER","act":"online","seq":0}` + "\n",
		`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"act":"newconn"}}` + "\n",
		`{"cmd":"NODE_HANDLE_ACK"}` + "\n" + `{"cmd":"NODE_HANDLE_NACK"}` + "\n",
		"\n\n{\n}\n\"\xff\"\n",
		`{"cmd":{"x":1}}` + "\n[1,2,3]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, child, err := Pair()
		if err != nil {
			t.Skip(err)
		}
		peer, _ := FromFD(int(child.Fd()))
		child.Close()
		c := New(parent, Options{MaxLine: 4096, OnMessage: func(m Message) {
			if !json.Valid(m.Raw) {
				t.Errorf("delivered invalid JSON %q", m.Raw)
			}
			if m.FD >= 0 {
				unix.Close(m.FD)
			}
		}})
		peer.Write(data)
		peer.Close()
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("channel did not close after the peer hung up")
		}
	})
}

// A message larger than the socket buffer is written partly at once and the rest by the writer,
// intact and in order, with the messages queued after it.
func TestLargeMessagesStayWhole(t *testing.T) {
	got := make(chan Message, 4)
	c, peer := pair(t, Options{})
	_ = got
	big := strings.Repeat("x", 4<<20)
	if err := c.Send(big); err != nil {
		t.Fatal(err)
	}
	c.Send("after")
	r := New(peer, Options{OnMessage: func(m Message) { got <- m }})
	defer r.Close()
	if m := within(t, got); len(m.Raw) != len(big)+2 || string(m.Raw[1:11]) != "xxxxxxxxxx" {
		t.Fatalf("big message: %d bytes", len(m.Raw))
	}
	if m := within(t, got); string(m.Raw) != `"after"` {
		t.Fatalf("then %s", m.Raw)
	}
}

// CloseRead, unlike Close, still delivers what the peer wrote before it: the ACK of a handle in
// flight reaches the handle's callback as nil, not ErrClosed, even though the peer's end stays open
// (a dead worker whose child inherited the channel). Close would drop the ACK and report a handle the
// peer has as undelivered; the cluster primary would then hand the same connection to a second
// worker.
func TestCloseReadDeliversWhatThePeerWrote(t *testing.T) {
	got := make(chan Message, 4)
	c, peer := pair(t, Options{ExternalRead: true, OnMessage: func(m Message) { got <- m }})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	reply := make(chan error, 1)
	if err := c.SendHandle(map[string]any{"cmd": "NODE_CLUSTER", "act": "newconn"}, "net.Native", int(w.Fd()), func(err error) { reply <- err }); err != nil {
		t.Fatal(err)
	}
	// The peer receives the handle, acknowledges it and says one more thing, then stays silent with
	// its end open.
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := peer.ReadMsgUnix(buf, oob)
	if err != nil || !bytes.Contains(buf[:n], []byte("NODE_HANDLE")) || oobn == 0 {
		t.Fatalf("peer read %q (oob %d): %v", buf[:n], oobn, err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	fds, _ := unix.ParseUnixRights(&msgs[0])
	unix.Close(fds[0])
	if _, err := peer.Write([]byte("{\"cmd\":\"NODE_HANDLE_ACK\"}\n\"after\"\n")); err != nil {
		t.Fatal(err)
	}
	c.CloseRead()
	for c.ReadOnce() { // the owner's poll loop: the socket stays readable until end of file
	}
	if err := within(t, reply); err != nil {
		t.Fatalf("handle callback got %v after CloseRead, want nil: the peer's ACK was dropped", err)
	}
	if m := within(t, got); string(m.Raw) != `"after"` {
		t.Fatalf("message %s, want \"after\"", m.Raw)
	}
	within(t, c.Done())
}

// The ACK of a received handle is on the wire before OnMessage gets the fd: the receiver may use the
// fd at once (a worker's server reads the request from a handed-over connection), and if it then dies
// before its writer sent an ACK still queued, the sender takes the handle for undelivered and gives it
// to someone else, who waits for bytes the dead receiver consumed: a connection left hanging.
func TestHandleACKIsWrittenBeforeDelivery(t *testing.T) {
	const rounds = 200
	acked := make(chan bool, rounds)
	var peerp atomic.Pointer[net.UnixConn] // set before the first handle is sent
	_, peer := pair(t, Options{OnMessage: func(m Message) {
		peer := peerp.Load()
		// The peer's socket must hold the ACK already: a non-blocking peek finds it.
		buf := make([]byte, 64)
		var n int
		var perr error
		rc, _ := peer.SyscallConn()
		rc.Control(func(fd uintptr) { n, _, perr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT) })
		acked <- perr == nil && string(buf[:n]) == `{"cmd":"NODE_HANDLE_ACK"}`+"\n"
		unix.Close(m.FD)
	}})
	peerp.Store(peer)
	buf := make([]byte, 64)
	for i := 0; i < rounds; i++ {
		r, w, _ := os.Pipe()
		peer.WriteMsgUnix([]byte(`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn"}}`+"\n"), unix.UnixRights(int(r.Fd())), nil)
		r.Close()
		w.Close()
		if !within(t, acked) {
			t.Fatalf("round %d: OnMessage got the fd before the NODE_HANDLE_ACK was written", i)
		}
		if n, _ := peer.Read(buf); string(buf[:n]) != `{"cmd":"NODE_HANDLE_ACK"}`+"\n" {
			t.Fatalf("round %d: answer %q", i, buf[:n])
		}
	}
}
