package pm2json

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
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
	// Room for about what the entries take (their environments dominate) saves regrowing.
	n := 2
	for _, p := range procs {
		n += 1024
		for k, v := range p.Env {
			n += 2*len(k) + 2*len(v) + 12
		}
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '[')
	var sc scratch
	for i, p := range procs {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendEntry(buf, p, &sc); err != nil {
			return nil, err
		}
	}
	return append(buf, ']'), nil
}

// scratch is appendEntry's reusable working space.
type scratch struct {
	kvs  []envKV
	enc  encodedEnv
	obj  Object   // pm2_env's own keys, reused entry after entry
	keys []string // enc.skipFor's room
}

type envKV struct{ k, v string }

// encodedEnv is an environment encoded for appendEntryEnv: its keys sorted, the encoded
// "key":value pairs back to back, and where each pair starts in pairs (and where the last ends).
type encodedEnv struct {
	keys  []string
	pairs []byte
	offs  []int
	// skip lists the indices of the keys not flattened into pm2_env (PM2's own keys win), valid
	// (skipOK) for pm2_env's own keys skipFor.
	skip    []int32
	skipFor []string
	skipOK  bool
}

// encode encodes p's environment into e (kvs is working space).
func (e *encodedEnv) encode(p api.Proc, kvs *[]envKV) error {
	*kvs = (*kvs)[:0]
	for k, v := range p.Env {
		*kvs = append(*kvs, envKV{k, v})
	}
	slices.SortFunc(*kvs, func(x, y envKV) int { return strings.Compare(x.k, y.k) })
	e.keys, e.pairs, e.offs = e.keys[:0], e.pairs[:0], e.offs[:0]
	e.skipOK = false
	var err error
	for _, kv := range *kvs {
		e.keys = append(e.keys, kv.k)
		e.offs = append(e.offs, len(e.pairs))
		if e.pairs, err = appendEnvPair(e.pairs, 0, p.App, kv.k, kv.v); err != nil {
			return err
		}
	}
	e.offs = append(e.offs, len(e.pairs))
	return nil
}

// appendEntry appends the JSON of Entry(p) — the same bytes (TestJListMatchesEntry) — without
// building the objects of the environment, which is most of an entry: each variable is encoded
// once, straight from p.Env, and copied into both places it appears.
func appendEntry(buf []byte, p api.Proc, sc *scratch) ([]byte, error) {
	return appendEntryEnv(buf, p, &sc.obj, func() (*encodedEnv, error) {
		return &sc.enc, sc.enc.encode(p, &sc.kvs)
	}, func(keys []string) []string { return append(sc.keys[:0], keys...) })
}

// appendEntryEnv is appendEntry with p's environment encoded by env (called at most once) and o
// as working space. keysFor returns a copy of pm2_env's own keys (that the caller may share
// between entries) when the keys the environment skips are computed.
func appendEntryEnv(buf []byte, p api.Proc, o *Object, env func() (*encodedEnv, error), keysFor func([]string) []string) ([]byte, error) {
	o = pm2EnvInto(o, p)
	if o.find("env") >= 0 { // instance_var "env": Env's o.Set("env", ...) replaces that key's value
		b, err := marshal(Entry(p))
		return append(buf, b...), err
	}
	mem, cpu := monit(p)
	buf = append(buf, `{"pid":`...)
	buf = strconv.AppendInt(buf, int64(p.PID), 10)
	buf = append(buf, `,"name":`...)
	var err error
	if buf, err = appendString(buf, p.Name); err != nil {
		return nil, err
	}
	buf = append(buf, `,"pm_id":`...)
	buf = strconv.AppendInt(buf, int64(p.PMID), 10)
	buf = append(buf, `,"monit":{"memory":`...)
	buf = strconv.AppendUint(buf, mem, 10)
	buf = append(buf, `,"cpu":`...)
	if buf, err = appendValue(buf, cpu); err != nil {
		return nil, err
	}
	buf = append(buf, `},"pm2_env":`...)
	if buf, err = o.appendJSON(buf); err != nil {
		return nil, err
	}
	buf = buf[:len(buf)-1] // reopen pm2_env for the environment

	e, err := env()
	if err != nil {
		return nil, err
	}
	if !e.skipOK || !slices.Equal(e.skipFor, o.keys) {
		e.skip = e.skip[:0]
		for i, k := range e.keys { // flattened, PM2's keys win (Env's SetDefault)
			if k == "env" || o.find(k) >= 0 {
				e.skip = append(e.skip, int32(i))
			}
		}
		e.skipFor, e.skipOK = keysFor(o.keys), true
	}
	skip := e.skip
	for i := range e.keys {
		if len(skip) > 0 && int(skip[0]) == i {
			skip = skip[1:]
			continue
		}
		buf = append(buf, ',')
		buf = append(buf, e.pairs[e.offs[i]:e.offs[i+1]]...)
	}
	buf = append(buf, `,"env":{`...)
	for i := range e.keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e.pairs[e.offs[i]:e.offs[i+1]]...)
	}
	return append(buf, "}}}"...), nil
}

// appendEnvPair appends sep (unless 0), then "k":envValue(a, k, v).
func appendEnvPair(buf []byte, sep byte, a appspec.App, k, v string) ([]byte, error) {
	if sep != 0 {
		buf = append(buf, sep)
	}
	buf, err := appendString(buf, k)
	if err != nil {
		return nil, err
	}
	buf = append(buf, ':')
	if own, ok := a.Env[k]; !ok || own != v || v == "" { // envValue's string case, without boxing v
		return appendString(buf, v)
	}
	return appendValue(buf, envValue(a, k, v))
}

func sortedKeys(m map[string]string, keys []string) []string {
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// monit returns the memory and CPU jlist shows for p: 0 unless online or launching, the CPU
// rounded to one decimal.
func monit(p api.Proc) (uint64, float64) {
	if p.Status != "online" && p.Status != "launching" {
		return 0, 0
	}
	return p.Memory, math.Round(p.CPU*10) / 10
}

// Entry returns the jlist object of one process:
// {pid, name, pm_id, monit{memory, cpu}, pm2_env{...}}.
func Entry(p api.Proc) *Object {
	e := &Object{}
	mem, cpu := monit(p)
	e.Set("pid", p.PID)
	e.Set("name", p.Name)
	e.Set("pm_id", p.PMID)
	m := &Object{}
	m.Set("memory", mem)
	m.Set("cpu", cpu)
	e.Set("monit", m)
	e.Set("pm2_env", Env(p))
	return e
}

// Env returns the pm2_env object of one process.
func Env(p api.Proc) *Object {
	o := pm2Env(p, len(p.Env))
	// Flatten the environment (sorted, PM2's keys win), then the env object.
	keys := sortedKeys(p.Env, make([]string, 0, len(p.Env)))
	for _, k := range keys {
		if k == "env" {
			continue
		}
		o.SetDefault(k, envValue(p.App, k, p.Env[k]))
	}
	env := newObject(len(keys))
	for _, k := range keys {
		env.Set(k, envValue(p.App, k, p.Env[k]))
	}
	o.Set("env", env)
	return o
}

// pm2Env returns PM2's own keys of the pm2_env object of p: Env without the environment, with
// room for extra more keys.
func pm2Env(p api.Proc, extra int) *Object {
	return pm2EnvInto(newObject(48+extra), p)
}

// pm2EnvInto is pm2Env into o, emptied first (its room kept: appendEntryEnv reuses one).
func pm2EnvInto(o *Object, p api.Proc) *Object {
	o.reset()
	a := p.App
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
