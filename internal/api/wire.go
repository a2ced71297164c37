package api

import "github.com/corralhq/corral/internal/appspec"

// Wire types: the JSON bodies of the requests and responses of POST /v1/<method>.

// StartRequest is the body of POST /v1/start.
type StartRequest struct {
	Apps  []appspec.App `json:"apps"`
	Force bool          `json:"force,omitempty"`
	Lean  bool          `json:"lean,omitempty"` // StartOptions.Lean (an older daemon ignores it)
}

// TargetsRequest is the body of stop, delete, reset, flush and logs.
type TargetsRequest struct {
	Targets []string `json:"targets"`
}

// RestartRequest is the body of restart and reload.
type RestartRequest struct {
	Targets   []string          `json:"targets"`
	UpdateEnv bool              `json:"update_env,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// AppEnv is RestartOptions.AppEnv. It has no omitempty: null (nil) and {} (clear) differ.
	AppEnv map[string]string `json:"app_env"`
	// Overrides is RestartOptions.Overrides.
	Overrides *Overrides `json:"overrides,omitempty"`
}

// ScaleRequest is the body of POST /v1/scale.
type ScaleRequest struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
}

// SignalRequest is the body of POST /v1/signal.
type SignalRequest struct {
	Signal  string   `json:"signal"`
	Targets []string `json:"targets"`
}

// ProcsResponse is the response of every method that returns processes.
type ProcsResponse struct {
	Procs []Proc   `json:"procs"`
	Notes []string `json:"notes,omitempty"` // restart/reload: the notes they return
}

// AppsResponse is the response of POST /v1/apps.
type AppsResponse struct {
	Apps []appspec.App `json:"apps"`
}

// PingResponse is the response of POST /v1/ping.
type PingResponse struct {
	Pong    bool   `json:"pong"`
	PID     int    `json:"pid"`               // the daemon's process id
	Version string `json:"version,omitempty"` // the daemon's version (empty from an older daemon)
	// Goroutines is runtime.NumGoroutine() in the daemon when it answered (0 from an older daemon),
	// for leak checks (bench/soak.sh).
	Goroutines int `json:"goroutines,omitempty"`
	// FastRequests counts the requests the CLI's early fast path made (`ls`, `jlist`: the
	// Corral-Fast header), for tests that check it was taken.
	FastRequests int64 `json:"fast_requests,omitempty"`
}

// Method names, as they appear in the URL path /v1/<method>.
const (
	MethodStart      = "start"
	MethodStop       = "stop"
	MethodRestart    = "restart"
	MethodReload     = "reload"
	MethodDelete     = "delete"
	MethodScale      = "scale"
	MethodList       = "list"
	MethodSignal     = "signal"
	MethodReset      = "reset"
	MethodFlush      = "flush"
	MethodReloadLogs = "reloadLogs"
	MethodLogs       = "logs"
	MethodApps       = "apps"
	MethodShutdown   = "shutdown"
	MethodPing       = "ping"
)
