package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// plainState is the state as encoding/json writes savedState itself (the hand-over's path),
// decoded again.
func plainState(t testing.TB, m *Manager) savedState {
	t.Helper()
	m.mu.Lock()
	b := m.marshalStateLocked()
	m.mu.Unlock()
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// cachedState is the state as the keeper link stores it (marshalStateInto, with the env cache),
// decoded again.
func cachedState(t testing.TB, m *Manager) savedState {
	t.Helper()
	var buf bytes.Buffer
	if !m.marshalStateInto(&buf) {
		t.Fatal("marshalStateInto failed")
	}
	var st savedState
	if err := json.Unmarshal(buf.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func checkSameState(t *testing.T, what string, m *Manager) savedState {
	t.Helper()
	// Without a keeper, noteStarted records no start time, and a run without one is not saved.
	m.mu.Lock()
	for _, a := range m.apps {
		for _, in := range a.instances {
			for _, r := range []*run{in.run, in.next} {
				if r != nil && r.pid != 0 && r.procStart == 0 {
					r.procStart = 1
				}
			}
		}
	}
	m.mu.Unlock()
	want, got := plainState(t, m), cachedState(t, m)
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		wb, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("%s: the cached snapshot decodes to another state than savedState's own encoding:\ngot  %s\nwant %s", what, gb, wb)
	}
	return got
}

func (c *envCache) counts() (encoded, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.misses + c.shared, len(c.entries)
}

func shellEnv(n int) map[string]string {
	env := map[string]string{}
	for i := 0; i < n; i++ {
		env[fmt.Sprintf("VAR_%02d", i)] = strings.Repeat("v", 30) + fmt.Sprint(i)
	}
	env["HTML"] = "<a&b> \u2028 \xff" // what encoding/json escapes or replaces
	return env
}

// The state the keeper link stores with the env cache decodes to exactly the state savedState's
// own encoding gives, through changes of every kind: a new app, an env changed in place, a map
// replaced (restart --update-env), a status change, a deleted app; and a snapshot without change
// encodes no map again.
func TestSnapshotEnvCache(t *testing.T) {
	m := newTestManager(t, Config{})
	ctx := context.Background()
	off := false
	var apps []appspec.App
	for i := 0; i < 3; i++ {
		apps = append(apps, appspec.App{Name: fmt.Sprintf("env%d", i), Script: "sleep", Args: []string{"1000"},
			Interpreter: "none", Env: map[string]string{"OWN": fmt.Sprint(i)}, ShellEnv: shellEnv(10)})
	}
	apps = append(apps, appspec.App{Name: "stopped", Script: "sleep", Args: []string{"1000"}, Interpreter: "none",
		Autostart: &off, ShellEnv: map[string]string{}}, // an empty, not nil, shell env
		appspec.App{Name: "plain", Script: "sleep", Args: []string{"1000"}, Interpreter: "none", Instances: 2})
	if _, err := m.Start(ctx, apps, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	st := checkSameState(t, "after the start", m)
	if n := len(st.Apps); n != 5 {
		t.Fatalf("%d apps in the state, want 5", n)
	}
	pids := 0
	for _, a := range st.Apps {
		for _, in := range a.Instances {
			if in.Run != nil && in.Run.PID > 0 {
				pids++
			}
		}
	}
	if pids != 5 {
		t.Errorf("%d pids in the state, want 5 (3 apps + 2 instances)", pids)
	}
	misses, entries := m.envc.counts()
	if misses == 0 || entries == 0 {
		t.Fatalf("no map cached after a first snapshot (misses %d, entries %d)", misses, entries)
	}
	m.envc.mu.Lock()
	shared := m.envc.shared
	m.envc.mu.Unlock()
	if shared < 2 { // the shell envs of env1 and env2 are those of env0
		t.Errorf("%d maps took an equal map's JSON, want at least 2 (the same shell env in 3 apps)", shared)
	}
	checkSameState(t, "no change", m)
	if again, _ := m.envc.counts(); again != misses {
		t.Errorf("a snapshot without change encoded %d maps again", again-misses)
	}

	// An instance's env changed in place (no code does it today; the cache must not care).
	m.mu.Lock()
	in := m.apps["env1"].instances[0]
	in.st.Env["OWN"] = "changed in place"
	m.apps["env2"].spec.ShellEnv["VAR_03"] = "changed in place too"
	m.mu.Unlock()
	st = checkSameState(t, "env changed in place", m)
	if got := st.Apps[1].Instances[0].State.Env["OWN"]; got != "changed in place" {
		t.Errorf("instance env OWN = %q in the state, want the change", got)
	}
	if got := st.Apps[2].Spec.ShellEnv["VAR_03"]; got != "changed in place too" {
		t.Errorf("spec shell env VAR_03 = %q in the state, want the change", got)
	}
	if now, _ := m.envc.counts(); now != misses+2 {
		t.Errorf("%d maps encoded again after two changed, want 2", now-misses)
	}

	// Maps replaced: restart --update-env with another shell environment.
	newShell := shellEnv(4)
	newShell["NEW_ONE"] = "yes"
	if _, _, err := m.Restart(ctx, []string{"env0"}, api.RestartOptions{UpdateEnv: true, Env: newShell}); err != nil {
		t.Fatal(err)
	}
	st = checkSameState(t, "after restart --update-env", m)
	if st.Apps[0].Spec.ShellEnv["NEW_ONE"] != "yes" || st.Apps[0].Instances[0].State.Env["NEW_ONE"] != "yes" {
		t.Errorf("the new shell environment is not in the state: spec %v", st.Apps[0].Spec.ShellEnv)
	}

	// A status change and a pid gone.
	if _, err := m.Stop(ctx, []string{"plain"}); err != nil {
		t.Fatal(err)
	}
	st = checkSameState(t, "after a stop", m)
	for _, in := range st.Apps[4].Instances {
		if in.State.Status != StatusStopped || in.Run != nil {
			t.Errorf("stopped instance %d: status %s, run %+v", in.State.PMID, in.State.Status, in.Run)
		}
	}

	// A deleted app's maps leave the cache.
	_, before := m.envc.counts()
	if _, err := m.Delete(ctx, []string{"env0", "env1"}); err != nil {
		t.Fatal(err)
	}
	checkSameState(t, "after a delete", m)
	if _, after := m.envc.counts(); after >= before {
		t.Errorf("cache entries %d → %d after deleting two apps, want fewer", before, after)
	}
}

// A state whose every field is set encodes through savedStateOut to the same JSON object as
// through savedState: a field added to either keeps this test honest, and so does a MarshalJSON
// method on an embedded type (it would hide the shadowing fields).
func TestSnapshotEnvCacheFieldByField(t *testing.T) {
	st := savedState{Version: stateVersion, PID: 7, NextID: 3, FDSeq: 9,
		Apps: []savedApp{{
			Spec:    appspec.App{Name: "a", Script: "s", Env: map[string]string{"A": "1"}, ShellEnv: map[string]string{"B": "2"}},
			EnvSets: map[string]map[string]string{"prod": {"C": "3"}},
			Res:     savedRes{Mode: 1, ExecPath: "/bin/s", Argv: []string{"s"}, Notes: []string{"n"}},
			Notes:   []string{"note"}, Listeners: []string{"lsn/1"},
			Primary: &savedPrimary{Listeners: map[string]string{"k": "ln/2"}, NextSeq: 4, NextWorkerID: 5},
			Instances: []savedInstance{
				{State: InstanceState{PMID: 0, Name: "a", Status: StatusOnline, PID: 11, Env: map[string]string{"D": "4"}, Notes: []string{"x"}},
					UserStopped: true, Run: &savedRun{PID: 11, Start: 12, Out: "out/1", Keys: []string{"k"}}, Next: &savedRun{PID: 13}},
				{State: InstanceState{PMID: 1, Name: "a", Status: StatusStopped}}, // nil env: null
			},
		}, {
			Spec:      appspec.App{Name: "b", ShellEnv: map[string]string{}}, // empty: omitted, as by omitempty
			Instances: []savedInstance{{State: InstanceState{PMID: 2, Env: map[string]string{}}}},
		}},
		Strays: []savedStray{{PMID: 0, Run: savedRun{PID: 21}}},
	}
	for _, empty := range []savedState{{Version: stateVersion}, {Apps: []savedApp{{Spec: appspec.App{Name: "none"}}}}} {
		var c envCache
		out := c.prepare(empty)
		if err := c.resolve(&out); err != nil {
			t.Fatal(err)
		}
		var gb bytes.Buffer
		if err := appendState(&gb, &out); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(empty)
		var w, g any
		_ = json.Unmarshal(want, &w)
		if err := json.Unmarshal(gb.Bytes(), &g); err != nil || !reflect.DeepEqual(g, w) {
			t.Fatalf("encoded state differs (%v):\ngot  %s\nwant %s", err, gb.Bytes(), want)
		}
	}
	want, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var c envCache
	out := c.prepare(st)
	if err := c.resolve(&out); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	if err := appendState(&gb, &out); err != nil {
		t.Fatal(err)
	}
	got := gb.Bytes()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("encoded state differs:\ngot  %s\nwant %s", got, want)
	}
	// Encoding again from the cache gives the same bytes.
	out2 := c.prepare(st)
	if err := c.resolve(&out2); err != nil {
		t.Fatal(err)
	}
	var gb2 bytes.Buffer
	if err := appendState(&gb2, &out2); err != nil {
		t.Fatal(err)
	}
	if got2 := gb2.Bytes(); !bytes.Equal(got, got2) {
		t.Fatalf("second encoding from the cache differs:\n%s\n%s", got, got2)
	}
}

// benchState returns a Manager holding n stopped apps (autostart off: no process), each with a
// shell environment like a real one (the test's own) and two variables of its own.
func benchState(b *testing.B, n int) *Manager {
	b.Helper()
	m, err := New(Config{Home: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	shell := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		shell[k] = v
	}
	for len(shell) < 40 {
		shell[fmt.Sprintf("FILLER_%02d", len(shell))] = "/usr/local/share/some/typical/path/value"
	}
	off := false
	var apps []appspec.App
	for i := 0; i < n; i++ {
		apps = append(apps, appspec.App{Name: fmt.Sprintf("s%03d", i), Script: "sleep", Args: []string{"100000"},
			Interpreter: "none", Autostart: &off, ShellEnv: maps.Clone(shell), Env: map[string]string{"PORT": fmt.Sprint(3000 + i), "APP": "x"}})
	}
	if _, err := m.Start(context.Background(), apps, api.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkStateSnapshot measures one snapshot of a table of 100 apps as the keeper link takes it
// (marshalStateInto: envs from the cache), against encoding savedState itself with copies of
// every env (the snapshot before the cache).
func BenchmarkStateSnapshot(b *testing.B) {
	m := benchState(b, 100)
	b.Run("cached", func(b *testing.B) {
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if !m.marshalStateInto(&buf) {
				b.Fatal("marshal failed")
			}
		}
		b.ReportMetric(float64(buf.Len()), "bytes/state")
	})
	b.Run("uncached", func(b *testing.B) {
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			m.mu.Lock()
			st := m.saveStateLocked(true)
			m.mu.Unlock()
			if err := json.NewEncoder(&buf).Encode(st); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len()), "bytes/state")
	})
}
