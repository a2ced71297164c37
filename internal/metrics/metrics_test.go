package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url and parses the text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value returns the value of the sample of family whose labels include want, and the number of
// samples that matched.
func value(t *testing.T, families map[string]*dto.MetricFamily, family string, want map[string]string) (float64, int) {
	t.Helper()
	mf, ok := families[family]
	if !ok {
		t.Fatalf("no family %s", family)
	}
	var v float64
	n := 0
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, wv := range want {
			if got[k] != wv {
				match = false
			}
		}
		if !match {
			continue
		}
		n++
		switch {
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		default:
			t.Fatalf("%s: unexpected metric type %v", family, mf.GetType())
		}
	}
	return v, n
}

func TestHandler(t *testing.T) {
	var scrapes atomic.Int32
	snapshot := func() []Proc {
		n := scrapes.Add(1)
		return []Proc{
			{Name: "api", Namespace: "prod", ID: 0, PID: 101, Status: "online", CPU: 12.5, Memory: 50 << 20, Restarts: int(n), Uptime: 90 * time.Second},
			{Name: "api", Namespace: "prod", ID: 1, PID: 102, Status: "online", CPU: 0.25, Memory: 1234, Restarts: 0, Uptime: 1500 * time.Millisecond},
			{Name: "cron", ID: 2, Status: "stopped"},
		}
	}
	srv := httptest.NewServer(Handler(snapshot))
	t.Cleanup(srv.Close)

	fams := scrape(t, srv.URL)
	api0 := map[string]string{"name": "api", "namespace": "prod", "id": "0"}
	api1 := map[string]string{"name": "api", "namespace": "prod", "id": "1"}
	cron := map[string]string{"name": "cron", "namespace": "default", "id": "2"}
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"corral_process_cpu_percent", api0, 12.5},
		{"corral_process_cpu_percent", api1, 0.25},
		{"corral_process_memory_bytes", api0, 50 << 20},
		{"corral_process_memory_bytes", api1, 1234},
		{"corral_process_restarts_total", api0, 1},
		{"corral_process_up", api0, 1},
		{"corral_process_up", cron, 0},
		{"corral_process_uptime_seconds", api0, 90},
		{"corral_process_uptime_seconds", api1, 1.5},
		{"corral_process_status", merge(api0, "status", "online"), 1},
		{"corral_process_status", merge(cron, "status", "stopped"), 1},
	} {
		got, n := value(t, fams, c.family, c.labels)
		if n != 1 || got != c.want {
			t.Errorf("%s%v = %v (%d samples), want %v", c.family, c.labels, got, n, c.want)
		}
	}
	if _, n := value(t, fams, "corral_process_status", cron); n != 1 {
		t.Errorf("cron has %d status samples, want exactly one", n)
	}
	if got := fams["corral_process_restarts_total"].GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("restarts type %v, want counter", got)
	}
	for _, name := range []string{"corral_process_cpu_percent", "corral_process_up", "corral_process_memory_bytes"} {
		if got := fams[name].GetType(); got != dto.MetricType_GAUGE {
			t.Errorf("%s type %v, want gauge", name, got)
		}
		if fams[name].GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}

	// Every scrape takes a fresh snapshot.
	fams = scrape(t, srv.URL)
	if got, _ := value(t, fams, "corral_process_restarts_total", api0); got != 2 {
		t.Errorf("second scrape: restarts %v, want 2", got)
	}
}

func merge(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func TestHandlerSkipsBadProcess(t *testing.T) {
	srv := httptest.NewServer(Handler(func() []Proc {
		return []Proc{
			{Name: "bad\xff", ID: 0, Status: "online"},
			{Name: "good", ID: 1, Status: "errored", Restarts: 16},
			{Name: "good", ID: 1, Status: "errored"}, // duplicate id
		}
	}))
	t.Cleanup(srv.Close)
	fams := scrape(t, srv.URL)
	good := map[string]string{"name": "good", "id": "1"}
	if got, n := value(t, fams, "corral_process_restarts_total", good); n != 1 || got != 16 {
		t.Errorf("good restarts = %v (%d samples)", got, n)
	}
	if got, _ := value(t, fams, "corral_process_up", good); got != 0 {
		t.Errorf("errored process up = %v", got)
	}
	if _, n := value(t, fams, "corral_process_up", map[string]string{"id": "0"}); n != 0 {
		t.Error("the process with an invalid name was exported")
	}
}

func TestEmptyAndNilSnapshot(t *testing.T) {
	for _, fn := range []func() []Proc{nil, func() []Proc { return nil }} {
		srv := httptest.NewServer(Handler(fn))
		fams := scrape(t, srv.URL)
		srv.Close()
		if len(fams) != 0 {
			t.Errorf("families for no processes: %v", fams)
		}
	}
}

func TestLabelEscaping(t *testing.T) {
	srv := httptest.NewServer(Handler(func() []Proc {
		return []Proc{{Name: "a\"b\\c\nd", ID: 3, Status: "online"}}
	}))
	t.Cleanup(srv.Close)
	fams := scrape(t, srv.URL)
	if got, n := value(t, fams, "corral_process_up", map[string]string{"name": "a\"b\\c\nd", "id": "3"}); n != 1 || got != 1 {
		t.Fatalf("escaped name: up %v (%d samples)", got, n)
	}
}

// A cluster worker's balancer counters are exported for it, and only for processes that have them.
func TestBalancerFamilies(t *testing.T) {
	srv := httptest.NewServer(Handler(func() []Proc {
		return []Proc{
			{Name: "web", ID: 0, Status: StatusOnline, Balancer: &Balancer{HandedOff: 12, InFlight: 1, Refused: 2, Rerouted: 3, Waiting: 4}},
			{Name: "job", ID: 1, Status: StatusOnline},
		}
	}))
	defer srv.Close()
	fams := scrape(t, srv.URL)
	for fam, want := range map[string]float64{
		"corral_balancer_handoffs_total": 12, "corral_balancer_inflight": 1, "corral_balancer_refused_total": 2,
		"corral_balancer_rerouted_total": 3, "corral_balancer_waiting": 4,
	} {
		if v, n := value(t, fams, fam, map[string]string{"id": "0"}); n != 1 || v != want {
			t.Errorf("%s{id=0} = %v (%d samples), want %v", fam, v, n, want)
		}
		if _, n := value(t, fams, fam, map[string]string{"id": "1"}); n != 0 {
			t.Errorf("%s has a sample for a process without a balancer", fam)
		}
	}
	srv2 := httptest.NewServer(Handler(func() []Proc { return []Proc{{Name: "job", ID: 1}} }))
	defer srv2.Close()
	if _, ok := scrape(t, srv2.URL)["corral_balancer_handoffs_total"]; ok {
		t.Error("balancer families without any cluster worker")
	}
}
