package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// fdListSource is a program that reports the descriptors it inherited — those without
// FD_CLOEXEC: everything a Go program opens itself is close-on-exec — to the Unix socket
// $FDLIST_SOCK, as one line: "name=<$name> fds=<fd>:<kind>,... listen_fds=<$LISTEN_FDS>
// channel=<$NODE_CHANNEL_FD>". Installed as `node` first in PATH, it stands in for Node: with
// arguments it then executes the real Node ($FDLIST_NODE) with them, so the daemon runs its Node
// apps (fork, cluster) as usual. Without arguments it waits for SIGINT or SIGTERM.
const fdListSource = `package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		panic(err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno == 0 && fl&syscall.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	var list []string
	for _, fd := range fds {
		link, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		kind := link
		switch {
		case link == "/dev/null":
			kind = "null"
		case strings.HasPrefix(link, "socket:"):
			kind = "socket"
		case strings.HasPrefix(link, "pipe:"):
			kind = "pipe"
		}
		list = append(list, strconv.Itoa(fd)+":"+kind)
	}
	c, err := net.Dial("unix", os.Getenv("FDLIST_SOCK"))
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(c, "name=%s fds=%s listen_fds=%s channel=%s\n", os.Getenv("name"), strings.Join(list, ","),
		os.Getenv("LISTEN_FDS"), os.Getenv("NODE_CHANNEL_FD"))
	c.Close()
	if len(os.Args) > 1 {
		node := os.Getenv("FDLIST_NODE")
		panic(syscall.Exec(node, append([]string{node}, os.Args[1:]...), os.Environ()))
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
`

// buildFDList builds fdListSource into a directory, as `node` and as `fdlist`, and returns it.
func buildFDList(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(fdListSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module fdlist\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "node"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the fd lister: %v\n%s", err, out)
	}
	if err := os.Link(filepath.Join(bin, "node"), filepath.Join(bin, "fdlist")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// fdReports collects the lister's reports by app name.
type fdReports struct {
	ch chan string
}

func listenReports(t *testing.T, path string) *fdReports {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &fdReports{ch: make(chan string, 32)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					r.ch <- strings.TrimSpace(line)
				}
			}()
		}
	}()
	return r
}

// expect waits for a report of each app in want and compares it with what want says it must be.
func (r *fdReports) expect(t *testing.T, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case line := <-r.ch:
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "name="), " ")
			got[name] = line
		case <-timeout:
			t.Fatalf("reports so far: %q; want one from each of %v", got, want)
		}
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("app %s:\n got  %s\n want %s", name, got[name], w)
		}
	}
}

// fdEnv returns env with the fd lister first in PATH, standing in for node.
func fdEnv(t *testing.T, env []string, bin, sock string) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"FDLIST_SOCK=" + sock, "FDLIST_NODE=" + node}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + bin + string(os.PathListSeparator) + v
		}
		out = append(out, kv)
	}
	return out
}

// The apps' expected descriptors: stdin, stdout and stderr; the IPC channel of a Node app
// (NODE_CHANNEL_FD); the sockets of a listen app (LISTEN_FDS, first). Nothing the shell that ran
// the first corral command had open. The listen app is the plain program, not a Node script, so
// it has no channel (a Node app started with --listen keeps its own: activation.Wrap hides
// NODE_CHANNEL_FD from the __activate shim and the shim gives it back, early_test.go).
// A fork or listen process's stdin is a pipe from the daemon (send/attach), a cluster worker's
// /dev/null.
var wantFDs = map[string]string{
	"fork":  "name=fork fds=0:pipe,1:pipe,2:pipe,3:socket listen_fds= channel=3",
	"clu":   "name=clu fds=0:null,1:pipe,2:pipe,3:socket listen_fds= channel=3",
	"lis":   "name=lis fds=0:pipe,1:pipe,2:pipe,3:socket listen_fds=1 channel=",
	"plain": "name=plain fds=0:pipe,1:pipe,2:pipe listen_fds= channel=",
}

// heldByShell is the shell prelude that opens the file $HELD as fds 7 and 9, without
// close-on-exec, as `exec 7>file` in a user's shell or a CI runner's pipe would be.
const heldByShell = `exec 7>"$HELD"; exec 9<"$HELD"; `

