package ipc

import (
	"bufio"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A peer that marks its internal lines with 0x02 (Bun) gets its own framing back: marked internal lines,
// unmarked user messages, and handles as the marked inner message with "$hasHandle":true.
func TestBunFraming(t *testing.T) {
	got := make(chan Message, 10)
	c, peer := pair(t, Options{OnMessage: func(m Message) { got <- m }})
	if c.BunFraming() {
		t.Fatal("Bun framing before the peer said anything")
	}
	peer.Write([]byte("\x02{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n{\"user\":1}\n"))
	if m := within(t, got); !m.Internal || m.Cmd != "NODE_CLUSTER" || string(m.Raw) != `{"cmd":"NODE_CLUSTER","act":"online","seq":0}` {
		t.Fatalf("marked internal line delivered as %+v", m)
	}
	if m := within(t, got); m.Internal || string(m.Raw) != `{"user":1}` {
		t.Fatalf("user line delivered as %+v", m)
	}
	if !c.BunFraming() {
		t.Fatal("no Bun framing after a marked line")
	}
	c.SendRaw([]byte(`{"cmd":"NODE_CLUSTER","ack":1,"seq":0}`))
	c.Send("user")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	acked := make(chan error, 1)
	c.SendHandle(map[string]any{"cmd": "NODE_CLUSTER", "act": "newconn", "key": "k", "seq": 1}, "net.Native", fds[0], func(err error) { acked <- err })
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(peer)
	for _, want := range []string{
		"\x02{\"cmd\":\"NODE_CLUSTER\",\"ack\":1,\"seq\":0}\n",
		"\"user\"\n",
		"\x02{\"$hasHandle\":true,\"act\":\"newconn\",\"cmd\":\"NODE_CLUSTER\",\"key\":\"k\",\"seq\":1}\n",
	} {
		line, err := r.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("peer read %q, %v; want %q", line, err, want)
		}
	}
	// Bun answers the handle with an unmarked ACK.
	peer.Write([]byte("{\"cmd\":\"NODE_HANDLE_ACK\"}\n"))
	if err := within(t, acked); err != nil {
		t.Fatalf("handle reply: %v", err)
	}
}

func TestBunHandleLine(t *testing.T) {
	for in, want := range map[string]string{
		`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"a":1}}`: "\x02{\"$hasHandle\":true,\"a\":1}",
		`{"cmd":"NODE_HANDLE","type":"net.Native","msg":{}}`:      "\x02{\"$hasHandle\":true}",
		`{"cmd":"NODE_HANDLE","type":"net.Native","msg":"x"}`:     "\x02{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":\"x\"}",
	} {
		if got := string(bunHandleLine([]byte(in))); got != want {
			t.Errorf("bunHandleLine(%s) = %q, want %q", in, got, want)
		}
	}
}

// With SetHandleAlone a handle waits until the peer has read what was written before it, so that its
// fd comes with a read that begins with its own line (what Deno needs).
func TestHandleAloneWaitsForThePeer(t *testing.T) {
	c, peer := pair(t, Options{})
	c.SetHandleAlone()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	c.Send("first")
	c.SendHandle(map[string]any{"n": 1}, "net.Native", fds[0], nil)
	// Without the wait the handle would already be queued behind "first": give it time to be.
	time.Sleep(50 * time.Millisecond)
	read := func() (string, int) {
		buf, oob := make([]byte, 4096), make([]byte, 64)
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, oobn, _, _, err := peer.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		nfds := 0
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				got, _ := unix.ParseUnixRights(&m)
				for _, fd := range got {
					unix.Close(fd)
					nfds++
				}
			}
		}
		return string(buf[:n]), nfds
	}
	if s, n := read(); s != "\"first\"\n" || n != 0 {
		t.Fatalf("first read: %q with %d fds, want only the line before the handle", s, n)
	}
	if s, n := read(); s != `{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"n":1}}`+"\n" || n != 1 {
		t.Fatalf("second read: %q with %d fds, want the handle line and its fd", s, n)
	}
}
