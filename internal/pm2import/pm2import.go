// Package pm2import reads PM2's saved process list (dump.pm2: a JSON array with one pm2_env object
// per process) and turns it into corral app definitions: one app per name, with as many instances
// as the dump has processes of that name. Every key of the dump is either imported, known to be
// PM2's own bookkeeping (status, counters, PM2.io), or reported as unknown: nothing is dropped
// silently.
package pm2import

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// App is one imported app and what the import saw of it.
type App struct {
	Spec   appspec.App
	Status string   // PM2's status of the first process ("online", "stopped", ...)
	Notes  []string // what was changed or left out, for the user
}

// Result is an imported dump.
type Result struct {
	Apps []App
	// Unknown lists the keys of the dump corral has no meaning for, sorted, each with the apps that
	// have it ("foo (api, worker)").
	Unknown []string
}

// pm2Internal are the pm2_env keys the import knows: the options it reads, and PM2's own state and
// PM2.io integration, which it leaves out. Any other key is reported as unknown.
var pm2Internal = map[string]bool{
	"status": true, "pm_uptime": true, "created_at": true, "restart_time": true, "unstable_restarts": true,
	"pm_id": true, "unique_id": true, "version": true, "node_version": true, "_pm2_version": true,
	"username": true, "vizion": true, "vizion_running": true, "km_link": true, "axm_actions": true,
	"axm_dynamic": true, "axm_monitor": true, "axm_options": true, "pmx": true, "automation": true,
	"treekill": true, "windowsHide": true, "kill_retry_time": true, "pm_pid_path": true, "exit_code": true,
	"prev_restart_delay": true, "versioning": true, "instances": true, "filter_env": true,
	"PM2_HOME": true, "NODE_APP_INSTANCE": true, "pm_exec_path": true, "pm_cwd": true, "exec_interpreter": true,
	"exec_mode": true, "env": true, "name": true, "pm_out_log_path": true, "pm_err_log_path": true,
	"pm_log_path": true, "node_args": true, "interpreter_args": true, "args": true, "namespace": true,
	"source_map_support": true, "disable_trace": true, "trace": true, "deep_monitoring": true,
	"instance_id": true, "pm2_env": true, "axm_monitor_enabled": true, "merge_logs": true, "watch": true,
	"ignore_watch": true, "autorestart": true, "autostart": true, "cron_restart": true, "uid": true, "gid": true,
	"user": true, "exec": true, "restart_delay": true, "exp_backoff_restart_delay": true,
	"max_restarts": true, "min_uptime": true, "kill_timeout": true, "listen_timeout": true, "wait_ready": true,
	"shutdown_with_message": true, "stop_exit_codes": true, "max_memory_restart": true, "instance_var": true,
	"increment_var": true, "log_date_format": true, "time": true, "log_type": true, "out_file": true,
	"error_file": true, "log_file": true, "combine_logs": true, "watch_delay": true, "interpreter": true,
	"cwd": true, "script": true, "node_version_used": true, "pmx_module": true, "force": true,
	"post_update": true, "append_env_to_name": true, "io": true, "wait_ready_timeout": true,
	"kill_signal": true, "autodump": true, "started_inside": true, "restart": true,
}

// envInternal are variables PM2 puts into every process's environment: not the app's.
var envInternal = []string{"PM2_HOME", "PM2_JSON_PROCESSING", "PM2_INTERACTOR_PROCESSING", "PM2_USAGE",
	"PM2_PROGRAMMATIC", "unique_id", "pm_id", "NODE_APP_INSTANCE", "_"}