// writeFDApps writes the Node apps of the fd tests into dir.
func writeFDApps(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"fork.js", "clu.js"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("setInterval(() => {}, 1 << 30);\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkNotHeld fails the test if process pid has the file path open.
func checkNotHeld(t *testing.T, what string, pid int, path string) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, e := range ents {
		if link, _ := os.Readlink(dir + "/" + e.Name()); link == path {
			t.Errorf("%s (pid %d) holds %s as fd %s", what, pid, path, e.Name())
		}
	}
}

// A daemon started by a command run from a shell with extra descriptors open gives its apps —
// fork, cluster, listen, and a plain program — exactly their own descriptors, and does not hold
// the shell's itself.
func TestAppsInheritOnlyTheirFDs(t *testing.T) {
	nodetest.Node(t)
	bin := buildFDList(t)
	p, env := testHome(t)
	dir, held, reports, env := fdDaemonSetup(t, bin, p.Home, env)

	sh := exec.Command("/bin/sh", "-c", heldByShell+`corral start fork.js && corral start clu.js --name clu -i 1 --exec-mode cluster &&
corral start "$FDLIST" --name lis --listen 127.0.0.1:0 && corral start "$FDLIST" --name plain`)
	sh.Dir = dir
	sh.Env = append(env, "PATH="+binDir+string(os.PathListSeparator)+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	reports.expect(t, wantFDs)
	pid, err := daemonproc.ReadPid(p.PidFile)
	if err != nil {
		t.Fatal(err)
	}
	checkNotHeld(t, "the daemon", pid, held)
	corral(t, env, "kill")
}

// So does the foreground daemon (`corral daemon --foreground`, as systemd runs it).
func TestForegroundDaemonAppsInheritOnlyTheirFDs(t *testing.T) {
	nodetest.Node(t)
	bin := buildFDList(t)
	p, env := testHome(t)
	dir, held, reports, env := fdDaemonSetup(t, bin, p.Home, env)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	daemon := exec.Command("/bin/sh", "-c", heldByShell+`exec "$CORRAL" daemon --foreground`)
	daemon.Dir = dir
	daemon.Env = append(env, "CORRAL="+filepath.Join(binDir, "corral"), "NOTIFY_SOCKET="+notify.LocalAddr().String())
	d := testutil.Start(t, daemon)
	notify.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := notify.Read(make([]byte, 512)); err != nil {
		t.Fatalf("no readiness notification: %v\n%s", err, d.Output())
	}
	checkNotHeld(t, "the foreground daemon", daemon.Process.Pid, held)
	start := exec.Command("/bin/sh", "-c", `corral start fork.js && corral start clu.js --name clu -i 1 --exec-mode cluster &&
corral start "$FDLIST" --name lis --listen 127.0.0.1:0 && corral start "$FDLIST" --name plain`)
	start.Dir = dir
	start.Env = append(env, "PATH="+binDir+string(os.PathListSeparator)+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	reports.expect(t, wantFDs)
	daemon.Process.Signal(syscall.SIGTERM)
	if err := d.Wait(t, 30*time.Second); err != nil {
		t.Errorf("daemon exit: %v\n%s", err, d.Output())
	}
}

// And so does container mode (`corral runtime`): its init and the child that runs the apps.
func TestRuntimeAppsInheritOnlyTheirFDs(t *testing.T) {
	nodetest.Node(t)
	bin := buildFDList(t)
	dir := t.TempDir()
	writeFDApps(t, dir)
	held := filepath.Join(dir, "held")
	reports := listenReports(t, filepath.Join(dir, "fd.sock"))
	env := append(fdEnv(t, os.Environ(), bin, filepath.Join(dir, "fd.sock")), "HELD="+held, "CORRAL_HOME=",
		"CORRAL="+filepath.Join(binDir, "corral"))
	rt := exec.Command("/bin/sh", "-c", heldByShell+`exec "$CORRAL" runtime start fork.js`)
	rt.Dir = dir
	rt.Env = env
	r := testutil.Start(t, rt)
	t.Cleanup(func() { // before testutil's SIGKILL of the group: the runtime stops its apps
		rt.Process.Signal(syscall.SIGTERM)
		r.Wait(t, 30*time.Second)
	})
	reports.expect(t, map[string]string{"fork": wantFDs["fork"]})
	checkNotHeld(t, "the runtime's init", rt.Process.Pid, held)
	rt.Process.Signal(syscall.SIGTERM)
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Errorf("runtime exit: %v\n%s", err, r.Output())
	}
}

// fdDaemonSetup prepares a daemon test of inherited descriptors next to home: the apps, the file
// the shell holds open, the socket the apps report their descriptors to, and their environment.
func fdDaemonSetup(t *testing.T, bin, home string, env []string) (dir, held string, reports *fdReports, _ []string) {
	t.Helper()
	dir = filepath.Dir(home)
	writeFDApps(t, dir)
	held = filepath.Join(dir, "held")
	reports = listenReports(t, filepath.Join(dir, "fd.sock"))
	return dir, held, reports, append(fdEnv(t, env, bin, filepath.Join(dir, "fd.sock")), "HELD="+held, "FDLIST="+filepath.Join(bin, "fdlist"))
}
