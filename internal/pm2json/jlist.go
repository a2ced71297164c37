package pm2json

import (
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
)

// JList renders procs as `pm2 jlist` does: one line of JSON, no trailing
// newline, "[]" when empty.
//
// Like PM2, every entry carries the instance's environment twice: as
// pm2_env.env and flattened into pm2_env (keys that collide with PM2's own
// pm2_env keys keep PM2's value). jlist is a machine interface guarded by the
// control socket's permissions; human commands (ls, show) do not print values.
func JList(procs []api.Proc) ([]byte, error) {
	entries := make([]*Object, 0, len(procs))
	for _, p := range procs {
		entries = append(entries, Entry(p))
	}
	return marshal(entries)
}

// Entry returns the jlist object of one process:
// {pid, name, pm_id, monit{memory, cpu}, pm2_env{...}}.
func Entry(p api.Proc) *Object {
	e := &Object{}
	pid := p.PID
	mem, cpu := p.Memory, p.CPU
	if p.Status != "online" && p.Status != "launching" {
		mem, cpu = 0, 0
	}
	e.Set("pid", pid)
	e.Set("name", p.Name)
	e.Set("pm_id", p.PMID)
	monit := &Object{}
	monit.Set("memory", mem)
	monit.Set("cpu", math.Round(cpu*10)/10)
	e.Set("monit", monit)
	e.Set("pm2_env", Env(p))
	return e
}

// Env returns the pm2_env object of one process.
func Env(p api.Proc) *Object {
	a := p.App
	o := &Object{}
	o.Set("name", p.Name)
	ns := p.Namespace
	if ns == "" {
		ns = appspec.DefaultNamespace
	}
	o.Set("namespace", ns)
	o.Set("pm_id", p.PMID)
	o.Set("status", p.Status)
	o.Set("exec_mode", ExecMode(a.ExecMode))
	if len(a.Listen) > 0 {
		// PM2 has no mode for sockets shared across instances: exec_mode stays fork_mode (what PM2's
		// tools understand) and the addresses say the rest.
		o.Set("listen", strs(a.Listen))
	}
	inst := a.Instances
	if inst < 1 {
		inst = 1
	}
	o.Set("instances", inst)
	o.Set("exec_interpreter", p.Interpreter)
	o.Set("node_args", strs(a.InterpreterArgs))
	o.Set("pm_exec_path", p.ExecPath)
	o.Set("pm_cwd", p.Cwd)
	if len(a.Args) > 0 {
		o.Set("args", strs(a.Args))
	}
	o.Set("pm_out_log_path", p.OutLog)
	o.Set("pm_err_log_path", p.ErrLog)
	if p.CombinedLog != "" {
		o.Set("pm_log_path", p.CombinedLog)
	}
	o.Set("pm_pid_path", p.PidFile)
	o.Set("pm_uptime", millis(p.StartedAt))
	o.Set("created_at", millis(p.CreatedAt))
	o.Set("restart_time", p.Restarts)
	o.Set("unstable_restarts", p.UnstableRestarts)
	o.Set("exit_code", p.ExitCode)
	o.Set("autorestart", a.AutorestartOn())
	o.Set("autostart", a.AutostartOn())
	if p.Status == "stopped" {
		o.Set("watch", false) // PM2: stopping an app turns its watch off (corral resumes it on restart)
	} else {
		o.Set("watch", watch(a.Watch))
	}
	o.Set("treekill", true)
	iv := a.InstanceVar
	if iv == "" {
		iv = appspec.DefaultInstanceVar
	}
	o.Set("instance_var", iv)
	o.Set(iv, p.Instance)
	o.Set("merge_logs", a.MergeLogs)
	if a.MaxMemoryRestart > 0 {
		o.Set("max_memory_restart", a.MaxMemoryRestart)
	}
	if a.CronRestart != "" {
		o.Set("cron_restart", a.CronRestart)
	}
	o.Set("kill_timeout", orDefault(a.KillTimeout, appspec.DefaultKillTimeout))
	o.Set("listen_timeout", orDefault(a.ListenTimeout, appspec.DefaultListenTimeout))
	o.Set("wait_ready", a.WaitReady)
	if a.IncrementVar != "" {
		o.Set("increment_var", a.IncrementVar)
	}
	if a.LogDateFormat != "" {
		o.Set("log_date_format", a.LogDateFormat)
	}
	if a.LogType != "" {
		o.Set("log_type", a.LogType)
	}
	if p.ExitSignal != "" {
		o.Set("exit_signal", p.ExitSignal)
	}
	if p.Readiness != "" {
		o.Set("readiness", p.Readiness)
	}
	if p.LivenessRestarts > 0 || p.RestartReason != "" {
		o.Set("liveness_restarts", p.LivenessRestarts)
		o.Set("restart_reason", p.RestartReason)
	}

	// Flatten the environment (sorted, PM2's keys win), then the env object.
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "env" {
			continue
		}
		o.SetDefault(k, envValue(a, k, p.Env[k]))
	}
	env := &Object{}
	for _, k := range keys {
		env.Set(k, envValue(a, k, p.Env[k]))
	}
	o.Set("env", env)
	return o
}

// envValue is how PM2 shows an environment variable: a number or boolean set by the app's own
// env (an ecosystem file's `PORT: 3000`) stays one, as PM2 keeps the file's value; everything
// else (the shell's variables, strings) is a string. (corral keeps env values as text: a file's
// "3000" string shows as a number too.)
func envValue(a appspec.App, k, v string) any {
	own, ok := a.Env[k]
	if !ok || own != v || v == "" {
		return v
	}
	if v == "true" || v == "false" {
		return v == "true"
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || strconv.FormatFloat(f, 'f', -1, 64) != v {
		return v // not a number, or not in its canonical form ("007", "1e3", "+1")
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}

// ExecMode maps corral's exec mode to PM2's stored form: "cluster_mode" or
// "fork_mode" (the default).
func ExecMode(mode string) string {
	switch mode {
	case "cluster", "cluster_mode":
		return "cluster_mode"
	}
	return "fork_mode"
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// watch renders the watch option as PM2 does: false, true (watch the app's
// directory) or the list of paths.
func watch(paths []string) any {
	switch {
	case len(paths) == 0:
		return false
	case len(paths) == 1 && paths[0] == ".":
		return true
	}
	return paths
}
