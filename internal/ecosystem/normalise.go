package ecosystem

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// aliases maps PM2's alternative key names to the canonical ones.
var aliases = map[string]string{
	"exec":             "script",
	"cmd":              "script",
	"command":          "script",
	"exec_interpreter": "interpreter",
	"node_args":        "interpreter_args",
	"out":              "out_file",
	"output":           "out_file",
	"out_log":          "out_file",
	"error":            "error_file",
	"err":              "error_file",
	"err_file":         "error_file",
	"err_log":          "error_file",
	"log":              "log_file",
	"combine_logs":     "merge_logs",
	"cron":             "cron_restart",
	"user":             "uid",
	"pid":              "pid_file",
}

// ignored lists PM2 app keys that corral accepts and has no use for: PM2.io and git (vizion)
// integration, Node-specific instrumentation, and options whose behaviour corral has built in.
var ignored = map[string]bool{
	"vizion": true, "vizion_running": true, "pmx": true, "automation": true, "treekill": true,
	"post_update": true, "force": true, "windowsHide": true,
	"filter_env": true, "append_env_to_name": true, "trace": true, "disable_trace": true, "v8": true,
	"deep_monitoring": true, "event_loop_inspector": true, "io": true, "kill_retry_time": true,
	"name_prefix": true, "write": true, "execute_command": true, "watch_options": true,
	"instance_id": true, "node_version": true, "autodump": true,
	"usePM2": true,
}

// topIgnored lists top-level keys, beside apps, that corral accepts and ignores (deploy is read
// only for its env blocks).
var topIgnored = map[string]bool{"deploy": true}

// setter stores one option's value into an app.
type setter func(n *normaliser, a *appspec.App, v *value) error

