package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/daemonproc"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/testutil"
)

// kstate is what TestKeeperBurstStartKill9 reads of the state the daemon stored in the keeper.
type kstate struct {
	Apps []struct {
		Spec struct {
			Name     string            `json:"name"`
			Env      map[string]string `json:"env"`
			ShellEnv map[string]string `json:"shell_env"`
		} `json:"spec"`
		Instances []struct {
			State struct {
				PMID int               `json:"pm_id"`
				Env  map[string]string `json:"env"`
			} `json:"state"`
			Run *struct {
				PID int `json:"pid"`
			} `json:"run"`
		} `json:"instances"`
	} `json:"apps"`
}

// keeperState fetches the state stored in the home's keeper (every fd comes along: closed here).
func (h *kHome) keeperState() (kstate, error) {
	var st kstate
	c, err := keeper.Dial(filepath.Join(h.p.Home, keeper.SocketName))
	if err != nil {
		return st, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ents, err := c.FetchAll(ctx)
	if err != nil {
		return st, err
	}
	var raw []byte
	for _, e := range ents {
		if e.Name == "state" {
			if _, err := e.File.Seek(0, io.SeekStart); err == nil {
				raw, err = io.ReadAll(e.File)
				if err != nil {
					raw = nil
				}
			}
		}
		e.File.Close()
	}
	if raw == nil {
		return st, fmt.Errorf("no state in the keeper")
	}
	return st, json.Unmarshal(raw, &st)
}

// TestKeeperBurstStartKill9 starts 40 fork-mode apps from one ecosystem file (one start: the
// state is stored while the processes are being forked, from the snapshot's env cache), each with
// an env of its own. The keeper's state comes to name exactly the processes jlist shows, each
// instance with its own app's env; then the daemon is SIGKILLed, and the next one adopts every
// process: same pids, counters and uptimes.
func TestKeeperBurstStartKill9(t *testing.T) {
	if os.Getenv("CORRAL_KEEPER_TEST_OFF") != "" {
		t.Skip("reads the keeper's state")
	}
	h := newKHome(t)
	const n = 40
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep on PATH")
	}
	type ecoApp struct {
		Name        string            `json:"name"`
		Script      string            `json:"script"`
		Args        []string          `json:"args"`
		Interpreter string            `json:"interpreter"`
		ExecMode    string            `json:"exec_mode"`
		Env         map[string]string `json:"env"`
	}
	var eco struct {
		Apps []ecoApp `json:"apps"`
	}
	for i := 0; i < n; i++ {
		eco.Apps = append(eco.Apps, ecoApp{Name: fmt.Sprintf("b%02d", i), Script: sleep, Args: []string{"100000"},
			Interpreter: "none", ExecMode: "fork", Env: map[string]string{"BURST_IDX": strconv.Itoa(i)}})
	}
	b, _ := json.Marshal(eco)
	ecoPath := filepath.Join(filepath.Dir(h.p.Home), "burst.config.json")
	if err := os.WriteFile(ecoPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.run(t, nil, "start", ecoPath)
	before := h.waitOnline(t, n)

	var last string
	if !testutil.Eventually(30*time.Second, func() bool {
		st, err := h.keeperState()
		if err != nil {
			last = err.Error()
			return false
		}
		pids := map[int]int{} // pm_id -> pid
		for _, a := range st.Apps {
			for _, in := range a.Instances {
				if in.Run != nil {
					pids[in.State.PMID] = in.Run.PID
				}
			}
		}
		for id, p := range before {
			if pids[id] != p.PID {
				last = fmt.Sprintf("pm_id %d (%s): pid %d in the state, %d running", id, p.Name, pids[id], p.PID)
				return false
			}
		}
		if len(pids) != len(before) {
			last = fmt.Sprintf("%d processes in the state, %d running", len(pids), len(before))
			return false
		}
		for _, a := range st.Apps {
			want := strconv.Itoa(atoiOr(a.Spec.Name[1:])) // b07 -> 7
			if a.Spec.Env["BURST_IDX"] != want || len(a.Spec.ShellEnv) == 0 {
				t.Fatalf("app %s in the state: env %v, %d shell variables", a.Spec.Name, a.Spec.Env, len(a.Spec.ShellEnv))
			}
			for _, in := range a.Instances {
				if in.State.Env["BURST_IDX"] != want || in.State.Env["name"] != a.Spec.Name {
					t.Fatalf("app %s in the state: instance env BURST_IDX=%q name=%q", a.Spec.Name,
						in.State.Env["BURST_IDX"], in.State.Env["name"])
				}
			}
		}
		return true
	}) {
		t.Fatalf("the keeper's state never named every process: %s", last)
	}

	old, err := daemonproc.ReadPid(h.p.PidFile)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(old, syscall.SIGKILL)
	h.waitNewDaemon(t, old)
	after := h.waitOnline(t, n)
	ksameProcs(t, "after kill -9 following a start of 40", before, after, nil)

	h.run(t, nil, "kill")
	if left := h.procs(); len(left) > 0 {
		t.Errorf("processes left after corral kill:%s", kdescribe(left))
	}
}

func atoiOr(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
