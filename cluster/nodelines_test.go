package cluster_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/nodetest"
	"github.com/corralhq/corral/internal/testutil"
)

// Workers of every Node line (18 to 26) serve side by side under one primary, and an app's workers
// replaced one by one from Node 18 to Node 26 under Connection: close load fail no request. Each
// worker's line is chosen at fork time by NODE_BIN (the primary runs /bin/sh -c 'exec "$NODE_BIN" …').
func TestMixedNodeLinesUnderOnePrimary(t *testing.T) {
	lines := nodetest.Lines(t)
	script, _ := filepath.Abs("testdata/version_worker.js")
	port := testutil.FreePort(t)
	p := newPrimary(t, cluster.Settings{Exec: "/bin/sh", Args: []string{"-c", `exec "$NODE_BIN" "$0"`, script},
		SchedulingPolicy: cluster.PolicyRoundRobin, HoldListeners: true}, "none", fmt.Sprintf("PORT=%d", port))
	forkLine := func(major string) *cluster.Worker {
		w := fork(t, p, cluster.ForkOptions{Env: map[string]string{"NODE_BIN": lines[major]}})
		select {
		case <-w.Listening():
		case <-w.Done():
			t.Fatalf("node %s worker exited (code %d) before listening", major, w.ExitCode())
		case <-time.After(30 * time.Second):
			t.Fatalf("node %s worker never listened", major)
		}
		return w
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// Side by side: every line answers.
	var all []*cluster.Worker
	for _, major := range nodetest.Majors() {
		all = append(all, forkLine(major))
	}
	seen := map[string]bool{}
	for i := 0; i < 5*len(all) && len(seen) < len(all); i++ {
		seen[strings.SplitN(get(t, url), ".", 2)[0]] = true
	}
	for _, major := range nodetest.Majors() {
		if !seen["v"+major] {
			t.Fatalf("lines that answered: %v; v%s missing", seen, major)
		}
	}
	for _, w := range all[:len(all)-1] {
		w.Disconnect()
		wait(t, w.Done(), "exit")
	}
	all[len(all)-1].Disconnect()
	wait(t, all[len(all)-1].Done(), "exit")

	// An app of two Node 18 workers moved to Node 26 one worker at a time, under load.
	ws := []*cluster.Worker{forkLine("18"), forkLine("18")}
	load := startCloseLoad(url, 4)
	for i, old := range ws {
		load.served(t, 50) // traffic flows before each replacement
		nw := forkLine("26")
		if err := old.Disconnect(); err != nil {
			t.Fatal(err)
		}
		wait(t, old.Done(), "old worker exit")
		ws[i] = nw
	}
	load.served(t, 50)
	served := load.finish(t, "while moving from Node 18 to 26")
	for i := 0; i < 4; i++ {
		if v := get(t, url); !strings.HasPrefix(v, "v26.") {
			t.Fatalf("served by %s after the move to Node 26", v)
		}
	}
	t.Logf("%d requests, none failed, moving two workers from Node 18 to Node 26", served)
}