var setters = map[string]setter{
	"name":      str(func(a *appspec.App) *string { return &a.Name }),
	"namespace": str(func(a *appspec.App) *string { return &a.Namespace }),
	"script":    str(func(a *appspec.App) *string { return &a.Script }),
	"args":      list(true, func(a *appspec.App) *[]string { return &a.Args }),
	"cwd": func(n *normaliser, a *appspec.App, v *value) error {
		s, err := toString(v)
		if err == nil && s != "" && !filepath.IsAbs(s) {
			s = filepath.Join(n.dir, s)
		}
		a.Cwd = s
		return err
	},
	"interpreter":      str(func(a *appspec.App) *string { return &a.Interpreter }),
	"interpreter_args": list(true, func(a *appspec.App) *[]string { return &a.InterpreterArgs }),
	"instances": func(n *normaliser, a *appspec.App, v *value) error {
		if v.kind != kindNumber && v.kind != kindString {
			return typeError(v, "a number or \"max\"")
		}
		i, err := appspec.ParseInstances(v.text, n.ncpu)
		a.Instances = i
		return err
	},
	"exec_mode": func(_ *normaliser, a *appspec.App, v *value) error {
		s, err := toString(v)
		a.ExecMode = strings.TrimSuffix(s, "_mode") // PM2 stores "fork_mode" and "cluster_mode"
		return err
	},
	"listen": list(false, func(a *appspec.App) *[]string { return &a.Listen }),
	"env": func(_ *normaliser, a *appspec.App, v *value) error {
		m, err := toEnv(v)
		a.Env = m
		return err
	},
	"autorestart":               boolPtr(func(a *appspec.App) **bool { return &a.Autorestart }),
	"autostart":                 boolPtr(func(a *appspec.App) **bool { return &a.Autostart }),
	"max_restarts":              integer(func(a *appspec.App) *int { return &a.MaxRestarts }),
	"min_uptime":                millis(func(a *appspec.App) *int64 { return &a.MinUptime }),
	"restart_delay":             millis(func(a *appspec.App) *int64 { return &a.RestartDelay }),
	"exp_backoff_restart_delay": millis(func(a *appspec.App) *int64 { return &a.ExpBackoffRestartDelay }),
	"stop_exit_codes": func(_ *normaliser, a *appspec.App, v *value) error {
		items := []*value{v}
		if v.kind == kindArray {
			items = v.items
		}
		a.StopExitCodes = nil
		for _, it := range items {
			c, err := toInt(it)
			if err != nil {
				return err
			}
			a.StopExitCodes = append(a.StopExitCodes, c)
		}
		return nil
	},
	"kill_timeout":          millis(func(a *appspec.App) *int64 { return &a.KillTimeout }),
	"kill_signal":           str(func(a *appspec.App) *string { return &a.KillSignal }),
	"listen_timeout":        millis(func(a *appspec.App) *int64 { return &a.ListenTimeout }),
	"wait_ready":            boolean(func(a *appspec.App) *bool { return &a.WaitReady }),
	"shutdown_with_message": boolean(func(a *appspec.App) *bool { return &a.ShutdownWithMessage }),
	"drain":                 boolPtr(func(a *appspec.App) **bool { return &a.Drain }),
	"drain_timeout":         millis(func(a *appspec.App) *int64 { return &a.DrainTimeout }),
	"out_file":              str(func(a *appspec.App) *string { return &a.OutFile }),
	"error_file":            str(func(a *appspec.App) *string { return &a.ErrorFile }),
	"log_file":              str(func(a *appspec.App) *string { return &a.LogFile }),
	"merge_logs":            boolean(func(a *appspec.App) *bool { return &a.MergeLogs }),
	"sticky":                boolean(func(a *appspec.App) *bool { return &a.Sticky }),
	"log_date_format":       str(func(a *appspec.App) *string { return &a.LogDateFormat }),
	"time":                  boolean(func(a *appspec.App) *bool { return &a.Time }),
	"log_type":              str(func(a *appspec.App) *string { return &a.LogType }),
	"log_max_size":          sizeBytes(func(a *appspec.App) *int64 { return &a.LogMaxSize }),
	"log_max_files":         integer(func(a *appspec.App) *int { return &a.LogMaxFiles }),
	"log_rotate_daily":      boolean(func(a *appspec.App) *bool { return &a.LogRotateDaily }),
	"instance_var":          str(func(a *appspec.App) *string { return &a.InstanceVar }),
	"increment_var":         str(func(a *appspec.App) *string { return &a.IncrementVar }),
	"watch": func(_ *normaliser, a *appspec.App, v *value) error {
		if v.kind == kindBool {
			a.Watch = nil
			if v.text == "true" {
				a.Watch = []string{"."}
			}
			return nil
		}
		l, err := toList(v, false)
		a.Watch = l
		return err
	},
	"ignore_watch":       list(false, func(a *appspec.App) *[]string { return &a.IgnoreWatch }),
	"watch_delay":        millis(func(a *appspec.App) *int64 { return &a.WatchDelay }),
	"max_memory_restart": sizeBytes(func(a *appspec.App) *int64 { return &a.MaxMemoryRestart }),
	"cron_restart": func(_ *normaliser, a *appspec.App, v *value) error {
		s, err := toString(v)
		if err != nil {
			return err
		}
		if s == "0" { // PM2: 0 disables
			s = ""
		}
		a.CronRestart = s
		return appspec.ValidateCron(s)
	},
	"pid_file":           str(func(a *appspec.App) *string { return &a.PidFile }),
	"source_map_support": boolPtr(func(a *appspec.App) **bool { return &a.SourceMapSupport }),
	"uid":                str(func(a *appspec.App) *string { return &a.UID }),
	"gid":                str(func(a *appspec.App) *string { return &a.GID }),
	// disable_logs and port are applied after the other keys (see app).
	"disable_logs": func(_ *normaliser, _ *appspec.App, v *value) error { _, err := toBool(v); return err },
	"port":         func(_ *normaliser, _ *appspec.App, v *value) error { _, err := toString(v); return err },
}

// normaliser turns a parsed file into apps.
type normaliser struct {
	file     string // for errors
	dir      string // absolute directory of the file, for relative cwd
	ncpu     int
	warnings []string // File.Warnings
}

// warnf records a warning about v, formatted as errors are ("file:line:col: msg").
func (n *normaliser) warnf(v *value, format string, args ...any) {
	n.warnings = append(n.warnings, n.errorf(v, format, args...).Error())
}

