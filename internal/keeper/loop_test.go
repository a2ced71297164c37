package keeper

// In-process tests of the keeper's loop: a keeper built by newKeeper (no daemon) gets records on a
// socketpair attached as one of its connections, and pollOnce runs one turn of the real loop.

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/corralhq/corral/internal/fdhygiene"
	"golang.org/x/sys/unix"
)

func newTestKeeper(t testing.TB, cfg Config) *keeper {
	t.Helper()
	cfg.Dir = filepath.Join(t.TempDir(), "k")
	k, err := newKeeper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.close)
	return k
}

// peer is the client end of a socketpair attached to the keeper; send and recv do not allocate.
type peer struct {
	fd   int
	slot int
	buf  [2 * maxRecord]byte
	oob  [128]byte
	msg  unix.Msghdr
	iov  unix.Iovec
	nfds int
}

func attach(t testing.TB, k *keeper) *peer {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(sp[1], true)
	for i := range k.conns {
		if k.conns[i].fd < 0 {
			k.conns[i] = conn{fd: int32(sp[1]), pid: int32(os.Getpid())}
			p := &peer{fd: sp[0], slot: i}
			t.Cleanup(func() { unix.Close(p.fd); k.closeConn(p.slot) })
			return p
		}
	}
	t.Fatal("no free connection slot")
	return nil
}

func (p *peer) send(rec []byte, fds ...int) unix.Errno {
	p.iov.Base = &rec[0]
	p.iov.SetLen(len(rec))
	p.msg = unix.Msghdr{Iov: &p.iov}
	p.msg.SetIovlen(1)
	if len(fds) > 0 {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&p.oob[0]))
		h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_RIGHTS
		h.SetLen(unix.CmsgLen(4 * len(fds)))
		for i, fd := range fds {
			*(*int32)(unsafe.Pointer(&p.oob[unix.CmsgLen(0)+4*i])) = int32(fd)
		}
		p.msg.Control = &p.oob[0]
		p.msg.SetControllen(unix.CmsgSpace(4 * len(fds)))
	}
	_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msg)), unix.MSG_DONTWAIT)
	return e
}

// recv reads one reply (non-blocking) and closes any fds that came with it, counting them.
func (p *peer) recv() (header, []byte, bool) {
	p.iov.Base = &p.buf[0]
	p.iov.SetLen(len(p.buf))
	p.msg = unix.Msghdr{Iov: &p.iov, Control: &p.oob[0]}
	p.msg.SetIovlen(1)
	p.msg.SetControllen(len(p.oob))
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msg)), unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if e != 0 || n == 0 {
		return header{}, nil, false
	}
	p.nfds = 0
	if p.msg.Controllen > 0 {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&p.oob[0]))
		for off := unix.CmsgLen(0); off+4 <= int(h.Len); off += 4 {
			fd := *(*int32)(unsafe.Pointer(&p.oob[off]))
			unix.Close(int(fd))
			p.nfds++
		}
	}
	h, ok := getHeader(p.buf[:n])
	return h, p.buf[hdrLen:n], ok
}

func record(op byte, flags byte, arg uint64, payload string) []byte {
	b := make([]byte, hdrLen+len(payload))
	putHeader(b, header{op: op, flags: flags, arg: arg})
	copy(b[hdrLen:], payload)
	return b
}

// TestLoopDoesNotAllocate: a turn of the loop serving PING, STORE, FETCH, REMOVE, EXITS, plus
// recording an exit and reaping, allocates nothing.
func TestLoopDoesNotAllocate(t *testing.T) {
	k := newTestKeeper(t, Config{})
	p := attach(t, k)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pipeFD := int(r.Fd())
	ping, store, fetch, remove := record(opPing, 0, 0, ""), record(opStore, 0, 0, "log/app/0/out"), record(opFetch, 0, 0, ""), record(opRemove, 0, 0, "log/app/0/out")
	exits := record(opExits, 0, 0, "")
	turn := func(rec []byte, fds ...int) (header, []byte) {
		if e := p.send(rec, fds...); e != 0 {
			t.Fatalf("send: %v", e)
		}
		k.pollOnce(1000)
		h, pl, ok := p.recv()
		if !ok {
			t.Fatal("no reply")
		}
		return h, pl
	}
	run := func() {
		if h, _ := turn(ping); h.op != opPing|opReply {
			t.Fatalf("ping: %+v", h)
		}
		if h, _ := turn(store, pipeFD); h.op != opStore|opReply {
			t.Fatalf("store: %+v", h)
		}
		if h, _ := turn(fetch); h.op != opFetch|opReply || h.n != 1 || p.nfds != 1 {
			t.Fatalf("fetch: %+v %d fds", h, p.nfds)
		}
		if h, _ := turn(remove); h.op != opRemove|opReply || h.arg != 1 {
			t.Fatalf("remove: %+v", h)
		}
		k.recordExit(12345, 0)
		putHeader(exits, header{op: opExits, arg: k.seq - 1})
		if h, _ := turn(exits); h.op != opExits|opReply || h.n != 1 {
			t.Fatalf("exits: %+v", h)
		}
		k.reap()
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("%v allocations per loop turn, want 0", n)
	}
}