// Load reads the dump at path.
func Load(path string) (*Result, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	res, err := Parse(src, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	return res, nil
}

// Parse converts a dump. pm2Home is the PM2 home the dump came from: log paths under it (PM2's
// defaults) are left to corral's own defaults.
func Parse(src []byte, pm2Home string) (*Result, error) {
	var procs []map[string]any
	if err := json.Unmarshal(src, &procs); err != nil {
		return nil, fmt.Errorf("not a PM2 dump (want a JSON array of processes): %w", err)
	}
	res := &Result{}
	byName := map[string]int{} // name → index in res.Apps
	unknown := map[string][]string{}
	for i, p := range procs {
		name, _ := p["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("process #%d has no name", i+1)
		}
		if j, ok := byName[name]; ok {
			res.Apps[j].Spec.Instances++
			continue
		}
		a, keys, err := convert(p, pm2Home)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, k := range keys {
			unknown[k] = append(unknown[k], name)
		}
		byName[name] = len(res.Apps)
		res.Apps = append(res.Apps, a)
	}
	for _, k := range slices.Sorted(maps.Keys(unknown)) {
		res.Unknown = append(res.Unknown, fmt.Sprintf("%s (%s)", k, strings.Join(unknown[k], ", ")))
	}
	for i := range res.Apps {
		a := &res.Apps[i]
		if a.Spec.Instances > 1 && a.Spec.ExecMode == "" {
			a.Spec.ExecMode = "fork"
		}
		if err := a.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", a.Spec.Name, err)
		}
	}
	return res, nil
}