// suggestKey returns ` (did you mean "x"?)` for a key within two edits of a known key, else "".
func suggestKey(key string) string {
	best, bestD := "", 3
	consider := func(k string) {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	for k := range setters {
		consider(k)
	}
	for k := range aliases {
		consider(k)
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func (n *normaliser) errorf(v *value, format string, args ...any) error {
	e := &Error{File: n.file, Msg: fmt.Sprintf(format, args...)}
	if v != nil {
		e.Line, e.Column = v.line, v.col
	}
	return e
}

// toFile accepts {apps: [...]} (or pm2: [...]), a bare array of apps, or one app object.
func (n *normaliser) toFile(root *value) (*File, error) {
	f := &File{}
	appsV := root
	switch {
	case root.kind == kindObject && (root.get("apps") != nil || root.get("pm2") != nil):
		appsV = nil
		for i, k := range root.keys {
			v := root.vals[i]
			switch {
			case k == "apps" || k == "pm2":
				if appsV != nil {
					return nil, n.errorf(v, "both \"apps\" and \"pm2\" are set")
				}
				appsV = v
			case k == "deploy":
				env, err := n.deployEnv(v)
				if err != nil {
					return nil, err
				}
				f.DeployEnv = env
			case topIgnored[k]:
			default:
				return nil, n.errorf(v, "unknown top-level key %q (want apps, deploy)", k)
			}
		}
	case root.kind == kindObject && len(root.keys) == 0:
		return nil, n.errorf(root, "the config is empty: want {apps: [...]}, an array of apps or one app")
	case root.kind == kindObject, root.kind == kindArray:
	default:
		return nil, n.errorf(root, "the config is %s: want {apps: [...]}, an array of apps or one app", root.kind)
	}
	items := []*value{appsV}
	if appsV.kind == kindArray {
		items = appsV.items
	}
	if len(items) == 0 {
		return nil, n.errorf(appsV, "no apps defined")
	}
	var errs []error
	for i, it := range items {
		a, err := n.app(it, i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.Apps = append(f.Apps, a)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return f, nil
}

// maxErrors bounds how many problems one load reports.
const maxErrors = 20

// joinErrors joins the problems found in a file (each app's may be joined already), one a line,
// keeping the first maxErrors and counting the rest.
func joinErrors(errs []error) error {
	var flat []error
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			flat = append(flat, j.Unwrap()...)
		} else {
			flat = append(flat, err)
		}
	}
	if len(flat) > maxErrors {
		more := len(flat) - maxErrors
		flat = append(flat[:maxErrors], fmt.Errorf("... and %d more problems", more))
	}
	if len(flat) == 1 {
		return flat[0]
	}
	return errors.Join(flat...)
}

// deployEnv collects deploy.<name>.env blocks.
func (n *normaliser) deployEnv(v *value) (map[string]map[string]string, error) {
	if v.kind != kindObject {
		return nil, nil // deploy's own schema is not ours to check
	}
	out := map[string]map[string]string{}
	for i, name := range v.keys {
		target := v.vals[i]
		if target.kind != kindObject || target.get("env") == nil {
			continue
		}
		env, err := toEnv(target.get("env"))
		if err != nil {
			return nil, n.errorf(target.get("env"), "deploy.%s.env: %v", name, err)
		}
		out[name] = env
	}
	return out, nil
}

// app normalises the i-th app object.
func (n *normaliser) app(v *value, i int) (appspec.App, error) {
	var a appspec.App
	if v.kind != kindObject {
		return a, n.errorf(v, "app #%d is %s, want an object", i+1, v.kind)
	}
	label := fmt.Sprintf("app #%d", i+1)
	if nv := v.get("name"); nv != nil && nv.kind == kindString {
		label = fmt.Sprintf("app %q", nv.text)
	}
	seen := map[string]string{} // canonical key -> key as written
	var errs []error            // every bad key is reported, not only the first
	for j, key := range v.keys {
		val := v.vals[j]
		if name, ok := strings.CutPrefix(key, "env_"); ok {
			if name == "" {
				errs = append(errs, n.errorf(val, "%s: key %q needs an environment name", label, key))
				continue
			}
			env, err := toEnv(val)
			if err != nil {
				errs = append(errs, n.errorf(val, "%s: %s: %v", label, key, err))
				continue
			}
			if a.EnvSets == nil {
				a.EnvSets = map[string]map[string]string{}
			}
			a.EnvSets[name] = env
			continue
		}
		if ignored[key] {
			continue
		}
		canon := key
		if c, ok := aliases[key]; ok {
			canon = c
		}
		set, ok := setters[canon]
		if !ok {
			// PM2 ignores keys it does not know; corral says so (and suggests a likely typo).
			n.warnf(val, "%s: unknown key %q ignored%s", label, key, suggestKey(key))
			continue
		}
		if prev, dup := seen[canon]; dup {
			errs = append(errs, n.errorf(val, "%s: key %q repeats %q", label, key, prev))
			continue
		}
		seen[canon] = key
		if val.kind == kindNull { // null means "not set", as undefined would in PM2
			continue
		}
		if err := set(n, &a, val); err != nil {
			errs = append(errs, n.errorf(val, "%s: %s: %v", label, key, err))
		}
	}
	if len(errs) > 0 {
		return a, errors.Join(errs...)
	}
	if dv := v.get("disable_logs"); dv != nil && dv.text == "true" {
		a.OutFile, a.ErrorFile = "/dev/null", "/dev/null"
	}
	if pv := v.get("port"); pv != nil && pv.kind != kindNull {
		if _, ok := a.Env["PORT"]; !ok {
			if a.Env == nil {
				a.Env = map[string]string{}
			}
			a.Env["PORT"] = pv.text
		}
	}
	if a.Name == "" && a.Script != "" {
		a.Name = defaultName(a.Script)
	}
	if err := a.Validate(); err != nil {
		return a, n.errorf(v, "%s: %v", label, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return a, nil
}

// defaultName is PM2's default app name: the script's base name without its extension (the
// first word's, for a command string).
func defaultName(script string) string {
	words := strings.Fields(script)
	if len(words) == 0 {
		return ""
	}
	base := filepath.Base(words[0])
	if ext := filepath.Ext(base); ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}

// Setter builders for the common field types.

func str(field func(*appspec.App) *string) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		s, err := toString(v)
		*field(a) = s
		return err
	}
}

func list(split bool, field func(*appspec.App) *[]string) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		l, err := toList(v, split)
		*field(a) = l
		return err
	}
}

func boolean(field func(*appspec.App) *bool) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		b, err := toBool(v)
		*field(a) = b
		return err
	}
}

