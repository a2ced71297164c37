// Package metrics exposes corral's processes in the Prometheus text format (version 0.0.4).
//
// Handler reads a fresh snapshot of the process list on every scrape, so the exported values are
// never stale and the package keeps no state of its own. The format is written directly rather than
// through prometheus/client_golang: six gauge-like families need no registry, and leaving the client
// library (and protobuf) out of the binary keeps the daemon's resident memory down by about 2.4 MB.
// The tests parse the output with prometheus/common/expfmt.
package metrics

import (
	"bufio"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Proc is one process as the metrics see it.
type Proc struct {
	Name      string
	Namespace string
	ID        int // corral's pm_id
	PID       int
	Status    string // "online", "stopped", "errored", ...
	CPU       float64
	Memory    uint64 // resident bytes
	Restarts  int
	Uptime    time.Duration
	// LivenessRestarts counts the restarts a failed liveness probe caused.
	LivenessRestarts int
	// Balancer is set for a cluster worker: what the primary's round-robin balancer did with its
	// connections. The corral_balancer_* families have a sample for such processes only.
	Balancer *Balancer
}

// Balancer is a cluster worker's balancer counters (cluster.BalancerStats), plus its app's
// connections waiting for a free worker.
type Balancer struct {
	HandedOff, Refused, Rerouted uint64
	InFlight                     int64
	Waiting                      int
}

// StatusOnline is the status that makes corral_process_up 1.
const StatusOnline = "online"

// family is one metric family: its value for a process, and whether it carries the status label.
type family struct {
	name, help, typ string
	value           func(Proc) float64
	status          bool
	balancer        bool // only processes with a Balancer have a sample
}

var families = []family{
	{"corral_process_cpu_percent", "CPU usage of the process in percent of one core.", "gauge", func(p Proc) float64 { return p.CPU }, false, false},
	{"corral_process_memory_bytes", "Resident memory of the process in bytes.", "gauge", func(p Proc) float64 { return float64(p.Memory) }, false, false},
	{"corral_process_restarts_total", "Number of times corral restarted the process.", "counter", func(p Proc) float64 { return float64(p.Restarts) }, false, false},
	{"corral_process_up", "1 if the process is online, 0 otherwise.", "gauge", func(p Proc) float64 {
		if p.Status == StatusOnline {
			return 1
		}
		return 0
	}, false, false},
	{"corral_process_status", "Current status of the process (always 1, for the status label).", "gauge", func(Proc) float64 { return 1 }, true, false},
	{"corral_process_liveness_restarts_total", "Number of restarts caused by a failed liveness probe.", "counter", func(p Proc) float64 { return float64(p.LivenessRestarts) }, false, false},
	{"corral_process_uptime_seconds", "Seconds since the process was last started.", "gauge", func(p Proc) float64 { return p.Uptime.Seconds() }, false, false},
	{"corral_balancer_handoffs_total", "Connections the cluster primary handed to the worker.", "counter", func(p Proc) float64 { return float64(p.Balancer.HandedOff) }, false, true},
	{"corral_balancer_inflight", "Connections handed to the worker that it has not answered yet.", "gauge", func(p Proc) float64 { return float64(p.Balancer.InFlight) }, false, true},
	{"corral_balancer_refused_total", "Connections the worker declined (accepted:false, server.maxConnections); each went to another worker.", "counter", func(p Proc) float64 { return float64(p.Balancer.Refused) }, false, true},
	{"corral_balancer_rerouted_total", "Connections headed for the worker that never reached it (it died or NACKed); each went to another worker.", "counter", func(p Proc) float64 { return float64(p.Balancer.Rerouted) }, false, true},
	{"corral_balancer_waiting", "Connections of the worker's app waiting for a free worker (queued by the primary or in its listening sockets' backlogs).", "gauge", func(p Proc) float64 { return float64(p.Balancer.Waiting) }, false, true},
}

// Handler serves the metrics of the processes snapshot returns, called once per scrape. Processes
// whose labels are not valid UTF-8, and repeats of an id already seen, are left out.
func Handler(snapshot func() []Proc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var procs []Proc
		if snapshot != nil {
			procs = valid(snapshot())
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		if len(procs) > 0 {
			for _, f := range families {
				if f.balancer && !slices.ContainsFunc(procs, func(p Proc) bool { return p.Balancer != nil }) {
					continue
				}
				bw.WriteString("# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.typ + "\n")
				for _, p := range procs {
					if f.balancer && p.Balancer == nil {
						continue
					}
					bw.WriteString(f.name + `{name="` + escape(p.Name) + `",namespace="` + escape(namespace(p)) + `",id="` + strconv.Itoa(p.ID) + `"`)
					if f.status {
						bw.WriteString(`,status="` + escape(p.Status) + `"`)
					}
					bw.WriteString("} " + strconv.FormatFloat(f.value(p), 'g', -1, 64) + "\n")
				}
			}
		}
		bw.Flush()
	})
}

func namespace(p Proc) string {
	if p.Namespace == "" {
		return "default"
	}
	return p.Namespace
}

// valid drops processes with labels that are not UTF-8 and repeated ids, and sorts by id.
func valid(in []Proc) []Proc {
	seen := make(map[int]bool, len(in))
	out := make([]Proc, 0, len(in))
	for _, p := range in {
		if seen[p.ID] || !utf8.ValidString(p.Name) || !utf8.ValidString(p.Namespace) || !utf8.ValidString(p.Status) {
			continue
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escape(s string) string { return labelEscaper.Replace(s) }
