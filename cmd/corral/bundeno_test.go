package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// runtimeLoad sends Connection: close requests to url from n goroutines until stop is called, which
// returns how many succeeded, the failures (first few) and the pids that answered.
func runtimeLoad(url string, n int) (stop func() (ok int64, failed []string, pids map[string]int)) {
	var okN atomic.Int64
	var mu sync.Mutex
	var failed []string
	pids := map[string]int{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				body, err := getBody(url)
				mu.Lock()
				if err != nil {
					failed = append(failed, err.Error())
				} else {
					okN.Add(1)
					pids[strings.TrimSpace(body)]++
				}
				mu.Unlock()
			}
		})
	}
	return func() (int64, []string, map[string]int) {
		close(done)
		wg.Wait()
		return okN.Load(), failed, pids
	}
}

// `corral start app.mjs -i 4 --interpreter bun|deno` runs Bun and Deno workers behind one port under
// corral's primary: every instance serves, and three reloads under Connection: close load fail no
// request (Bun: with net.ipv4.tcp_migrate_req=1).
func TestBunDenoClusterReloadUnderLoad(t *testing.T) {
	skipShort(t)
	for _, rt := range []string{"bun", "deno"} {
		t.Run(rt, func(t *testing.T) {
			// Unmodified: Bun's node:http servers, which a disconnect leaves open, are closed by the
			// preload corral gives Bun workers.
			app, _ := filepath.Abs("testdata/runtimes/app.mjs")
			bin := nodetest.Bun(t)
			args := []string{"start", app, "-i", "4", "--name", rt, "--interpreter", bin}
			if rt == "deno" {
				bin = nodetest.Deno(t)
				// Deno asks for permissions: the app reads PORT and listens.
				args = []string{"start", app, "-i", "4", "--name", rt, "--interpreter", bin, "--interpreter-args", "--allow-net --allow-env=PORT,DELAY_MS"}
			}
			_, env := testHome(t)
			port := testutil.FreePort(t)
			env = append(env, "PORT="+strconv.Itoa(port), "DELAY_MS=20") // requests in flight at every reload
			out := corral(t, env, args...)
			if !strings.Contains(out, "in cluster_mode (4 instances)") {
				t.Fatalf("start output:\n%s", out)
			}
			if rt == "bun" && !migrateReq(t) {
				// Bun's node:http servers bind the port themselves (SO_REUSEPORT): start says what a
				// reload loses without tcp_migrate_req, and the reload below needs it.
				if !strings.Contains(out, "note: Bun's node:http servers bind the port in each worker") {
					t.Fatalf("no tcp_migrate_req note in the start output:\n%s", out)
				}
				setMigrateReq(t)
			}
			dir := t.TempDir()
			procs := waitOnlineN(t, dir, env, rt, 4)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			served := map[string]bool{}
			if !testutil.Eventually(20*time.Second, func() bool {
				body, err := getBody(url)
				served[strings.TrimSpace(body)] = err == nil
				return len(served) == 4
			}) {
				t.Fatalf("served by %v, want the 4 instances %v", served, procs)
			}
			stop := runtimeLoad(url, 4)
			for i := 0; i < 3; i++ {
				corral(t, env, "reload", rt)
			}
			ok, failed, pids := stop()
			if len(failed) > 0 || ok == 0 {
				t.Fatalf("%d requests served, %d failed over 3 reloads: %v", ok, len(failed), failed[:min(len(failed), 5)])
			}
			after := waitOnlineN(t, dir, env, rt, 4)
			for _, p := range after {
				for _, q := range procs {
					if p == q {
						t.Fatalf("pid %d served before and after the reloads: %v -> %v", p, procs, after)
					}
				}
			}
			t.Logf("%s: %d requests over 3 reloads, none failed; %d pids answered", rt, ok, len(pids))
			// The balancer's counters: Deno's node:http connections come through the primary; Bun's
			// do not (its workers bind the port themselves).
			for i := 0; i < 8; i++ {
				getBody(url)
			}
			show := corral(t, env, "show", rt)
			m := regexp.MustCompile(`balancer\s*│\s*(\d+) handed off, (\d+) in flight, (\d+) refused, (\d+) re-routed`).FindAllStringSubmatch(show, -1)
			handed := 0
			for _, s := range m {
				n, _ := strconv.Atoi(s[1])
				handed += n
			}
			if len(m) != 4 || (rt == "deno") != (handed > 0) {
				t.Fatalf("show %s: %d balancer rows, %d handed off in all:\n%s", rt, len(m), handed, show)
			}
			// A crash: the daemon restarts the instance and the app keeps serving.
			victim := after[0]
			syscall.Kill(victim, syscall.SIGKILL)
			if !testutil.Eventually(30*time.Second, func() bool {
				pids := waitOnlineN(t, dir, env, rt, 4)
				return !slices.Contains(pids, victim)
			}) {
				t.Fatalf("instance with pid %d not restarted", victim)
			}
			for i := 0; i < 8; i++ {
				if _, err := getBody(url); err != nil {
					t.Fatalf("after a crash and restart: %v", err)
				}
			}
			corral(t, env, "delete", rt)
		})
	}
}

// waitOnlineN waits until app has n online instances and returns their pids.
func waitOnlineN(t *testing.T, dir string, env []string, app string, n int) []int {
	t.Helper()
	var pids []int
	if !testutil.Eventually(30*time.Second, func() bool {
		pids = pids[:0]
		for _, p := range byName(jlist(t, dir, env), app) {
			if p.status() == "online" && p.PID > 0 {
				pids = append(pids, p.PID)
			}
		}
		return len(pids) == n
	}) {
		t.Fatalf("%s: %d of %d instances online: %v", app, len(pids), n, jlist(t, dir, env))
	}
	return pids
}

const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// migrateReq reports whether the kernel moves the connections queued on a closed SO_REUSEPORT listener
// to another listener of its group.
func migrateReq(t *testing.T) bool {
	b, err := os.ReadFile(migrateReqPath)
	if err != nil {
		t.Skipf("kernel without net.ipv4.tcp_migrate_req (Linux 5.14+): %v", err)
	}
	return strings.TrimSpace(string(b)) == "1"
}

// setMigrateReq sets net.ipv4.tcp_migrate_req to 1 for the test (root only; skipped otherwise) and
// back to 0 afterwards.
func setMigrateReq(t *testing.T) {
	if err := os.WriteFile(migrateReqPath, []byte("1"), 0o644); err != nil {
		if nodetest.InCI() {
			t.Fatalf("cannot set net.ipv4.tcp_migrate_req=1 for the reload (CI runs as root): %v", err)
		}
		t.Skipf("cannot set net.ipv4.tcp_migrate_req=1 for the reload: %v", err)
	}
	t.Cleanup(func() { os.WriteFile(migrateReqPath, []byte("0"), 0o644) })
}
