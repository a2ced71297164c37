package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/activation"
)

// testAppEnv selects what the test binary does when the daemon runs it as an app.
const testAppEnv = "CORRAL_DAEMON_TESTAPP"

// TestMain lets the test binary double as the apps the tests manage (and as the `__activate`
// shim), so that the tests run real processes without building anything.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == activation.ShimCommand {
		err := activation.Exec(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if mode := os.Getenv(testAppEnv); mode != "" {
		os.Exit(testApp(mode))
	}
	os.Exit(m.Run())
}

// testApp runs one of the test apps and returns its exit code.
//
//	sleep   prints "started <pid>" and waits for SIGINT/SIGTERM (exit 0); IGNORE_SIGINT=1 ignores them
//	crash   prints "crash <pid>" on stdout and "oops" on stderr, exits EXIT_CODE (default 3)
//	        after CRASH_AFTER_MS (default 0)
//	child   starts a grandchild (sleep mode, ignoring SIGINT) in its process group, writes its pid to
//	        GRANDCHILD_PID_FILE, then sleeps like "sleep"
//	http    serves HTTP on the LISTEN_FDS socket: "/" answers with its pid, "/crash" exits 1;
//	        stops gracefully on SIGINT/SIGTERM; exits 1 at once if FAIL_FILE exists
//	hog     holds HOG_MB (default 64) MiB of touched memory, prints "hogging <pid>", then sleeps
//	        like "sleep"
//	spew    prints SPEW_LINES lines of 100 characters, then "spew done", and exits 0
//	orphaner  starts an intermediate process in a new session that starts a grandchild ("sleep")
//	        and exits, so that the grandchild is orphaned; writes the grandchild's pid to
//	        GRANDCHILD_PID_FILE, prints "orphaned <pid>" and sleeps like "sleep"
//	spawn-grandchild  the intermediate of "orphaner"
//	cluster-http  a cluster worker (corral's cluster package) serving HTTP on 127.0.0.1:$PORT
//	tree    starts a grandchild ("tree-g") in a new session (setsid) and waits for its report; the
//	        grandchild starts a great-grandchild ("sleep"), reports both pids and sleeps like
//	        "sleep" (TREE_G_IGNORE=1 ignores SIGINT/SIGTERM) — or, with TREE_G_EXIT=1, exits at
//	        once, orphaning the great-grandchild, and "tree" waits for that exit. The
//	        great-grandchild ignores SIGINT/SIGTERM with TREE_GG_IGNORE=1 and runs with an empty
//	        environment (no unique_id) with TREE_GG_SCRUB=1. Then "tree" prints
//	        "tree <grandchild> <great-grandchild>" and sleeps like "sleep".
func testApp(mode string) int {
	switch mode {
	case "sleep":
		return sleepApp()
	case "crash":
		fmt.Printf("crash %d\n", os.Getpid())
		fmt.Fprintln(os.Stderr, "oops")
		d, _ := strconv.Atoi(os.Getenv("CRASH_AFTER_MS"))
		time.Sleep(time.Duration(d) * time.Millisecond)
		code := 3
		if c, err := strconv.Atoi(os.Getenv("EXIT_CODE")); err == nil {
			code = c
		}
		return code
	case "child":
		exe, _ := os.Executable()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), testAppEnv+"=sleep", "IGNORE_SIGINT=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.WriteFile(os.Getenv("GRANDCHILD_PID_FILE"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return sleepApp()
	case "http":
		return httpApp()
	case "hog":
		mb := 64
		if n, err := strconv.Atoi(os.Getenv("HOG_MB")); err == nil {
			mb = n
		}
		hog = make([]byte, mb<<20)
		for i := 0; i < len(hog); i += 4096 {
			hog[i] = 1
		}
		fmt.Printf("hogging %d\n", os.Getpid())
		return sleepApp()
	case "spew":
		n, _ := strconv.Atoi(os.Getenv("SPEW_LINES"))
		line := strings.Repeat("x", 90)
		for i := 0; i < n; i++ {
			fmt.Printf("%08d %s\n", i, line)
		}
		fmt.Println("spew done")
		return 0
	case "orphaner":
		exe, _ := os.Executable()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), testAppEnv+"=spawn-grandchild")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "intermediate:", err)
			return 1
		}
		b, err := os.ReadFile(os.Getenv("GRANDCHILD_PID_FILE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("orphaned %s\n", b)
		return sleepApp()
	case "spawn-grandchild":
		exe, _ := os.Executable()
		cmd := exec.Command(exe) // stdio on /dev/null: it must not hold the app's pipes
		cmd.Env = append(os.Environ(), testAppEnv+"=sleep")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.WriteFile(os.Getenv("GRANDCHILD_PID_FILE"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0 // without waiting: the grandchild is orphaned
	case "cluster-http":
		return clusterHTTPApp()
	case "tree":
		return treeApp()
	case "tree-g":
		return treeGrandchild()
	}
	fmt.Fprintf(os.Stderr, "unknown test app %q\n", mode)
	return 2
}

// hog keeps the "hog" app's memory reachable.
var hog []byte

func sleepApp() int {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("started %d\n", os.Getpid())
	for range ch {
		if os.Getenv("IGNORE_SIGINT") != "1" {
			fmt.Println("bye")
			return 0
		}
	}
	return 0
}

func httpApp() int {
	if f := os.Getenv("FAIL_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "FAIL_FILE exists")
			return 1
		}
	}
	ls, err := activation.Listeners()
	if err != nil || len(ls) != 1 {
		fmt.Fprintf(os.Stderr, "listeners: %v (%d)\n", err, len(ls))
		return 1
	}
	pid := strconv.Itoa(os.Getpid())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		fmt.Fprint(w, "hello from "+pid)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crashing")
		os.Exit(1)
	})
	srv := &http.Server{Handler: mux}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Printf("http %s serving on %s\n", pid, ls[0].Addr())
	if err := srv.Serve(ls[0]); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func clusterHTTPApp() int {
	pid := strconv.Itoa(os.Getpid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		fmt.Fprint(w, "hello from "+pid)
	})}
	if err := cluster.ServeHTTP(srv, "tcp", "127.0.0.1:"+os.Getenv("PORT")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// treeApp is the "tree" test app: a process tree that leaves the app's process group.
func treeApp() int {
	exe, _ := os.Executable()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	g := exec.Command(exe)
	g.Env = append(os.Environ(), testAppEnv+"=tree-g")
	g.Stdout = w // its report; stdin and stderr on /dev/null: it must not hold the app's pipes
	g.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = g.Start()
	w.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tree:", err)
		return 1
	}
	var gpid, ggpid int
	if _, err := fmt.Fscan(r, &gpid, &ggpid); err != nil {
		fmt.Fprintln(os.Stderr, "tree: report:", err)
		return 1
	}
	r.Close()
	if os.Getenv("TREE_G_EXIT") == "1" {
		g.Wait() // the great-grandchild has been re-parented by now
	} else {
		go g.Wait()
	}
	fmt.Printf("tree %d %d\n", gpid, ggpid)
	return sleepApp()
}

