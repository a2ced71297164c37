package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

func portOf(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChecks(t *testing.T) {
	var status atomic.Int64
	status.Store(503)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || r.Header.Get("X-Probe") != "yes" {
			http.Error(w, "wrong request", 400)
			return
		}
		w.WriteHeader(int(status.Load()))
		w.Write([]byte("state " + strconv.Itoa(int(status.Load()))))
	}))
	defer srv.Close()
	port := portOf(t, srv.Listener.Addr().String())
	ctx := context.Background()
	hp := &appspec.Probe{HTTPGet: &appspec.HTTPGetAction{Path: "/health", HTTPHeaders: []appspec.HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}
	r := Check(ctx, Target{Probe: hp, Port: port})
	if r.OK || !strings.Contains(r.Output, "503 Service Unavailable: state 503") {
		t.Errorf("503: %+v", r)
	}
	status.Store(302)
	if r := Check(ctx, Target{Probe: hp, Port: port}); !r.OK {
		t.Errorf("302 is a success: %+v", r)
	}

	tp := &appspec.Probe{TCPSocket: &appspec.TCPSocketAction{Port: port}}
	if r := Check(ctx, Target{Probe: tp}); !r.OK {
		t.Errorf("tcp: %+v", r)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := portOf(t, ln.Addr().String())
	ln.Close()
	if r := Check(ctx, Target{Probe: &appspec.Probe{TCPSocket: &appspec.TCPSocketAction{}}, Port: closed}); r.OK || !strings.Contains(r.Output, "refused") {
		t.Errorf("tcp to a closed port: %+v", r)
	}

	ep := &appspec.Probe{Exec: &appspec.ExecAction{Command: []string{"sh", "-c", "echo $WHO; exit $CODE"}}}
	if r := Check(ctx, Target{Probe: ep, Env: []string{"WHO=probe-ok", "CODE=0"}}); !r.OK || !strings.Contains(r.Output, "probe-ok") {
		t.Errorf("exec 0: %+v", r)
	}
	if r := Check(ctx, Target{Probe: ep, Env: []string{"WHO=probe-bad", "CODE=3"}}); r.OK || !strings.Contains(r.Output, "exit status 3: probe-bad") {
		t.Errorf("exec 3: %+v", r)
	}
	slow := &appspec.Probe{Exec: &appspec.ExecAction{Command: []string{"sleep", "5"}}, TimeoutSeconds: 0.2}
	began := time.Now()
	if r := Check(ctx, Target{Probe: slow}); r.OK || !strings.Contains(r.Output, "timed out") || time.Since(began) > 3*time.Second {
		t.Errorf("exec timeout: %+v after %v", r, time.Since(began))
	}

	lm, _ := NewLineMatcher(`listening on \d+`)
	lp := &appspec.Probe{LogLine: `listening on \d+`}
	if r := Check(ctx, Target{Probe: lp, Lines: lm}); r.OK {
		t.Errorf("log line before the line: %+v", r)
	}
	lm.Feed("booting")
	lm.Feed("listening on 3000")
	if r := Check(ctx, Target{Probe: lp, Lines: lm}); !r.OK || !strings.Contains(r.Output, "listening on 3000") {
		t.Errorf("log line: %+v", r)
	}
}

// Run reports passing after success_threshold successes and failing after failure_threshold
// failures, once each.
func TestRunThresholds(t *testing.T) {
	var ok atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	p := &appspec.Probe{HTTPGet: &appspec.HTTPGetAction{}, PeriodSeconds: 0.02, SuccessThreshold: 3, FailureThreshold: 2}
	verdicts := make(chan Verdict, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, Target{Probe: p, Port: portOf(t, srv.Listener.Addr().String())}, func(v Verdict) { verdicts <- v }, nil)
	v := <-verdicts
	if v.Passing || v.Failures != 2 {
		t.Fatalf("first verdict: %+v", v)
	}
	ok.Store(true)
	if v := <-verdicts; !v.Passing {
		t.Fatalf("second verdict: %+v", v)
	}
}

func TestProbeFromFlags(t *testing.T) {
	p, err := appspec.ProbeFromURL("https://localhost:8443/healthz?full=1")
	if err != nil || p.HTTPGet.Scheme != "HTTPS" || p.HTTPGet.Port != 8443 || p.HTTPGet.Path != "/healthz?full=1" || p.HTTPGet.Host != "localhost" {
		t.Errorf("%+v %v", p.HTTPGet, err)
	}
	if p, err := appspec.ProbeFromURL("/health"); err != nil || p.HTTPGet.Port != 0 || p.HTTPGet.Path != "/health" {
		t.Errorf("%+v %v", p, err)
	}
	if _, err := appspec.ProbeFromHostPort("localhost"); err == nil {
		t.Error("a host without a port is accepted")
	}
	order, err := appspec.StartOrder([]appspec.App{
		{Name: "web", DependsOn: []appspec.Dependency{{Name: "api"}}},
		{Name: "api", DependsOn: []appspec.Dependency{{Name: "db"}, {Name: "cache"}}},
		{Name: "db"},
	}, func(n string) bool { return n == "cache" })
	if err != nil || !slicesEqual(order, []int{2, 1, 0}) {
		t.Errorf("order %v %v", order, err)
	}
	waves := appspec.StopWaves([]string{"db", "api", "web"}, func(n string) []string {
		return map[string][]string{"web": {"api"}, "api": {"db"}}[n]
	})
	if len(waves) != 3 || waves[0][0] != "web" || waves[2][0] != "db" {
		t.Errorf("stop waves %v", waves)
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
