package appspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Probe is a readiness or liveness check of an app's instances, shaped as Kubernetes' (and
// process-compose's) probes: exactly one of HTTPGet, TCPSocket, Exec and LogLine, and the timing
// fields. Times are seconds and may have fractions (0.5); zero means Kubernetes' default.
type Probe struct {
	HTTPGet   *HTTPGetAction   `json:"http_get,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcp_socket,omitempty"`
	Exec      *ExecAction      `json:"exec,omitempty"`
	// LogLine is a regular expression: the probe succeeds once a line of the process's output
	// (stdout or stderr) matches it, and passes from then on. It suits readiness ("listening on");
	// as a liveness probe it fails only until the line appears.
	LogLine string `json:"log_line,omitempty"`

	InitialDelaySeconds float64 `json:"initial_delay_seconds,omitempty"` // default 0
	PeriodSeconds       float64 `json:"period_seconds,omitempty"`        // default 10
	TimeoutSeconds      float64 `json:"timeout_seconds,omitempty"`       // default 1
	SuccessThreshold    int     `json:"success_threshold,omitempty"`     // default 1
	FailureThreshold    int     `json:"failure_threshold,omitempty"`     // default 3
}

// HTTPGetAction is an HTTP GET; a status from 200 to 399 is a success.
type HTTPGetAction struct {
	Host        string       `json:"host,omitempty"`   // default 127.0.0.1
	Port        int          `json:"port,omitempty"`   // default: the app's single port
	Path        string       `json:"path,omitempty"`   // default /
	Scheme      string       `json:"scheme,omitempty"` // HTTP (default) or HTTPS (certificate not verified, as Kubernetes)
	HTTPHeaders []HTTPHeader `json:"http_headers,omitempty"`
}

// HTTPHeader is one request header of an HTTP probe.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction is a TCP connect; an accepted connection is a success.
type TCPSocketAction struct {
	Host string `json:"host,omitempty"` // default 127.0.0.1
	Port int    `json:"port,omitempty"` // default: the app's single port
}

// ExecAction runs a program (no shell: Command[0] is the program, the rest its arguments; write
// ["sh", "-c", "..."] for a shell) in the app's directory with the instance's environment; exit
// status 0 is a success.
type ExecAction struct {
	Command []string `json:"command"`
}

// Kubernetes' probe defaults.
const (
	DefaultProbePeriod           = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeSuccessThreshold = 1
	DefaultProbeFailureThreshold = 3
)

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// InitialDelay is how long after the process starts the first check runs.
func (p *Probe) InitialDelay() time.Duration { return seconds(p.InitialDelaySeconds) }

// Period is the time between checks.
func (p *Probe) Period() time.Duration {
	if p.PeriodSeconds <= 0 {
		return DefaultProbePeriod
	}
	return seconds(p.PeriodSeconds)
}

// Timeout bounds one check.
func (p *Probe) Timeout() time.Duration {
	if p.TimeoutSeconds <= 0 {
		return DefaultProbeTimeout
	}
	return seconds(p.TimeoutSeconds)
}

// Successes is the number of consecutive successes that make the probe pass.
func (p *Probe) Successes() int {
	if p.SuccessThreshold <= 0 {
		return DefaultProbeSuccessThreshold
	}
	return p.SuccessThreshold
}

// Failures is the number of consecutive failures that make the probe fail.
func (p *Probe) Failures() int {
	if p.FailureThreshold <= 0 {
		return DefaultProbeFailureThreshold
	}
	return p.FailureThreshold
}

// Kind names the check: "http", "tcp", "exec" or "log_line".
func (p *Probe) Kind() string {
	switch {
	case p.HTTPGet != nil:
		return "http"
	case p.TCPSocket != nil:
		return "tcp"
	case p.Exec != nil:
		return "exec"
	case p.LogLine != "":
		return "log_line"
	}
	return ""
}

// Validate checks the probe; key names it in errors ("readiness_probe").
func (p *Probe) Validate(key string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(key+": "+format, args...))
	}
	n := 0
	for _, set := range []bool{p.HTTPGet != nil, p.TCPSocket != nil, p.Exec != nil, p.LogLine != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		bad("want exactly one of http_get, tcp_socket, exec, log_line (found %d)", n)
	}
	if h := p.HTTPGet; h != nil {
		switch strings.ToLower(h.Scheme) {
		case "", "http", "https":
		default:
			bad("http_get.scheme %q: want HTTP or HTTPS", h.Scheme)
		}
		if h.Port < 0 || h.Port > 65535 {
			bad("http_get.port %d: not a port", h.Port)
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			bad("http_get.path %q: must start with /", h.Path)
		}
		for _, hd := range h.HTTPHeaders {
			if hd.Name == "" {
				bad("http_get.http_headers: a header without a name")
			}
		}
	}
	if t := p.TCPSocket; t != nil && (t.Port < 0 || t.Port > 65535) {
		bad("tcp_socket.port %d: not a port", t.Port)
	}
	if e := p.Exec; e != nil && (len(e.Command) == 0 || strings.TrimSpace(e.Command[0]) == "") {
		bad("exec.command is empty")
	}
	if p.LogLine != "" {
		if _, err := regexp.Compile(p.LogLine); err != nil {
			bad("log_line: %v", err)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"initial_delay_seconds", p.InitialDelaySeconds}, {"period_seconds", p.PeriodSeconds},
		{"timeout_seconds", p.TimeoutSeconds},
		{"success_threshold", float64(p.SuccessThreshold)}, {"failure_threshold", float64(p.FailureThreshold)},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			bad("%s %v: must not be negative", f.name, f.v)
		}
	}
	return errors.Join(errs...)
}

