package ecosystem

import (
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/appspec"
)

func TestProbesAndDependsOn(t *testing.T) {
	yaml := `apps:
  - name: web
    script: web.js
    readiness_probe:
      http_get: {path: /health, port: 3000, http_headers: [{name: X-Probe, value: "1"}]}
      period_seconds: 0.5
      failure_threshold: 5
    liveness_probe:
      exec: {command: ["test", "-f", "/tmp/alive"]}
      initialDelaySeconds: 10
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: completed}
`
	js := `module.exports = { apps: [{
  name: 'web', script: 'web.js',
  readinessProbe: { httpGet: { path: '/health', port: 3000, httpHeaders: [{ name: 'X-Probe', value: '1' }] }, periodSeconds: 0.5, failureThreshold: 5 },
  liveness_probe: { exec: { command: 'test -f /tmp/alive' }, initial_delay_seconds: 10 },
  depends_on: [{ name: 'db', condition: 'service_healthy' }, { name: 'migrate', condition: 'completed' }],
}] };
`
	want := appspec.App{
		ReadinessProbe: &appspec.Probe{HTTPGet: &appspec.HTTPGetAction{Path: "/health", Port: 3000,
			HTTPHeaders: []appspec.HTTPHeader{{Name: "X-Probe", Value: "1"}}}, PeriodSeconds: 0.5, FailureThreshold: 5},
		LivenessProbe: &appspec.Probe{Exec: &appspec.ExecAction{Command: []string{"test", "-f", "/tmp/alive"}}, InitialDelaySeconds: 10},
		DependsOn:     []appspec.Dependency{{Name: "db", Condition: "service_healthy"}, {Name: "migrate", Condition: "completed"}},
	}
	for name, src := range map[string]string{"e.yaml": yaml, "e.config.js": js} {
		f, err := Load(writeFile(t, t.TempDir(), name, src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a := f.Apps[0]
		got := appspec.App{ReadinessProbe: a.ReadinessProbe, LivenessProbe: a.LivenessProbe, DependsOn: a.DependsOn}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v %+v %+v", name, *got.ReadinessProbe, *got.LivenessProbe, got.DependsOn)
		}
	}
	for _, tc := range []struct{ src, want string }{
		{`{"name": "a", "script": "a.js", "readiness_probe": {"http_get": {"path": "/"}, "tcp_socket": {"port": 1}}}`, "exactly one of"},
		{`{"name": "a", "script": "a.js", "readiness_probe": {"http_get": {"pth": "/"}}}`, `unknown field "pth"`},
		{`{"name": "a", "script": "a.js", "liveness_probe": {"log_line": "("}}`, "log_line"},
		{`{"name": "a", "script": "a.js", "depends_on": [{"name": "b", "condition": "soon"}]}`, `condition "soon"`},
		{`{"name": "a", "script": "a.js", "readiness_probe": {"exec": {"command": []}}}`, "exec.command is empty"},
	} {
		_, err := Load(writeFile(t, t.TempDir(), "e.json", tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.src, err, tc.want)
		}
	}
}
