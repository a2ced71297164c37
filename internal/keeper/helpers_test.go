package keeper

// The test binary re-executes itself as the processes of a keeper tree: keeper-helper runs Run;
// fake-daemon is a miniature corral daemon (it owns a listening socket, the parent end of an IPC
// channel and the read end of a log pipe, stores them in the keeper, and recovers them after a
// restart); fake-app is a cluster-like worker (it serves connections handed to it over the
// channel and logs continuously to stdout); fake-app-b is an app that exits when told to.
//
// Every helper prints what it does to stdout or stderr, which are the test's pipe (the keeper's
// stdio, inherited by the daemon and by the apps' stderr), as "word key=value ..." lines.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "keeper-helper":
			os.Exit(keeperHelper(os.Args[2:]))
		case "fake-daemon":
			os.Exit(fakeDaemon(os.Args[2]))
		case "fake-app":
			os.Exit(fakeApp())
		case "fake-app-b":
			os.Exit(fakeAppB())
		case "dial-helper":
			os.Exit(dialHelper(os.Args[2]))
		}
	}
	os.Exit(m.Run())
}

func envMS(name string) time.Duration {
	v, _ := strconv.Atoi(os.Getenv(name))
	return time.Duration(v) * time.Millisecond
}

// keeperHelper is `keeper-helper <daemon argv...>`, configured by $KTEST_* variables.
func keeperHelper(daemon []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	maxEntries, _ := strconv.Atoi(os.Getenv("KTEST_MAX_ENTRIES"))
	err := Run(ctx, Config{
		Dir:             os.Getenv("KTEST_DIR"),
		Daemon:          daemon,
		RestartMin:      envMS("KTEST_RESTART_MIN"),
		RestartMax:      envMS("KTEST_RESTART_MAX"),
		ReadyTimeout:    envMS("KTEST_READY_TIMEOUT"),
		HandoverTimeout: envMS("KTEST_HANDOVER"),
		StopTimeout:     envMS("KTEST_STOP"),
		MaxEntries:      maxEntries,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	fmt.Printf("keeper-helper exit err=%v\n", err)
	if err != nil {
		return 1
	}
	return 0
}

// fakeState is what the fake daemon serialises into its state memfd.
type fakeState struct {
	AppA, AppB int
	Addr       string
}

type fakeD struct {
	ver, gen string
	cl       *Client
	st       fakeState
	ln       net.Listener
	ch       *net.UnixConn
	logR     *os.File
	stopOnce sync.Once
}

func (d *fakeD) say(format string, args ...any) {
	fmt.Printf("daemon %s gen=%s pid=%d %s\n", d.ver, d.gen, os.Getpid(), fmt.Sprintf(format, args...))
}

func (d *fakeD) fatal(what string, err error) int {
	d.say("fatal what=%q err=%q", what, err)
	return 2
}

// fakeDaemon is `fake-daemon <version>`: v1/v2 (a full daemon), crash, hang (a new daemon that
// fails on trial), crash-until=K (crashes while its generation is <= K, then idles), idle.
func fakeDaemon(ver string) int {
	d := &fakeD{ver: ver, gen: os.Getenv(EnvGen)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if strings.HasPrefix(ver, "crash-until=") {
		k, _ := strconv.Atoi(strings.TrimPrefix(ver, "crash-until="))
		g, _ := strconv.Atoi(d.gen)
		d.say("start t=%d", time.Now().UnixNano())
		if g <= k {
			return 1
		}
		d.ver = "idle"
	}
	if os.Getenv("KTEST_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM) // only OnKeeperDeath can stop this daemon now
	}
	var err error
	if d.cl, err = DialEnv(); err != nil {
		return d.fatal("dial", err)
	}
	if dir := os.Getenv("KTEST_GATE_DIR"); dir != "" {
		gate := dir + "/gate" + d.gen
		if _, err := os.Stat(gate); err == nil {
			d.say("waiting at gate")
			f, err := os.Open(gate) // a FIFO: blocks until the test opens it for writing
			if err != nil {
				return d.fatal("gate", err)
			}
			io.Copy(io.Discard, f)
			f.Close()
		}
	}
	if d.ver == "idle" {
		return d.idle(ctx)
	}
	entries, err := d.cl.FetchAll(ctx)
	if err != nil {
		return d.fatal("fetch", err)
	}
	switch d.ver {
	case "crash", "hang":
		err := d.cl.Store(ctx, "trial", os.Stdin)
		d.say("trial fetched=%d store-err=%q", len(entries), err)
		if d.ver == "crash" {
			return 1
		}
		time.Sleep(time.Hour) // never READY: the keeper kills it
		return 0
	}
	if len(entries) == 0 {
		err = d.setup(ctx)
	} else {
		err = d.recover(entries)
	}
	if err != nil {
		return d.fatal("start", err)
	}
	return d.serve(ctx, len(entries))
}

func (d *fakeD) idle(ctx context.Context) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if err := d.cl.Ready(ctx); err != nil {
		return d.fatal("ready", err)
	}
	d.say("ready")
	<-sigs
	d.say("sigterm")
	return 0
}

// setup is a first start: create the resources, start the apps, store everything.
func (d *fakeD) setup(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.ln = ln
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	chFile, appEnd := os.NewFile(uintptr(sp[0]), "ipc"), os.NewFile(uintptr(sp[1]), "ipc-app")
	logR, logW, err := os.Pipe()
	if err != nil {
		return err
	}
	d.logR = logR
	self, _ := os.Executable()
	a := exec.Command(self, "fake-app")
	a.ExtraFiles = []*os.File{appEnd}
	a.Stdout, a.Stderr = logW, os.Stderr
	b := exec.Command(self, "fake-app-b")
	b.Stdout, b.Stderr = os.Stderr, os.Stderr
	if err := a.Start(); err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	logW.Close()
	appEnd.Close()
	d.st = fakeState{AppA: a.Process.Pid, AppB: b.Process.Pid, Addr: ln.Addr().String()}
	fc, err := net.FileConn(chFile)
	if err != nil {
		return err
	}
	d.ch = fc.(*net.UnixConn)
	for _, s := range []struct {
		name string
		c    syscall.Conn
	}{{"ln", ln.(*net.TCPListener)}, {"ipc", chFile}, {"log", logR}} {
		if err := d.cl.Store(ctx, s.name, s.c); err != nil {
			return err
		}
	}
	chFile.Close()
	return d.storeState(ctx)
}

func (d *fakeD) storeState(ctx context.Context) error {
	data, _ := json.Marshal(d.st)
	f, err := NewStateFile("state", data)
	if err != nil {
		return err
	}
	defer f.Close()
	return d.cl.Store(ctx, "state", f)
}

// recover rebuilds the daemon from the fetched fds.
func (d *fakeD) recover(entries []Entry) error {
	by := map[string]*os.File{}
	for _, e := range entries {
		by[e.Name] = e.File
	}
	if by["state"] == nil || by["ln"] == nil || by["ipc"] == nil || by["log"] == nil {
		return fmt.Errorf("fetched %d entries, missing some", len(entries))
	}
	data, err := ReadStateFile(by["state"])
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &d.st); err != nil {
		return err
	}
	if d.ln, err = net.FileListener(by["ln"]); err != nil {
		return err
	}
	fc, err := net.FileConn(by["ipc"])
	if err != nil {
		return err
	}
	d.ch = fc.(*net.UnixConn)
	by["ln"].Close()
	by["ipc"].Close()
	by["state"].Close()
	d.logR = by["log"]
	return nil
}

func (d *fakeD) serve(ctx context.Context, fetched int) int {
	logOut, err := os.OpenFile(os.Getenv("KTEST_LOG"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return d.fatal("log file", err)
	}
	logOut.Seek(0, io.SeekEnd)
	go d.pumpLog(logOut)
	go d.readChannel()
	go d.acceptLoop()
	go d.watchExits()
	if _, err := d.ch.Write([]byte("ping")); err != nil {
		return d.fatal("ping", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, HandoverSignal)
	if os.Getenv("KTEST_IGNORE_TERM") == "" {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	if _, err := OnKeeperDeath(func() {
		d.say("keeper gone: stopping apps")
		d.stopApps()
		os.Exit(0)
	}); err != nil {
		return d.fatal("hook", err)
	}
	if err := d.cl.Ready(ctx); err != nil {
		return d.fatal("ready", err)
	}
	d.say("ready fetched=%d app=%d appb=%d addr=%s", fetched, d.st.AppA, d.st.AppB, d.st.Addr)
	if sig := <-sigs; sig == HandoverSignal {
		d.ln.Close() // stop accepting; the keeper's copy keeps the socket listening
		err := d.storeState(context.Background())
		d.say("handover store-err=%v", err)
		return 0
	}
	d.say("sigterm: stopping apps")
	d.stopApps()
	return 0
}

// pumpLog moves the log pipe into the log file with splice(2): the bytes go from the pipe to the
// file inside the kernel, so a SIGKILL can neither lose nor duplicate a line.
func (d *fakeD) pumpLog(out *os.File) {
	rc, err := d.logR.SyscallConn()
	if err != nil {
		d.say("log err=%q", err)
		return
	}
	ofd := int(out.Fd())
	for {
		var n int64
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, ofd, nil, 1<<20, unix.SPLICE_F_NONBLOCK)
			return serr != unix.EAGAIN
		})
		if err != nil || serr != nil {
			d.say("log err=%q/%q", err, serr)
			return
		}
		if n == 0 {
			d.say("log eof")
			return
		}
	}
}

func (d *fakeD) readChannel() {
	buf := make([]byte, 256)
	for {
		n, err := d.ch.Read(buf)
		if err != nil || n == 0 {
			d.say("channel closed err=%v", err)
			return
		}
		d.say("got %s", buf[:n])
	}
}

// acceptLoop accepts connections and hands each to the app over the channel (round-robin style).
func (d *fakeD) acceptLoop() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		rc, _ := c.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			_, _, err = d.ch.WriteMsgUnix([]byte("conn"), unix.UnixRights(int(fd)), nil)
		})
		if err != nil {
			d.say("handoff err=%v", err)
		}
		c.Close()
	}
}

