package daemon

import (
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"slices"
	"time"
)

// Status is the lifecycle state of one instance, with PM2's names.
type Status string

// The states of an instance. A new instance starts in StatusLaunching (or StatusStopped when
// autostart is off).
const (
	StatusLaunching      Status = "launching"
	StatusOnline         Status = "online"
	StatusStopping       Status = "stopping"
	StatusStopped        Status = "stopped"
	StatusWaitingRestart Status = "waiting restart"
	StatusErrored        Status = "errored"
)

// transitions is the whole state machine: the states an instance may move to from each state.
// Every status change goes through (*Manager).setStatus, which checks this table.
//
//	""               → launching (start), stopped (autostart off)
//	launching        → online (up / ready / listen_timeout), stopping (stop), waiting restart
//	                   (exit, will restart), stopped (exit, no restart), errored (exec failed,
//	                   too many unstable restarts)
//	online           → the same, plus launching (its process died during a reload and the
//	                   replacement is on its way)
//	stopping         → stopped (reaped), launching (restart), errored (could not be killed)
//	stopped          → launching
//	waiting restart  → launching (delay over), stopped (stop), errored (delete races)
//	errored          → launching, stopped
var transitions = map[Status][]Status{
	"":                   {StatusLaunching, StatusStopped},
	StatusLaunching:      {StatusOnline, StatusStopping, StatusWaitingRestart, StatusStopped, StatusErrored},
	StatusOnline:         {StatusStopping, StatusWaitingRestart, StatusStopped, StatusErrored, StatusLaunching},
	StatusStopping:       {StatusStopped, StatusLaunching, StatusErrored},
	StatusStopped:        {StatusLaunching},
	StatusWaitingRestart: {StatusLaunching, StatusStopped, StatusErrored},
	StatusErrored:        {StatusLaunching, StatusStopped},
}

// canTransition reports whether the state machine allows from → to.
func canTransition(from, to Status) bool {
	return slices.Contains(transitions[from], to)
}

// running reports whether an instance in state s has, or is about to have, a process.
func (s Status) running() bool {
	switch s {
	case StatusLaunching, StatusOnline, StatusStopping, StatusWaitingRestart:
		return true
	}
	return false
}

// InstanceState is the serialisable part of an instance: everything the daemon needs to describe
// it, or to adopt its process after being replaced in place. Runtime handles (pipes, IPC channel,
// the exec.Cmd) live beside it in the instance and are rebuilt from the descriptor numbers.
type InstanceState struct {
	PMID             int               `json:"pm_id"`
	Name             string            `json:"name"`
	Namespace        string            `json:"namespace"`
	Instance         int               `json:"instance"`
	Status           Status            `json:"status"`
	PID              int               `json:"pid"`
	PGID             int               `json:"pgid"`
	Restarts         int               `json:"restart_time"`
	UnstableRestarts int               `json:"unstable_restarts"`
	PrevRestartDelay int64             `json:"prev_restart_delay"` // ms, for exp_backoff_restart_delay
	StartedAt        time.Time         `json:"pm_uptime"`
	CreatedAt        time.Time         `json:"created_at"`
	ExitCode         int               `json:"exit_code"`
	ExitSignal       string            `json:"exit_signal,omitempty"`
	UniqueID         string            `json:"unique_id"`
	Env              map[string]string `json:"env"`
	OutLog           string            `json:"pm_out_log_path"`
	ErrLog           string            `json:"pm_err_log_path"`
	CombinedLog      string            `json:"pm_log_path,omitempty"`
	PidFile          string            `json:"pm_pid_path"`
	// Daemon-side descriptors of the running process: the read ends of its stdout and stderr
	// pipes and the IPC channel (-1 when absent).
	StdoutFD int      `json:"stdout_fd"`
	StderrFD int      `json:"stderr_fd"`
	IPCFD    int      `json:"ipc_fd"`
	Notes    []string `json:"notes,omitempty"`
	// Health checks (health.go): restarts caused by a failed liveness probe, and the reason of
	// the last one.
	LivenessRestarts int    `json:"liveness_restarts,omitempty"`
	RestartReason    string `json:"restart_reason,omitempty"`
	// LastDrain is what the last drained process of the instance reported (drain.go).
	LastDrain *api.DrainReport `json:"last_drain,omitempty"`
}

// setStatus moves in to status to. It is the only place a status changes. A transition the
// table does not allow is a bug: it is logged and counted (tests assert none happen) and the
// status is left unchanged. The caller holds m.mu.
func (m *Manager) setStatus(in *instance, to Status) bool {
	from := in.st.Status
	if from == to {
		return true
	}
	if !canTransition(from, to) {
		m.badTransitions++
		m.log.Error("invalid state transition", "pm_id", in.st.PMID, "name", in.st.Name,
			"from", string(from), "to", string(to))
		return false
	}
	in.st.Status = to
	m.dirty()
	m.ev.Publish(events.Event{Type: events.Status, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: in.st.PID,
		From: string(from), To: string(to)})
	m.log.Debug("state", "pm_id", in.st.PMID, "name", in.st.Name, "from", string(from), "to", string(to))
	m.changed.Broadcast()
	return true
}

// waitCond blocks until cond (evaluated with m.mu held) is true or timeout passes. It wakes on
// every state change (m.changed), so it never polls.
func (m *Manager) waitCond(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		m.mu.Lock()
		m.changed.Broadcast()
		m.mu.Unlock()
	})
	defer t.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		m.changed.Wait()
	}
	return true
}
