package daemon

import (
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

func TestDrainOn(t *testing.T) {
	on, off := true, false
	cases := []struct {
		name   string
		mode   execMode
		interp string
		env    map[string]string
		drain  *bool
		cred   bool
		want   bool
	}{
		{"cluster node", modeCluster, "node", nil, nil, false, true},
		{"cluster node, drain false", modeCluster, "node", nil, &off, false, false},
		{"cluster Go program", modeCluster, "none", nil, nil, false, false},
		{"listen node", modeListen, "/usr/bin/node", nil, nil, false, true},
		{"listen python", modeListen, "python3", nil, nil, false, false},
		{"fork node without PORT", modeFork, "node", nil, nil, false, false},
		{"fork node with PORT", modeFork, "node", map[string]string{"PORT": "3000"}, nil, false, true},
		{"fork node, drain true", modeFork, "node", nil, &on, false, true},
		{"fork node with PORT, drain false", modeFork, "node", map[string]string{"PORT": "3000"}, &off, false, false},
		{"cluster node as another user", modeCluster, "node", nil, nil, true, false},
		{"fork bun with PORT", modeFork, "bun", map[string]string{"PORT": "3000"}, nil, false, false},
	}
	for _, c := range cases {
		a := &app{spec: appspec.App{Env: c.env, Drain: c.drain}, res: resolved{mode: c.mode, interpreter: c.interp}}
		if c.cred {
			a.res.cred = &syscall.Credential{Uid: 1}
		}
		if got := drainOn(a); got != c.want {
			t.Errorf("%s: drainOn = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDrainTimeout(t *testing.T) {
	if d := drainTimeout(appspec.App{KillTimeout: 1600}); d != 1200*time.Millisecond {
		t.Errorf("default: %v, want 3/4 of kill_timeout", d)
	}
	if d := drainTimeout(appspec.App{KillTimeout: 1600, DrainTimeout: 5000}); d != 5*time.Second {
		t.Errorf("drain_timeout 5000: %v", d)
	}
}
