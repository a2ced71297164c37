// Package metrics exposes corral's processes in the Prometheus text format.
//
// A Collector reads a fresh snapshot of the process list on every scrape, so the exported values
// are never stale and the package keeps no state of its own.
package metrics

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
}

// StatusOnline is the status that makes corral_process_up 1.
const StatusOnline = "online"

var labels = []string{"name", "namespace", "id"}

// Collector is a prometheus.Collector for corral's processes.
type Collector struct {
	snapshot func() []Proc

	cpu, memory, restarts, up, status, uptime *prometheus.Desc
}

// NewCollector returns a Collector that calls snapshot on every collection. A nil snapshot
// collects nothing.
func NewCollector(snapshot func() []Proc) *Collector {
	return &Collector{
		snapshot: snapshot,
		cpu:      prometheus.NewDesc("corral_process_cpu_percent", "CPU usage of the process in percent of one core.", labels, nil),
		memory:   prometheus.NewDesc("corral_process_memory_bytes", "Resident memory of the process in bytes.", labels, nil),
		restarts: prometheus.NewDesc("corral_process_restarts_total", "Number of times corral restarted the process.", labels, nil),
		up:       prometheus.NewDesc("corral_process_up", "1 if the process is online, 0 otherwise.", labels, nil),
		status:   prometheus.NewDesc("corral_process_status", "Current status of the process (always 1, for the status label).", append(labels[:len(labels):len(labels)], "status"), nil),
		uptime:   prometheus.NewDesc("corral_process_uptime_seconds", "Seconds since the process was last started.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.memory, c.restarts, c.up, c.status, c.uptime} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.snapshot == nil {
		return
	}
	for _, p := range c.snapshot() {
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		lv := []string{p.Name, ns, strconv.Itoa(p.ID)}
		up := 0.0
		if p.Status == StatusOnline {
			up = 1
		}
		send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, lv ...string) {
			m, err := prometheus.NewConstMetric(d, t, v, lv...)
			if err != nil { // e.g. a name that is not valid UTF-8
				m = prometheus.NewInvalidMetric(d, fmt.Errorf("process %s (id %d): %w", strconv.Quote(p.Name), p.ID, err))
			}
			ch <- m
		}
		send(c.cpu, prometheus.GaugeValue, p.CPU, lv...)
		send(c.memory, prometheus.GaugeValue, float64(p.Memory), lv...)
		send(c.restarts, prometheus.CounterValue, float64(p.Restarts), lv...)
		send(c.up, prometheus.GaugeValue, up, lv...)
		send(c.status, prometheus.GaugeValue, 1, append(lv, p.Status)...)
		send(c.uptime, prometheus.GaugeValue, p.Uptime.Seconds(), lv...)
	}
}

// Handler serves the metrics of snapshot's processes from a registry of its own (the global
// default registry is not touched). A metric that cannot be collected, such as one of a duplicate
// name/namespace/id or with a label that is not valid UTF-8, is left out; the rest is served.
func Handler(snapshot func() []Proc) http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(snapshot))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
