package web

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/logs"
	"github.com/corralhq/corral/internal/pm2json"
	"github.com/corralhq/corral/internal/secretenv"
)

// procView is an instance as the page receives it: only what the page shows, the app's own
// environment with secret-looking values masked (never the process's whole environment).
type procView struct {
	ID          int         `json:"id"`
	Name        string      `json:"name"`
	Namespace   string      `json:"namespace"`
	Mode        string      `json:"mode"`
	PID         int         `json:"pid"`
	Status      string      `json:"status"`
	Restarts    int         `json:"restarts"`
	Unstable    int         `json:"unstable_restarts"`
	StartedAt   int64       `json:"started_at"` // Unix ms; 0 when not running
	CPU         float64     `json:"cpu"`
	Memory      uint64      `json:"mem"`
	Instance    int         `json:"instance"`
	Instances   int         `json:"instances"`
	Script      string      `json:"script"`
	Args        []string    `json:"args,omitempty"`
	Interpreter string      `json:"interpreter"`
	Cwd         string      `json:"cwd"`
	OutLog      string      `json:"out_log,omitempty"`
	ErrLog      string      `json:"err_log,omitempty"`
	ExitCode    int         `json:"exit_code"`
	ExitSignal  string      `json:"exit_signal,omitempty"`
	Watch       bool        `json:"watch,omitempty"`
	Env         [][2]string `json:"env,omitempty"` // the app's own variables, sorted, masked
	Notes       []string    `json:"notes,omitempty"`
}

func viewProcs(procs []api.Proc) []procView {
	out := make([]procView, 0, len(procs))
	for _, p := range procs {
		v := procView{
			ID: p.PMID, Name: p.Name, Namespace: p.Namespace, PID: p.PID, Status: p.Status,
			Restarts: p.Restarts, Unstable: p.UnstableRestarts, CPU: p.CPU, Memory: p.Memory,
			Instance: p.Instance, Instances: p.App.Instances, Script: p.ExecPath, Args: p.App.Args,
			Interpreter: p.Interpreter, Cwd: p.Cwd, OutLog: p.OutLog, ErrLog: p.ErrLog,
			ExitCode: p.ExitCode, ExitSignal: p.ExitSignal, Watch: len(p.App.Watch) > 0, Notes: p.Notes,
			Mode: "fork",
		}
		if v.Namespace == "" {
			v.Namespace = "default"
		}
		if v.Script == "" {
			v.Script = p.App.Script
		}
		if pm2json.ExecMode(p.App.ExecMode) == "cluster_mode" {
			v.Mode = "cluster"
		}
		switch p.Status {
		case "online", "launching", "stopping":
			if !p.StartedAt.IsZero() {
				v.StartedAt = p.StartedAt.UnixMilli()
			}
		}
		for _, k := range slices.Sorted(maps.Keys(p.App.Env)) {
			v.Env = append(v.Env, [2]string{k, secretenv.Mask(k, p.App.Env[k])})
		}
		out = append(out, v)
	}
	return out
}

// viewEvent renders an event for the timeline: a sentence and a level for its colour.
func viewEvent(e events.Event) eventItem {
	it := eventItem{Seq: e.Seq, Time: e.Time, Type: string(e.Type), App: e.App, PMID: e.PMID, PID: e.PID, Level: "info"}
	var what []string
	switch e.Type {
	case events.Status:
		from := e.From
		if from == "" {
			from = "new"
		}
		what = append(what, from+" → "+e.To)
		switch e.To {
		case "online":
			it.Level = "good"
		case "errored":
			it.Level = "bad"
		case "stopped", "stopping", "waiting restart":
			it.Level = "warn"
		}
	case events.Exit:
		if e.Signal != "" {
			what = append(what, "exited on "+e.Signal)
		} else if e.Code != nil {
			what = append(what, fmt.Sprintf("exited with code %d", *e.Code))
		} else {
			what = append(what, "exited")
		}
		what = append(what, "after "+(time.Duration(e.Uptime)*time.Millisecond).Round(time.Millisecond).String())
		if e.Reason == "" && (e.Code == nil || *e.Code != 0) {
			it.Level = "bad"
		} else {
			it.Level = "warn"
		}
	case events.Restart:
		what = append(what, "restart")
		it.Level = "warn"
	case events.SpawnFailed:
		what = append(what, "failed to start")
		it.Level = "bad"
	case events.App:
		// What a user asked for: start, restart, reload, stop, delete, scale (with its message).
		what = append(what, e.Reason+" requested")
		e.Reason = ""
	default:
		what = append(what, string(e.Type))
	}
	if e.Reason != "" {
		what = append(what, "("+e.Reason+")")
	}
	if e.Message != "" {
		what = append(what, e.Message)
	}
	it.Text = strings.Join(what, " ")
	it.Details = e.Stderr
	return it
}

// lineView is a log line as the page receives it.
type lineView struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	Stream string `json:"stream"`
	Text   string `json:"text"`
	Time   int64  `json:"t,omitempty"` // Unix ms; 0 for lines read back from a file
}

func viewLine(l api.LogLine) lineView {
	v := lineView{ID: l.PMID, Name: l.Name, Stream: l.Stream, Text: l.Text}
	if v.Stream != "err" {
		v.Stream = "out"
	}
	if !l.Time.IsZero() {
		v.Time = l.Time.UnixMilli()
	}
	return v
}

// tailLines returns the last n lines of each process's out and err files (files shared by
// several processes once).
func tailLines(procs []api.Proc, n int) []lineView {
	var out []lineView
	seen := map[string]bool{}
	for _, p := range procs {
		for _, f := range []struct{ path, stream string }{{p.OutLog, "out"}, {p.ErrLog, "err"}} {
			if f.path == "" || seen[f.path] {
				continue
			}
			seen[f.path] = true
			lines, err := logs.Tail(f.path, n)
			if err != nil {
				continue
			}
			for _, l := range lines {
				out = append(out, lineView{ID: p.PMID, Name: p.Name, Stream: f.stream, Text: l})
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