// treeGrandchild is the "tree-g" test app (see testApp).
func treeGrandchild() int {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	exe, _ := os.Executable()
	gg := exec.Command(exe)
	gg.Env = append(os.Environ(), testAppEnv+"=sleep", "IGNORE_SIGINT="+os.Getenv("TREE_GG_IGNORE"))
	if os.Getenv("TREE_GG_SCRUB") == "1" {
		gg.Env = []string{testAppEnv + "=sleep", "IGNORE_SIGINT=" + os.Getenv("TREE_GG_IGNORE"), "GORACE=atexit_sleep_ms=0"}
	}
	out, err := gg.StdoutPipe()
	if err == nil {
		err = gg.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tree-g:", err)
		return 1
	}
	var started string
	var pid int
	if _, err := fmt.Fscan(out, &started, &pid); err != nil { // "started <pid>": its handlers are set
		fmt.Fprintln(os.Stderr, "tree-g: great-grandchild:", err)
		return 1
	}
	fmt.Printf("%d %d\n", os.Getpid(), gg.Process.Pid)
	os.Stdout.Close()
	if os.Getenv("TREE_G_EXIT") == "1" {
		return 0
	}
	go func() {
		io.Copy(io.Discard, out)
		gg.Wait()
	}()
	for range ch {
		if os.Getenv("TREE_G_IGNORE") != "1" {
			return 0
		}
	}
	return 0
}