// Clone returns a deep copy of p (nil for nil).
func (p *Probe) Clone() *Probe {
	if p == nil {
		return nil
	}
	c := *p
	if p.HTTPGet != nil {
		h := *p.HTTPGet
		h.HTTPHeaders = append([]HTTPHeader(nil), p.HTTPGet.HTTPHeaders...)
		c.HTTPGet = &h
	}
	if p.TCPSocket != nil {
		t := *p.TCPSocket
		c.TCPSocket = &t
	}
	if p.Exec != nil {
		c.Exec = &ExecAction{Command: append([]string(nil), p.Exec.Command...)}
	}
	return &c
}

// ProbeFromURL makes an HTTP probe of a URL given on the command line (--readiness-http):
// "http://127.0.0.1:3000/health", ":3000/health" or "/health" (host 127.0.0.1, the app's port).
func ProbeFromURL(s string) (*Probe, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	if strings.HasPrefix(raw, "/") {
		return &Probe{HTTPGet: &HTTPGetAction{Path: raw}}, nil
	}
	if strings.HasPrefix(raw, ":") {
		raw = "http://127.0.0.1" + raw
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q: want http or https", s)
	}
	h := &HTTPGetAction{Host: u.Hostname(), Path: u.RequestURI(), Scheme: strings.ToUpper(u.Scheme)}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("URL %q: bad port", s)
		}
		h.Port = n
	}
	return &Probe{HTTPGet: h}, nil
}

// ProbeFromHostPort makes a TCP probe of "host:port" or ":port" (--readiness-tcp).
func ProbeFromHostPort(s string) (*Probe, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q: want HOST:PORT: %w", s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("%q: bad port", s)
	}
	return &Probe{TCPSocket: &TCPSocketAction{Host: host, Port: n}}, nil
}

// Dependency is one entry of depends_on: the app Name must have reached Condition before this
// app starts.
type Dependency struct {
	Name string `json:"name"`
	// Condition is "started" (its processes exist; the default), "ready" (alias "healthy": every
	// instance online, past its readiness probe) or "completed" (it ran to exit code 0: a
	// one-shot job such as a migration).
	Condition string `json:"condition,omitempty"`
}

// Dependency conditions.
const (
	DependsStarted   = "started"
	DependsReady     = "ready"
	DependsCompleted = "completed"
)

// NormalCondition returns the condition with its default and aliases resolved, or an error.
func NormalCondition(c string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(c)) {
	case "", "started", "service_started", "process_started":
		return DependsStarted, nil
	case "ready", "healthy", "service_healthy", "process_healthy":
		return DependsReady, nil
	case "completed", "completed_successfully", "service_completed_successfully", "process_completed_successfully":
		return DependsCompleted, nil
	}
	return "", fmt.Errorf("condition %q: want started, ready (healthy) or completed", c)
}

// UnmarshalJSON accepts command as an array (argv) or as one string split at white space (no
// shell: write ["sh", "-c", "..."] for one).
func (e *ExecAction) UnmarshalJSON(b []byte) error {
	var raw struct {
		Command json.RawMessage `json:"command"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	var s string
	if err := json.Unmarshal(raw.Command, &s); err == nil {
		e.Command = strings.Fields(s)
		return nil
	}
	return json.Unmarshal(raw.Command, &e.Command)
}

// String describes the probe for people: "HTTP GET :3000/health every 1s".
func (p *Probe) String() string {
	if p == nil {
		return ""
	}
	var what string
	switch {
	case p.HTTPGet != nil:
		h := p.HTTPGet
		what = "HTTP GET "
		if h.Host != "" {
			what += h.Host
		}
		if h.Port != 0 {
			what += ":" + strconv.Itoa(h.Port)
		}
		path := h.Path
		if path == "" {
			path = "/"
		}
		what += path
	case p.TCPSocket != nil:
		what = "TCP connect " + p.TCPSocket.Host
		if p.TCPSocket.Port != 0 {
			what += ":" + strconv.Itoa(p.TCPSocket.Port)
		}
	case p.Exec != nil:
		what = "exec " + strings.Join(p.Exec.Command, " ")
	case p.LogLine != "":
		what = "log line /" + p.LogLine + "/"
	}
	return fmt.Sprintf("%s every %v, %d failures", what, p.Period(), p.Failures())
}
