// Package api defines the control protocol between the corral CLI and the
// corral daemon: the Backend interface the daemon implements, an HTTP/JSON
// server exposing a Backend on a Unix socket, and a Client that implements
// Backend by talking to that socket.
package api

import (
	"context"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// Backend is what the daemon serves over its control socket.
//
// Targets: "all", a numeric pm_id, an app name, a namespace or a /regex/ on
// app names; several are allowed (see Match, their one definition). An
// unknown target yields an error wrapping ErrUnknownTarget ("process or
// namespace not found: foo") and nothing is changed.
type Backend interface {
	// Start starts new apps; an existing name restarts it (PM2 smart start).
	Start(ctx context.Context, apps []appspec.App, opts StartOptions) ([]Proc, error)
	// Stop stops the targeted instances.
	Stop(ctx context.Context, targets []string) ([]Proc, error)
	// Restart restarts the targeted instances. The notes are remarks about
	// the operation as a whole, for the user.
	Restart(ctx context.Context, targets []string, opts RestartOptions) (procs []Proc, notes []string, err error)
	// Reload restarts the targeted instances rolling, with zero downtime;
	// fork apps without a shared socket are restarted and a note says so.
	Reload(ctx context.Context, targets []string, opts RestartOptions) (procs []Proc, notes []string, err error)
	// Delete stops and forgets the targeted instances.
	Delete(ctx context.Context, targets []string) ([]Proc, error)
	// Scale changes the number of instances of the named app; spec is "N", "+N" or "-N".
	Scale(ctx context.Context, name string, spec string) ([]Proc, error)
	// List returns every known instance.
	List(ctx context.Context) ([]Proc, error)
	// Signal sends the named signal to the targeted instances.
	Signal(ctx context.Context, sig string, targets []string) ([]Proc, error)
	// Reset zeroes the restart counters of the targeted instances.
	Reset(ctx context.Context, targets []string) ([]Proc, error)
	// Flush empties the log files of the targeted instances.
	Flush(ctx context.Context, targets []string) error
	// ReloadLogs reopens every log file (after external rotation).
	ReloadLogs(ctx context.Context) error
	// Logs streams log lines of the targeted instances until ctx is done.
	Logs(ctx context.Context, targets []string) (<-chan LogLine, error)
	// Apps returns the current app definitions, for `save`.
	Apps(ctx context.Context) ([]appspec.App, error)
	// Shutdown stops every app gracefully (for `kill` and daemon exit).
	Shutdown(ctx context.Context) error
}

// StartOptions modifies Backend.Start.
type StartOptions struct {
	// Force allows starting a script that is already running without a new
	// name; without it such a duplicate start is an error.
	Force bool
	// Lean asks for the answer's Procs without their environments (Env, App.Env, App.ShellEnv):
	// for a caller that only reports what started (with 100 apps, most of the answer's size).
	Lean bool
}

// RestartOptions modifies Backend.Restart and Backend.Reload.
type RestartOptions struct {
	// UpdateEnv replaces the frozen environment of the instances with Env.
	UpdateEnv bool
	// Env is the CLI's environment, used when UpdateEnv is set.
	Env map[string]string
	// AppEnv, when non-nil, replaces the app's own environment (appspec.App.Env): the env
	// blocks of an ecosystem file read again on restart or reload. It applies with or
	// without UpdateEnv; a non-nil empty map clears the app's own variables.
	AppEnv map[string]string
	// Overrides, when non-nil, are new option values for the apps the targets
	// name: every instance of each such app is restarted with its definition
	// changed by Overrides.Apply, and the change sticks. Every app is checked
	// before any is touched; a reload with Overrides restarts (a new definition
	// cannot be reloaded with zero downtime) and says so in a note. With
	// UpdateEnv, Env also becomes the apps' shell environment. Overrides and
	// AppEnv cannot be combined.
	Overrides *Overrides
}

// Proc describes one instance: everything `ls`, `jlist` and `show` print.
type Proc struct {
	PMID      int
	Name      string
	Namespace string
	PID       int
	// Status is one of "launching", "online", "stopping", "stopped",
	// "waiting restart", "errored".
	Status string
	// App is the app's definition (with Defaults applied, interpreter and
	// exec_mode resolved).
	App appspec.App
	// Interpreter is the resolved interpreter, e.g. "node", "none".
	Interpreter string
	// ExecPath is the absolute script path (pm_exec_path).
	ExecPath string
	// Cwd is the working directory of the instance.
	Cwd string
	// Instance is the NODE_APP_INSTANCE value.
	Instance int
	// Restarts is the restart count (restart_time).
	Restarts int
	// UnstableRestarts counts restarts that happened before min_uptime.
	UnstableRestarts int
	// StartedAt is the time of the last (re)start (pm_uptime).
	StartedAt time.Time
	// CreatedAt is when the instance was first created.
	CreatedAt time.Time
	// ExitCode is the exit code of the last exit.
	ExitCode int
	// ExitSignal is the signal that ended the last run, if any.
	ExitSignal string
	// OutLog, ErrLog, CombinedLog and PidFile are file paths.
	OutLog, ErrLog, CombinedLog, PidFile string
	// CPU is the CPU usage in percent; 0 unless online.
	CPU float64
	// Memory is the resident memory in bytes; 0 unless online.
	Memory uint64
	// Env is the frozen environment the instance runs with.
	Env map[string]string
	// Notes holds remarks, e.g. "fork mode without a shared socket: reload
	// fell back to restart".
	Notes []string
	// Health checks: Readiness is "" without a readiness probe, else "ready"
	// or "waiting: <the probe's last output>"; LivenessRestarts counts the
	// restarts a failed liveness probe caused, RestartReason says why the
	// last one happened.
	Readiness        string `json:",omitempty"`
	LivenessRestarts int    `json:",omitempty"`
	RestartReason    string `json:",omitempty"`
	// Balancer is what the cluster primary's round-robin balancer did with the
	// instance's connections; nil outside cluster mode or before the worker
	// exists.
	Balancer *Balancer `json:",omitempty"`
	// Drain is what the instance's last drained process reported (corral's
	// connection drain for Node apps); nil if none did.
	Drain *DrainReport `json:",omitempty"`
}

// DrainReport is one drain: connections closed gracefully and connections
// still open at drain_timeout (cut), by the process PID, at At.
type DrainReport struct {
	Drained int64     `json:"drained"`
	Cut     int64     `json:"cut"`
	Ms      int64     `json:"ms"`
	PID     int       `json:"pid"`
	At      time.Time `json:"at"`
}

// Balancer is the round-robin balancer's view of one cluster worker (see
// cluster.BalancerStats), plus the connections of its app waiting for a
// free worker.
type Balancer struct {
	HandedOff uint64 // connections sent to the worker
	InFlight  int64  // sent, not yet answered
	Refused   uint64 // declined by the worker (accepted:false, maxConnections)
	Rerouted  uint64 // never reached it (NACK, or it died first): sent to another worker
	// Waiting is app-wide: connections queued by the primary or in its
	// listening sockets' backlogs while no worker is free.
	Waiting int
}

// LogLine is one line of an instance's output.
type LogLine struct {
	PMID   int
	Name   string
	Stream string // "out" or "err"
	Text   string
	Time   time.Time
}