func boolPtr(field func(*appspec.App) **bool) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		b, err := toBool(v)
		*field(a) = &b
		return err
	}
}

func integer(field func(*appspec.App) *int) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		i, err := toInt(v)
		*field(a) = i
		return err
	}
}

// millis accepts a number of milliseconds or a duration string ("10s").
func millis(field func(*appspec.App) *int64) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		switch v.kind {
		case kindNumber:
			f, err := toNumber(v)
			*field(a) = int64(math.Round(f))
			return err
		case kindString:
			ms, err := appspec.ParseDuration(v.text)
			*field(a) = ms
			return err
		}
		return typeError(v, "milliseconds or a duration such as \"10s\"")
	}
}

// sizeBytes accepts a number of bytes or a size string ("150M").
func sizeBytes(field func(*appspec.App) *int64) setter {
	return func(_ *normaliser, a *appspec.App, v *value) error {
		if v.kind != kindNumber && v.kind != kindString {
			return typeError(v, "bytes or a size such as \"150M\"")
		}
		b, err := appspec.ParseMemory(v.text)
		*field(a) = b
		return err
	}
}

// Conversions of values to Go types.

func typeError(v *value, want string) error { return fmt.Errorf("is %s, want %s", v.kind, want) }

func toString(v *value) (string, error) {
	if v.kind == kindString || v.kind == kindNumber {
		return v.text, nil
	}
	return "", typeError(v, "a string")
}

func toBool(v *value) (bool, error) {
	if v.kind == kindBool || (v.kind == kindString && (v.text == "true" || v.text == "false")) {
		return v.text == "true", nil
	}
	return false, typeError(v, "true or false")
}

func toNumber(v *value) (float64, error) {
	if v.kind != kindNumber && v.kind != kindString {
		return 0, typeError(v, "a number")
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v.text), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", v.text)
	}
	return f, nil
}

func toInt(v *value) (int, error) {
	f, err := toNumber(v)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, fmt.Errorf("%s is not a whole number", v.text)
	}
	return int(f), nil
}

// toList accepts an array of scalars or one string (split on white space when split is set).
func toList(v *value, split bool) ([]string, error) {
	switch v.kind {
	case kindString:
		if split {
			return strings.Fields(v.text), nil
		}
		return []string{v.text}, nil
	case kindArray:
		out := make([]string, 0, len(v.items))
		for _, it := range v.items {
			s, err := toString(it)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", len(out)+1, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, typeError(v, "a string or an array of strings")
}

// toEnv accepts an object; numbers and booleans become their text, null the empty string, objects
// and arrays their JSON text.
func toEnv(v *value) (map[string]string, error) {
	if v.kind != kindObject {
		return nil, typeError(v, "an object")
	}
	m := make(map[string]string, len(v.keys))
	for i, k := range v.keys {
		switch ev := v.vals[i]; ev.kind {
		case kindString, kindNumber, kindBool:
			m[k] = ev.text
		case kindNull:
			m[k] = ""
		default: // an object or array: its JSON text, as PM2 passes it to the app
			m[k] = string(toJSON(ev))
		}
	}
	return m, nil
}

// toJSON encodes v as JSON.
func toJSON(v *value) []byte {
	var b []byte
	switch v.kind {
	case kindNull:
		return []byte("null")
	case kindBool, kindNumber:
		return []byte(v.text)
	case kindString:
		out, _ := json.Marshal(v.text)
		return out
	case kindArray:
		b = append(b, '[')
		for i, it := range v.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, toJSON(it)...)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i, k := range v.keys {
			if i > 0 {
				b = append(b, ',')
			}
			key, _ := json.Marshal(k)
			b = append(append(b, key...), ':')
			b = append(b, toJSON(v.vals[i])...)
		}
		return append(b, '}')
	}
}
