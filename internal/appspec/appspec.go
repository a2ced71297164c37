// Package appspec defines what an app is: the options a user gives on the command line or in an
// ecosystem file, with PM2's names, before the daemon resolves them into running processes.
//
// The JSON names are PM2's ecosystem keys, so an App marshals to (and from) the same JSON a PM2
// user writes. Durations are milliseconds and sizes bytes, as in PM2's resolved configuration.
package appspec

// App is one application definition. Zero values mean "not set"; Defaults fills in PM2's defaults.
type App struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"` // "default" when empty
	Script    string   `json:"script"`              // path, executable on $PATH, or a command string with spaces (run by bash -c)
	Args      []string `json:"args,omitempty"`
	Cwd       string   `json:"cwd,omitempty"`

	Interpreter     string   `json:"interpreter,omitempty"`      // "node", "python3", "none" (run directly), ...; empty: by extension
	InterpreterArgs []string `json:"interpreter_args,omitempty"` // alias node_args

	Instances int    `json:"instances,omitempty"` // resolved count (>= 1); see ParseInstances for "max", 0, -N
	ExecMode  string `json:"exec_mode,omitempty"` // "fork" or "cluster"

	// Listen lists addresses the daemon binds and passes to every instance by the systemd
	// socket-activation protocol (LISTEN_FDS), for programs that do not speak Node's cluster protocol.
	Listen []string `json:"listen,omitempty"`

	// Env is the app's own environment: what its start flags or ecosystem env blocks set. When
	// ShellEnv is nil, Env is instead the whole environment the app runs with (the shell's
	// environment with the app's own variables merged over it).
	Env map[string]string `json:"env,omitempty"`
	// ShellEnv is the environment of the shell (CLI) that started the app, kept apart from Env so
	// that `restart --update-env` can replace it with a new shell's environment — variables removed
	// from the shell disappear — while the app's own variables (Env) still win over it, as in PM2.
	// nil means "not separated" (see Env); a non-nil empty map is an empty shell environment.
	ShellEnv map[string]string `json:"shell_env,omitempty"`
	// EnvSets holds the env_<name> blocks of an ecosystem file, keyed by <name>, applied with --env <name>.
	EnvSets map[string]map[string]string `json:"-"`

	Autorestart            *bool `json:"autorestart,omitempty"` // nil means true
	MaxRestarts            int   `json:"max_restarts,omitempty"`
	MinUptime              int64 `json:"min_uptime,omitempty"`                // ms
	RestartDelay           int64 `json:"restart_delay,omitempty"`             // ms
	ExpBackoffRestartDelay int64 `json:"exp_backoff_restart_delay,omitempty"` // ms; 0 = off
	StopExitCodes          []int `json:"stop_exit_codes,omitempty"`

	KillTimeout         int64  `json:"kill_timeout,omitempty"`   // ms
	KillSignal          string `json:"kill_signal,omitempty"`    // "SIGINT" by default
	ListenTimeout       int64  `json:"listen_timeout,omitempty"` // ms
	WaitReady           bool   `json:"wait_ready,omitempty"`
	ShutdownWithMessage bool   `json:"shutdown_with_message,omitempty"`
	// Drain (corral only): load corral's connection drain into a Node app (internal/drain). nil
	// means on for Node apps in cluster mode, with listen, or in fork mode with PORT set.
	Drain        *bool `json:"drain,omitempty"`
	DrainTimeout int64 `json:"drain_timeout,omitempty"` // ms; 0: three quarters of kill_timeout

	OutFile   string `json:"out_file,omitempty"`
	ErrorFile string `json:"error_file,omitempty"`
	LogFile   string `json:"log_file,omitempty"` // combined stdout+stderr
	MergeLogs bool   `json:"merge_logs,omitempty"`
	// Sticky (cluster mode): every connection from one client IP goes to the same instance.
	Sticky         bool   `json:"sticky,omitempty"`
	LogDateFormat  string `json:"log_date_format,omitempty"`
	Time           bool   `json:"time,omitempty"`          // prefix lines with a timestamp (ISO-8601)
	LogType        string `json:"log_type,omitempty"`      // "" or "json"
	LogMaxSize     int64  `json:"log_max_size,omitempty"`  // bytes; 0 = no size rotation
	LogMaxFiles    int    `json:"log_max_files,omitempty"` // rotated files kept
	LogRotateDaily bool   `json:"log_rotate_daily,omitempty"`

	InstanceVar  string `json:"instance_var,omitempty"`  // "NODE_APP_INSTANCE" by default
	IncrementVar string `json:"increment_var,omitempty"` // e.g. "PORT": incremented per instance

	Watch            []string `json:"watch,omitempty"` // paths; ["."] for watch: true
	IgnoreWatch      []string `json:"ignore_watch,omitempty"`
	WatchDelay       int64    `json:"watch_delay,omitempty"`        // ms debounce
	MaxMemoryRestart int64    `json:"max_memory_restart,omitempty"` // bytes; 0 = off
	CronRestart      string   `json:"cron_restart,omitempty"`

	UID string `json:"uid,omitempty"`
	GID string `json:"gid,omitempty"`

	Autostart *bool `json:"autostart,omitempty"` // nil means true

	// ReadinessProbe gates "online", start and reload (probe.go); LivenessProbe restarts an
	// online instance that fails it. DependsOn orders starts (start, resurrect, startup).
	ReadinessProbe *Probe       `json:"readiness_probe,omitempty"`
	LivenessProbe  *Probe       `json:"liveness_probe,omitempty"`
	DependsOn      []Dependency `json:"depends_on,omitempty"`
	// WatchdogSec restarts an online instance that sends no WATCHDOG=1 to $NOTIFY_SOCKET for that
	// many seconds (systemd's WatchdogSec; the app reads WATCHDOG_USEC). 0 = off.
	WatchdogSec float64 `json:"watchdog_sec,omitempty"`
	// PidFile is PM2's pid_file (-p/--pid): where each instance's pid is written (relative to
	// Cwd; "-<pm_id>" before the extension with several instances); default <home>/pids/.
	PidFile string `json:"pid_file,omitempty"`
	// SourceMapSupport is PM2's source_map_support: true runs a Node app with
	// --enable-source-maps, false never; nil (default) when a .map file sits next to the script.
	SourceMapSupport *bool `json:"source_map_support,omitempty"`
}

