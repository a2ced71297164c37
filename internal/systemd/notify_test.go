package systemd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenNotify opens a datagram socket like systemd's notification socket.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn := listenNotify(t, path)
	t.Setenv("NOTIFY_SOCKET", path)

	sent, err := Notify("READY=1\nSTATUS=3 apps online")
	if err != nil || !sent {
		t.Fatalf("Notify = %v, %v", sent, err)
	}
	if got := readDatagram(t, conn); got != "READY=1\nSTATUS=3 apps online" {
		t.Errorf("received %q", got)
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@corral-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn := listenNotify(t, name)
	t.Setenv("NOTIFY_SOCKET", name)

	sent, err := Notify("STOPPING=1")
	if err != nil || !sent {
		t.Fatalf("Notify = %v, %v", sent, err)
	}
	if got := readDatagram(t, conn); got != "STOPPING=1" {
		t.Errorf("received %q", got)
	}
}

func TestNotifyUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
}

func TestNotifyErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody-listens")
	for _, sock := range []string{missing, "relative/sock", "vsock:2:1234"} {
		t.Setenv("NOTIFY_SOCKET", sock)
		sent, err := Notify("READY=1")
		if sent || err == nil || !strings.Contains(err.Error(), sock) {
			t.Errorf("NOTIFY_SOCKET=%s: Notify = %v, %v; want an error naming the socket", sock, sent, err)
		}
	}
}
