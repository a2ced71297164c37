package appspec

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/sys/unix"
)

// ParseInstances resolves an instance count as PM2 does: "max" or "0" mean one per CPU, "-N"
// means N fewer than the CPUs (at least 1), and "N" means N. ncpu below 1 counts as 1.
func ParseInstances(s string, ncpu int) (int, error) {
	if ncpu < 1 {
		ncpu = 1
	}
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "max") {
		return ncpu, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("invalid instance count %q: want a number, -N or \"max\"", s)
	}
	switch {
	case n == 0:
		return ncpu, nil
	case n < 0:
		return max(ncpu+n, 1), nil
	}
	return n, nil
}

// ParseMemory parses a size in bytes: a plain number is bytes, and a K, M or G suffix (any case,
// optionally followed by B) multiplies by 1024, 1024² or 1024³. Fractions are allowed ("1.5G").
func ParseMemory(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	num := strings.TrimSuffix(t, "B")
	mult := 1.0
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			num = num[:n-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || num == "" || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("memory size %q: want bytes or a number with K, M or G", s)
	}
	if f < 0 {
		return 0, fmt.Errorf("memory size %q: must not be negative", s)
	}
	v := f * mult
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("memory size %q: too large", s)
	}
	return int64(math.Round(v)), nil
}

// ParseDuration parses a duration into milliseconds: a plain integer is milliseconds, anything
// else is a Go duration ("500ms", "10s", "1m", "1h30m").
func ParseDuration(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("duration %q: must not be negative", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want milliseconds or a number with ms, s, m or h", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q: must not be negative", s)
	}
	return d.Milliseconds(), nil
}

// interpreters maps a script's extension to the interpreter PM2 picks for it. TypeScript goes to
// bun, as in PM2 7.
var interpreters = map[string]string{
	".js":     "node",
	".cjs":    "node",
	".mjs":    "node",
	".py":     "python3",
	".sh":     "bash",
	".rb":     "ruby",
	".php":    "php",
	".pl":     "perl",
	".ts":     "bun",
	".tsx":    "bun",
	".coffee": "coffee",
}

// DetectInterpreter returns the interpreter PM2 would run script with, judged by its extension
// (case-insensitive), or "none" when the script is to be executed directly.
func DetectInterpreter(script string) string {
	if i, ok := interpreters[strings.ToLower(filepath.Ext(script))]; ok {
		return i
	}
	return "none"
}

// cronParser accepts five fields, an optional leading seconds field, and descriptors (@daily).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom |
	cron.Month | cron.Dow | cron.Descriptor)

// ValidateCron reports whether expr is a cron expression that CronRestart accepts: five fields
// with an optional leading seconds field, or a descriptor such as "@daily". "0" (disabled) and ""
// are valid.
func ValidateCron(expr string) error {
	_, err := ParseCron(expr)
	return err
}

// ParseCron parses a CronRestart expression (see ValidateCron). It returns a nil schedule and no
// error for "" and "0", which disable cron restarts.
func ParseCron(expr string) (cron.Schedule, error) {
	if expr == "" || expr == "0" {
		return nil, nil
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("cron_restart %q: %w", expr, err)
	}
	return s, nil
}

// KeyError is a problem with the value of one key of an app (Validate's errors are KeyErrors).
// Its message is Err's.
type KeyError struct {
	Key string // PM2's key: "script", "exec_mode", ...
	Err error
}

func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// Validate checks an app for values the daemon cannot run with and returns all problems found,
// joined, each a *KeyError naming the key at fault. It does not fill defaults or touch the file system.
func (a *App) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Err: fmt.Errorf(format, args...)})
	}

	if strings.TrimSpace(a.Script) == "" {
		bad("script", "script is missing")
	}
	if err := ValidateName(a.Name); err != nil {
		errs = append(errs, &KeyError{Key: "name", Err: err})
	}
	switch a.ExecMode {
	case "", "fork", "cluster":
	default:
		bad("exec_mode", "exec_mode %q: want \"fork\" or \"cluster\"", a.ExecMode)
	}
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"instances", int64(a.Instances)},
		{"max_restarts", int64(a.MaxRestarts)},
		{"min_uptime", a.MinUptime},
		{"restart_delay", a.RestartDelay},
		{"exp_backoff_restart_delay", a.ExpBackoffRestartDelay},
		{"kill_timeout", a.KillTimeout},
		{"drain_timeout", a.DrainTimeout},
		{"listen_timeout", a.ListenTimeout},
		{"log_max_size", a.LogMaxSize},
		{"log_max_files", int64(a.LogMaxFiles)},
		{"watch_delay", a.WatchDelay},
		{"max_memory_restart", a.MaxMemoryRestart},
	} {
		if f.v < 0 {
			bad(f.key, "%s %d: must not be negative", f.key, f.v)
		}
	}
	for _, c := range a.StopExitCodes {
		if c < 0 || c > 255 {
			bad("stop_exit_codes", "stop_exit_codes: %d is not an exit code (0-255)", c)
		}
	}
	if a.KillSignal != "" && unix.SignalNum(a.KillSignal) == 0 {
		bad("kill_signal", "kill_signal %q: not a signal name such as \"SIGTERM\"", a.KillSignal)
	}
	if err := ValidateCron(a.CronRestart); err != nil {
		errs = append(errs, &KeyError{Key: "cron_restart", Err: err})
	}
	switch a.LogType {
	case "", "json":
	default:
		bad("log_type", "log_type %q: want \"json\" or nothing", a.LogType)
	}
	if a.ReadinessProbe != nil {
		errs = append(errs, a.ReadinessProbe.Validate("readiness_probe"))
	}
	if a.LivenessProbe != nil {
		errs = append(errs, a.LivenessProbe.Validate("liveness_probe"))
	}
	if a.WatchdogSec < 0 || math.IsNaN(a.WatchdogSec) || math.IsInf(a.WatchdogSec, 0) {
		bad("watchdog_sec", "watchdog_sec %v: must not be negative", a.WatchdogSec)
	}
	for _, d := range a.DependsOn {
		if strings.TrimSpace(d.Name) == "" {
			bad("depends_on", "depends_on: an entry without a name")
		}
		if d.Name == a.Name && a.Name != "" {
			bad("depends_on", "depends_on: %s depends on itself", a.Name)
		}
		if _, err := NormalCondition(d.Condition); err != nil {
			bad("depends_on", "depends_on %s: %v", d.Name, err)
		}
	}
	return errors.Join(errs...)
}
