package pm2json

import (
	"bytes"
	"maps"
	"sync"
	"testing"
)

// TestEnvCacheMatchesJList: EnvCache.JList gives JList's bytes call after call, as statuses,
// figures and pids change, environments are replaced (a restart with --update-env), instances go
// and ids are reused by other instances.
func TestEnvCacheMatchesJList(t *testing.T) {
	odd := sample()[0]
	odd.Env = map[string]string{"name": "x", "env": "e", "status": "s", "PORT": "3000", "F": "1.5", "B": "true", "U": "é\n\""}
	odd.App.Env = map[string]string{"PORT": "3000", "F": "1.5", "B": "true"}
	procs := append(append(sample(), benchProcs(3)...), odd)
	ivEnv := odd
	ivEnv.App.InstanceVar = "env" // rendered through Entry
	procs = append(procs, ivEnv)
	keys := func(ps []int) []any {
		out := make([]any, len(ps))
		for i, k := range ps {
			out[i] = k
		}
		return out
	}
	ids := []int{0, 1, 2, 3, 4, 5, 6}
	var c EnvCache
	check := func(what string) {
		t.Helper()
		got, err := c.JList(procs, keys(ids))
		if err != nil {
			t.Fatal(err)
		}
		want, err := JList(procs)
		if err != nil {
			t.Fatal(err)
		}
		// AppendJList into a buffer with a prefix, too small then large enough (the daemon's reuse).
		for _, dst := range [][]byte{[]byte("x"), append(make([]byte, 0, 2*len(want)+4096), 'x')} {
			app, err := c.AppendJList(dst, procs, keys(ids))
			if err != nil {
				t.Fatal(err)
			}
			if string(app) != "x"+string(want) {
				t.Fatalf("%s: AppendJList differs from JList", what)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: EnvCache.JList differs from JList:\n got %s\nwant %s", what, got, want)
		}
	}
	check("first")
	check("again")

	procs[0].Status, procs[0].PID, procs[0].CPU, procs[0].Memory, procs[0].Restarts = "errored", 0, 0, 0, 7
	procs[2].CPU, procs[2].Memory, procs[2].PID = 12.34, 999, 4242
	check("figures and statuses")

	env := maps.Clone(procs[3].Env) // replaced, as the daemon does (never changed in place)
	env["NEW"] = "1"
	delete(env, "VAR_00")
	procs[3].Env = env
	check("environment replaced")
	appEnv := maps.Clone(procs[5].App.Env)
	appEnv["F"] = "2.5"
	procs[5].App.Env = appEnv
	env = maps.Clone(procs[5].Env)
	env["F"] = "2.5"
	procs[5].Env = env
	check("app environment replaced")

	procs, ids = append(procs[:1], procs[2:]...), append(ids[:1], ids[2:]...)
	check("one gone")
	ids[0] = 3 // id 3 now names another instance, with another environment
	ids[2] = 0
	check("ids reused")
	procs = nil
	ids = nil
	check("none")
}

func TestEnvCacheConcurrent(t *testing.T) {
	procs := benchProcs(20)
	keys := make([]any, len(procs))
	for i := range keys {
		keys[i] = i
	}
	want, _ := JList(procs)
	var c EnvCache
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if got, err := c.JList(procs, keys); err != nil || !bytes.Equal(got, want) {
					t.Errorf("concurrent EnvCache.JList differs (%v)", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