// PM2's defaults.
const (
	DefaultMaxRestarts   = 16
	DefaultMinUptime     = 1000 // ms
	DefaultKillTimeout   = 1600 // ms
	DefaultListenTimeout = 3000 // ms
	DefaultKillSignal    = "SIGINT"
	DefaultInstanceVar   = "NODE_APP_INSTANCE"
	DefaultNamespace     = "default"
)

// Defaults fills every unset field that has a PM2 default. It does not resolve the interpreter or
// the exec mode, which depend on the script (see the daemon).
func (a *App) Defaults() {
	if a.Namespace == "" {
		a.Namespace = DefaultNamespace
	}
	if a.Instances == 0 {
		a.Instances = 1
	}
	if a.MaxRestarts == 0 {
		a.MaxRestarts = DefaultMaxRestarts
	}
	if a.MinUptime == 0 {
		a.MinUptime = DefaultMinUptime
	}
	if a.KillTimeout == 0 {
		a.KillTimeout = DefaultKillTimeout
	}
	if a.ListenTimeout == 0 {
		a.ListenTimeout = DefaultListenTimeout
	}
	if a.KillSignal == "" {
		a.KillSignal = DefaultKillSignal
	}
	if a.InstanceVar == "" {
		a.InstanceVar = DefaultInstanceVar
	}
}

// AutorestartOn reports whether the app is restarted when it exits.
func (a *App) AutorestartOn() bool { return a.Autorestart == nil || *a.Autorestart }

// AutostartOn reports whether the app starts when it is loaded.
func (a *App) AutostartOn() bool { return a.Autostart == nil || *a.Autostart }

// RunEnv returns the environment the app runs with, as a new map: ShellEnv with Env over it.
func (a *App) RunEnv() map[string]string {
	env := make(map[string]string, len(a.ShellEnv)+len(a.Env))
	for k, v := range a.ShellEnv {
		env[k] = v
	}
	for k, v := range a.Env {
		env[k] = v
	}
	return env
}
