package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/pm2json"
)

// TestListRowsMatchList: the rows ls gets are RowOf of List's Procs, for online and stopped
// instances; JList is pm2json's rendering of List.
func TestListRowsMatchList(t *testing.T) {
	m := newTestManager(t, Config{})
	a, b := goApp(t, "a", "sleep", nil), goApp(t, "b", "sleep", nil)
	b.Instances = 2
	startSleepers(t, m, a, b)
	ctx := context.Background()
	if _, err := m.Stop(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	// A CPU sample may land between List and ListRows: a few tries.
	var rows []api.Row
	var want []api.Row
	for range 5 {
		procs, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rows, err = m.ListRows(ctx); err != nil {
			t.Fatal(err)
		}
		want = make([]api.Row, len(procs))
		for i, p := range procs {
			want[i] = api.RowOf(p)
		}
		if reflect.DeepEqual(rows, want) {
			break
		}
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("ListRows = %+v\nwant %+v", rows, want)
	}
	if len(rows) != 3 || rows[0].Status != "stopped" || rows[1].Status != "online" || rows[1].PID == 0 || rows[1].StartedAt == 0 {
		t.Errorf("rows %+v", rows)
	}

	// JList: pm2json's rendering of List (CPU and memory figures may change between two calls).
	var entries []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	for range 5 {
		procs, err := m.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.JList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantJ, err := pm2json.JList(procs)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) == string(wantJ) {
			if err := json.Unmarshal(got, &entries); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(entries) != 3 || entries[0].Name != "a" || entries[1].PID != rows[1].PID {
		t.Errorf("JList never matched pm2json.JList(List) (or is wrong): %+v", entries)
	}
}

// TestJListCacheFollowsEnvironment: jlist's encoded environments are cached per instance
// (pm2json.EnvCache), and a restart with --update-env, which replaces the instance's
// environment, shows in the next jlist; every answer is pm2json's rendering of List.
func TestJListCacheFollowsEnvironment(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "envy", "sleep", nil)
	startSleepers(t, m, a)
	ctx := context.Background()
	matches := func(what string) string {
		t.Helper()
		for range 5 { // a CPU sample may land between List and JList
			procs, err := m.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.JList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lent, err := lentJList(m)
			if err != nil {
				t.Fatal(err)
			}
			want, err := pm2json.JList(procs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) == string(want) && string(lent) == string(want) {
				return string(got)
			}
		}
		t.Fatalf("%s: JList never matched pm2json.JList(List)", what)
		return ""
	}
	if out := matches("first"); strings.Contains(out, "FASTLS_NEW") {
		t.Fatalf("a variable not set yet: %s", out)
	}
	matches("cached")
	shell := map[string]string{"FASTLS_NEW": "fresh", "PATH": os.Getenv("PATH")}
	if _, _, err := m.Restart(ctx, []string{"envy"}, api.RestartOptions{UpdateEnv: true, Env: shell}); err != nil {
		t.Fatal(err)
	}
	if out := matches("after --update-env"); !strings.Contains(out, `"FASTLS_NEW":"fresh"`) {
		t.Errorf("jlist after --update-env lacks the new variable: %s", out)
	}
	if _, err := m.Stop(ctx, []string{"envy"}); err != nil {
		t.Fatal(err)
	}
	if out := matches("stopped"); !strings.Contains(out, `"status":"stopped"`) {
		t.Errorf("jlist after stop: %s", out)
	}
}

// TestJListDuringRestarts: jlist reads the instances' environments after releasing m.mu; restarts
// that replace them meanwhile are no race (go test -race) and every answer is valid JSON.
func TestJListDuringRestarts(t *testing.T) {
	m := newTestManager(t, Config{})
	a := goApp(t, "churn", "sleep", nil)
	a.Instances = 2
	startSleepers(t, m, a)
	ctx := context.Background()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			out, err := m.JList(ctx)
			if err == nil {
				out, err = lentJList(m) // the pooled buffer, reused under the same churn
			}
			if err == nil && !json.Valid(out) {
				err = fmt.Errorf("invalid JSON: %s", out)
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	for i := range 5 {
		shell := map[string]string{"ROUND": strconv.Itoa(i), "PATH": os.Getenv("PATH")}
		if _, _, err := m.Restart(ctx, []string{"churn"}, api.RestartOptions{UpdateEnv: true, Env: shell}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	out, err := m.JList(ctx)
	if err != nil || !strings.Contains(string(out), `"ROUND":4`) && !strings.Contains(string(out), `"ROUND":"4"`) {
		t.Errorf("jlist after the last restart: %v %s", err, out)
	}
}

// lentJList returns a copy of what LendJList lends (the API server's path), called twice so that
// the second call renders into the buffer the first one left.
func lentJList(m *Manager) ([]byte, error) {
	var out []byte
	for range 2 {
		if err := m.LendJList(context.Background(), func(b []byte) error {
			out = append(out[:0], b...)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