// watchExits reports apps the keeper reaped, on a connection of its own (Exits waits).
func (d *fakeD) watchExits() {
	cl, err := DialEnv()
	if err != nil {
		d.say("exits err=%v", err)
		return
	}
	var ack uint64
	for {
		b, err := cl.Exits(context.Background(), ack, true)
		if err != nil {
			d.say("exits err=%v", err)
			return
		}
		for _, e := range b.Exits {
			d.say("exit pid=%d status=%q lost=%d", e.PID, describe(unix.WaitStatus(e.Status)), b.Lost)
			ack = e.Seq
		}
	}
}

// stopApps stops the apps: SIGTERM, then wait for each to exit (pidfd), reaping our own children.
func (d *fakeD) stopApps() {
	d.stopOnce.Do(func() {
		for _, pid := range []int{d.st.AppA, d.st.AppB} {
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // gone already
			}
			unix.Kill(pid, unix.SIGTERM)
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 5000); n == 0 {
				unix.Kill(pid, unix.SIGKILL)
				unix.Poll(fds, 5000)
			}
			unix.Close(fd)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WNOHANG, nil) // ours if we started it; the keeper's otherwise
			d.say("app stopped pid=%d", pid)
		}
	})
}

// fakeApp serves connections handed over the channel (fd 3), answers "ping", logs "log <seq>"
// lines to stdout every 2ms, writes a burst of 30000 lines on SIGUSR2, and on SIGTERM writes
// "log-end <last seq>" and exits 0. If its channel reaches EOF it records it and exits 3.
func fakeApp() int {
	pid := os.Getpid()
	fc, err := net.FileConn(os.NewFile(3, "ipc"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "app pid=%d err=%q\n", pid, err)
		return 2
	}
	ch := fc.(*net.UnixConn)
	var mu sync.Mutex
	seq := 0
	logLine := func() {
		mu.Lock()
		defer mu.Unlock()
		seq++
		if _, err := fmt.Fprintf(os.Stdout, "log %d\n", seq); err != nil {
			fmt.Fprintf(os.Stderr, "app pid=%d log-err=%q\n", pid, err)
			os.Exit(4)
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR2)
	go func() {
		for range time.Tick(2 * time.Millisecond) {
			logLine()
		}
	}()
	go func() {
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
		for {
			n, oobn, _, _, err := ch.ReadMsgUnix(buf, oob)
			if err != nil || n == 0 {
				if f, ferr := os.OpenFile(os.Getenv("KTEST_EOF_MARK"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); ferr == nil {
					fmt.Fprintf(f, "%d\n", pid)
					f.Close()
				}
				fmt.Fprintf(os.Stderr, "app pid=%d channel-eof err=%v\n", pid, err)
				os.Exit(3)
			}
			switch string(buf[:n]) {
			case "ping":
				ch.Write([]byte("pong " + strconv.Itoa(pid)))
			case "conn":
				cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
				if len(cms) == 1 {
					if fds, err := unix.ParseUnixRights(&cms[0]); err == nil && len(fds) == 1 {
						go serveConn(pid, fds[0])
					}
				}
			}
		}
	}()
	fmt.Fprintf(os.Stderr, "app pid=%d started\n", pid)
	for sig := range sigs {
		if sig == syscall.SIGUSR2 {
			go func() {
				fmt.Fprintf(os.Stderr, "app pid=%d burst-start\n", pid)
				for i := 0; i < 30000; i++ {
					logLine()
				}
				fmt.Fprintf(os.Stderr, "app pid=%d burst-done\n", pid)
			}()
			continue
		}
		mu.Lock() // no more lines
		fmt.Fprintf(os.Stdout, "log-end %d\n", seq)
		fmt.Fprintf(os.Stderr, "app pid=%d sigterm last=%d\n", pid, seq)
		return 0
	}
	return 0
}

func serveConn(pid, fd int) {
	c, err := net.FileConn(os.NewFile(uintptr(fd), "conn"))
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, 0, 64)
	buf := make([]byte, 64)
	for !bytes.Contains(line, []byte("\n")) {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		line = append(line, buf[:n]...)
	}
	fmt.Fprintf(c, "app %d: %s", pid, line)
}

// fakeAppB exits 42 on SIGUSR1 and 0 on SIGTERM.
func fakeAppB() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	fmt.Fprintf(os.Stderr, "appb pid=%d started\n", os.Getpid())
	if <-sigs == syscall.SIGUSR1 {
		return 42
	}
	return 0
}

// dialHelper connects to the keeper socket and PINGs (run as another uid by a test).
func dialHelper(path string) int {
	c, err := Dial(path)
	if err != nil {
		fmt.Printf("dial-helper uid=%d result=dial-error err=%q\n", os.Getuid(), err)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		fmt.Printf("dial-helper uid=%d result=rejected err=%q\n", os.Getuid(), err)
		return 0
	}
	fmt.Printf("dial-helper uid=%d result=accepted\n", os.Getuid())
	return 0
}

// fields parses the key=value words of a helper's line.
func fields(line string) map[string]string {
	m := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			m[k] = v
		}
	}
	return m
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// procStat returns the state letter and the parent pid of pid from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 >= len(b) {
		return 0, 0, errors.New("bad stat")
	}
	f := strings.Fields(string(b[i+2:]))
	return f[0][0], atoi(f[1]), nil
}