// TestExitTable: the table keeps the newest MaxExits records, counts the dropped ones, forgets
// what is acknowledged, and answers a parked EXITS as soon as an app exits.
func TestExitTable(t *testing.T) {
	k := newTestKeeper(t, Config{MaxExits: 3})
	p := attach(t, k)
	for pid := 101; pid <= 105; pid++ {
		k.recordExit(pid, uint32(pid-100)<<8) // exit status 1..5
	}
	ask := func(ack uint64, wait bool) (header, []Exit, bool) {
		t.Helper()
		var fl byte
		if wait {
			fl = flagWait
		}
		p.send(record(opExits, fl, ack, ""))
		k.pollOnce(1000)
		h, pl, ok := p.recv()
		if !ok {
			return h, nil, false
		}
		ex, good := decodeExits(pl, int(h.n))
		if !good {
			t.Fatalf("bad EXITS payload %x", pl)
		}
		return h, ex, true
	}
	h, ex, _ := ask(0, false)
	if h.arg != 2 || len(ex) != 3 || ex[0].Seq != 3 || ex[0].PID != 103 || ex[2].PID != 105 || ex[2].Status != 5<<8 {
		t.Fatalf("lost %d, exits %+v; want 2 lost, seq 3..5", h.arg, ex)
	}
	if _, ex, _ = ask(4, false); len(ex) != 1 || ex[0].Seq != 5 {
		t.Fatalf("after ack 4: %+v", ex)
	}
	if _, _, ok := ask(5, true); ok {
		t.Fatal("EXITS with wait answered with nothing to say")
	}
	if k.nexits != 0 || !k.conns[p.slot].waiting {
		t.Fatalf("table %d, parked %v", k.nexits, k.conns[p.slot].waiting)
	}
	k.recordExit(106, 9) // killed by SIGKILL
	h, pl, ok := p.recv()
	ex, _ = decodeExits(pl, int(h.n))
	if !ok || len(ex) != 1 || ex[0].PID != 106 || ex[0].Seq != 6 {
		t.Fatalf("parked EXITS got %+v %v", ex, ok)
	}
}

func TestCheckDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	if err := checkDir(dir, os.Geteuid()); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	if err := checkDir(dir, os.Geteuid()); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700", st.Mode().Perm())
	}
	if err := checkDir(dir, os.Geteuid()+1); err == nil {
		t.Fatal("accepted a directory of another uid")
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	if err := checkDir(link, os.Geteuid()); err == nil {
		t.Fatal("accepted a symlink")
	}
}

// TestSecondKeeperRefused: one keeper per directory (flock).
func TestSecondKeeperRefused(t *testing.T) {
	k := newTestKeeper(t, Config{})
	if _, err := newKeeper(Config{Dir: k.cfg.Dir}); err == nil {
		t.Fatal("a second keeper started in the same directory")
	}
	if st, err := os.Stat(k.sockPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v; want mode 0600", st, err)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(record(opPing, 0, 0, ""), uint8(0))
	f.Add(record(opStore, 0, 0, "ln/tcp/0.0.0.0:3000"), uint8(1))
	f.Add(record(opRemove, 0, 0, "ipc/app/7"), uint8(0))
	f.Add(record(opFetch, 0, 64, ""), uint8(0))
	f.Add(record(opExits, flagWait, 17, ""), uint8(0))
	f.Add(record(opReady, 0, 0, ""), uint8(0))
	f.Add(record(opUpdate, 0, 3000, "/usr/bin/corral\x00daemon\x00"), uint8(0))
	f.Add([]byte("KPR1"), uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, nfds uint8) {
		h, p, code := parseRequest(b, int(nfds%5))
		if code != 0 {
			return
		}
		switch h.op {
		case opStore:
			if nfds%5 != 1 || !validName(p) {
				t.Fatalf("accepted STORE with %d fds, name %q", nfds%5, p)
			}
		case opUpdate:
			if args := splitArgv(p); len(args) == 0 || args[0][0] != '/' {
				t.Fatalf("accepted UPDATE %q", args)
			}
		}
	})
}

// FuzzServe feeds arbitrary records, with 0 to 3 fds, to a keeper's loop. It must not panic, and
// must hold exactly the fds it stored: every other fd it received is closed.
func FuzzServe(f *testing.F) {
	f.Add(record(opStore, 0, 0, "state"), uint8(1))
	f.Add(record(opStore, 0, 0, "bad name"), uint8(1))
	f.Add(record(opStore, 0, 0, "x"), uint8(3))
	f.Add(record(opFetch, 0, 0, ""), uint8(0))
	f.Add(record(opRemove, 0, 0, "state"), uint8(0))
	f.Add(record(opExits, 1, 0, ""), uint8(0))
	f.Add(record(opReady, 0, 0, ""), uint8(0))
	f.Add(record(opPing, 0, 0, "junk"), uint8(2))
	f.Add([]byte{0}, uint8(1))
	k := newTestKeeper(f, Config{MaxEntries: 8})
	null, err := os.Open(os.DevNull)
	if err != nil {
		f.Fatal(err)
	}
	defer null.Close()
	count := func() int {
		fds, err := fdhygiene.OpenFDs()
		if err != nil {
			f.Fatal(err)
		}
		return len(fds)
	}
	base := count() - k.nent
	f.Fuzz(func(t *testing.T, rec []byte, nfds uint8) {
		if len(rec) == 0 || len(rec) > 4*maxRecord || len(rec) > 4 && rec[4] == opUpdate {
			return // an UPDATE would start a process
		}
		p := attach(t, k)
		fds := make([]int, nfds%4)
		for i := range fds {
			fds[i] = int(null.Fd())
		}
		if e := p.send(rec, fds...); e != 0 {
			return
		}
		k.pollOnce(0)
		for {
			if _, _, ok := p.recv(); !ok {
				break
			}
		}
		unix.Close(p.fd)
		k.pollOnce(0) // sees the hang-up, closes its end
		k.closeConn(p.slot)
		if got := count(); got != base+k.nent {
			t.Fatalf("%d fds open, want %d + %d stored", got, base, k.nent)
		}
	})
}