// convert maps one pm2_env to an app, returning the keys it does not know.
func convert(p map[string]any, pm2Home string) (App, []string, error) {
	var a appspec.App
	out := App{}
	out.Status, _ = p["status"].(string)
	str := func(k string) string {
		switch v := p[k].(type) {
		case string:
			return v
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return ""
	}
	num := func(k string) (float64, bool) {
		switch v := p[k].(type) {
		case float64:
			return v, true
		case string:
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
		return 0, false
	}
	msOf := func(k string) int64 {
		if f, ok := num(k); ok && f > 0 && !math.IsInf(f, 0) {
			return int64(f)
		}
		if s := str(k); s != "" {
			if v, err := appspec.ParseDuration(s); err == nil {
				return v
			}
		}
		return 0
	}
	boolean := func(k string) (bool, bool) {
		b, ok := p[k].(bool)
		if !ok {
			if s, isStr := p[k].(string); isStr && (s == "true" || s == "false") {
				return s == "true", true
			}
		}
		return b, ok
	}
	strs := func(k string) []string {
		switch v := p[k].(type) {
		case string:
			return strings.Fields(v)
		case []any:
			var l []string
			for _, x := range v {
				l = append(l, fmt.Sprint(x))
			}
			return l
		}
		return nil
	}

	a.Name = str("name")
	a.Namespace = str("namespace")
	a.Script = str("pm_exec_path")
	if a.Script == "" {
		a.Script = str("script")
	}
	a.Cwd = str("pm_cwd")
	a.Args = strs("args")
	a.Instances = 1
	switch mode := str("exec_mode"); strings.TrimSuffix(mode, "_mode") {
	case "cluster":
		a.ExecMode = "cluster"
	case "fork", "":
		a.ExecMode = "fork"
	default:
		return out, nil, fmt.Errorf("exec_mode %q", mode)
	}
	a.Interpreter = str("exec_interpreter")
	if a.Interpreter == "" {
		a.Interpreter = str("interpreter")
	}
	a.InterpreterArgs = strs("node_args")
	if len(a.InterpreterArgs) == 0 {
		a.InterpreterArgs = strs("interpreter_args")
	}
	// The environment PM2 gave the process: the shell's at `pm2 start` and the app's own, merged.
	if env, ok := p["env"].(map[string]any); ok {
		a.Env = map[string]string{}
		for k, v := range env {
			if slices.Contains(envInternal, k) || k == a.Name {
				continue // PM2's, and its per-app marker (env[name] = "{}")
			}
			switch x := v.(type) {
			case string:
				a.Env[k] = x
			case float64:
				a.Env[k] = strconv.FormatFloat(x, 'f', -1, 64)
			case bool:
				a.Env[k] = strconv.FormatBool(x)
			}
		}
	}
	if b, ok := boolean("autorestart"); ok && !b {
		a.Autorestart = &b
	}
	if b, ok := boolean("autostart"); ok && !b {
		a.Autostart = &b
	}
	if f, ok := num("max_restarts"); ok {
		a.MaxRestarts = int(f)
	}
	a.MinUptime = msOf("min_uptime")
	a.RestartDelay = msOf("restart_delay")
	a.ExpBackoffRestartDelay = msOf("exp_backoff_restart_delay")
	a.KillTimeout = msOf("kill_timeout")
	a.ListenTimeout = msOf("listen_timeout")
	a.WaitReady, _ = boolean("wait_ready")
	a.ShutdownWithMessage, _ = boolean("shutdown_with_message")
	if s := str("kill_signal"); s != "" {
		a.KillSignal = s
	}
	if codes, ok := p["stop_exit_codes"].([]any); ok {
		for _, c := range codes {
			if f, ok := c.(float64); ok {
				a.StopExitCodes = append(a.StopExitCodes, int(f))
			}
		}
	} else if f, ok := num("stop_exit_codes"); ok {
		a.StopExitCodes = []int{int(f)}
	}
	if f, ok := num("max_memory_restart"); ok && f > 0 {
		a.MaxMemoryRestart = int64(f)
	} else if s := str("max_memory_restart"); s != "" {
		if v, err := appspec.ParseMemory(s); err == nil {
			a.MaxMemoryRestart = v
		}
	}
	if s := str("cron_restart"); s != "" && s != "0" {
		a.CronRestart = s
	}
	switch w := p["watch"].(type) {
	case bool:
		if w {
			a.Watch = []string{"."}
		}
	case string:
		a.Watch = []string{w}
	case []any:
		a.Watch = strs("watch")
	}
	a.IgnoreWatch = strs("ignore_watch")
	a.WatchDelay = msOf("watch_delay")
	if s := str("instance_var"); s != "" && s != appspec.DefaultInstanceVar {
		a.InstanceVar = s
	}
	a.IncrementVar = str("increment_var")
	a.LogDateFormat = str("log_date_format")
	a.Time, _ = boolean("time")
	if s := str("log_type"); s == "json" {
		a.LogType = s
	}
	a.MergeLogs, _ = boolean("merge_logs")
	if b, ok := boolean("combine_logs"); ok && b {
		a.MergeLogs = true
	}
	// Log paths: PM2's defaults (under its home) give way to corral's; the user's own are kept.
	logs := filepath.Join(pm2Home, "logs") + string(filepath.Separator)
	own := func(k string) string {
		s := str(k)
		if s == "" || (pm2Home != "" && strings.HasPrefix(s, logs)) {
			return ""
		}
		return s
	}
	a.OutFile, a.ErrorFile, a.LogFile = own("pm_out_log_path"), own("pm_err_log_path"), own("pm_log_path")
	if a.MergeLogs {
		// PM2 appends -<pm_id> to log paths unless merged; a merged path is the user's as is.
	} else if a.OutFile != "" || a.ErrorFile != "" {
		out.Notes = append(out.Notes, "log paths kept as PM2 had them for its first process (PM2 appended -<pm_id>)")
	}
	if s := str("uid"); s != "" {
		a.UID = s
	}
	if s := str("gid"); s != "" {
		a.GID = s
	}
	if b, ok := boolean("treekill"); ok && !b {
		out.Notes = append(out.Notes, "treekill: false in PM2 (only the main process was signalled); corral stops the whole process tree")
	}
	if a.Interpreter == "none" && a.Script != "" && !filepath.IsAbs(a.Script) {
		out.Notes = append(out.Notes, "script "+a.Script+" is run from $PATH")
	}

	var unknownKeys []string
	env, _ := p["env"].(map[string]any)
	for k := range p {
		if pm2Internal[k] {
			continue
		}
		if _, isEnv := env[k]; isEnv {
			continue // PM2 flattens the environment into pm2_env
		}
		unknownKeys = append(unknownKeys, k)
	}
	sort.Strings(unknownKeys)
	out.Spec = a
	return out, unknownKeys, nil
}
