package pm2json

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/nodetest"
)

func sample() []api.Proc {
	no := false
	started := time.UnixMilli(1795563145570)
	return []api.Proc{
		{
			PMID: 0, Name: "web", Namespace: "default", PID: 5824, Status: "online",
			App: appspec.App{Name: "web", Script: "app.js", Instances: 2, ExecMode: "cluster",
				InterpreterArgs: []string{"--harmony"}, Args: []string{"--x"}, MaxMemoryRestart: 209715200,
				CronRestart: "0 * * * *", Watch: []string{"."}},
			Interpreter: "node", ExecPath: "/srv/web/app.js", Cwd: "/srv/web",
			StartedAt: started, CreatedAt: started, Restarts: 3,
			OutLog: "/h/.corral/logs/web-out-0.log", ErrLog: "/h/.corral/logs/web-error-0.log", PidFile: "/h/.corral/pids/web-0.pid",
			CPU: 0.54, Memory: 55263232,
			Env: map[string]string{"PORT": "38123", "PATH": "/usr/bin", "status": "bogus", "NODE_APP_INSTANCE": "0", "Q": "it's <b>&"},
		},
		{
			PMID: 1, Name: "worker", PID: 0, Status: "stopped",
			App:         appspec.App{Name: "worker", Script: "w.sh", Autorestart: &no, InstanceVar: "INSTANCE_ID"},
			Interpreter: "bash", ExecPath: "/srv/w.sh", Cwd: "/srv", Instance: 4, ExitCode: 2,
			CPU: 12, Memory: 999, // must be zeroed: not online
		},
	}
}

func TestJListShape(t *testing.T) {
	out, err := JList(sample())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "\n") {
		t.Errorf("jlist must be one line without newline: %q", out)
	}
	if !strings.Contains(string(out), `"Q":"it's <b>&"`) {
		t.Errorf("HTML must not be escaped: %s", out)
	}
	var got []map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("jlist is not JSON: %v\n%s", err, out)
	}
	if len(got) != 2 {
		t.Fatalf("%d entries", len(got))
	}
	web := got[0]
	if web["pid"] != float64(5824) || web["name"] != "web" || web["pm_id"] != float64(0) {
		t.Errorf("head: %v", web)
	}
	monit := web["monit"].(map[string]any)
	if monit["memory"] != float64(55263232) || monit["cpu"] != 0.5 {
		t.Errorf("monit %v", monit)
	}
	env := web["pm2_env"].(map[string]any)
	want := map[string]any{
		"name": "web", "namespace": "default", "pm_id": float64(0), "status": "online",
		"exec_mode": "cluster_mode", "instances": float64(2), "exec_interpreter": "node",
		"node_args": []any{"--harmony"}, "pm_exec_path": "/srv/web/app.js", "pm_cwd": "/srv/web",
		"args": []any{"--x"}, "pm_out_log_path": "/h/.corral/logs/web-out-0.log",
		"pm_err_log_path": "/h/.corral/logs/web-error-0.log", "pm_pid_path": "/h/.corral/pids/web-0.pid",
		"pm_uptime": float64(1795563145570), "created_at": float64(1795563145570), "restart_time": float64(3),
		"unstable_restarts": float64(0), "exit_code": float64(0), "autorestart": true, "watch": true,
		"instance_var": "NODE_APP_INSTANCE", "NODE_APP_INSTANCE": float64(0), "merge_logs": false,
		"max_memory_restart": float64(209715200), "cron_restart": "0 * * * *",
		"kill_timeout": float64(1600), "listen_timeout": float64(3000), "wait_ready": false,
		// flattened env; PM2's own "status" wins over the env var
		"PORT": "38123", "PATH": "/usr/bin",
	}
	for k, v := range want {
		if !reflect.DeepEqual(env[k], v) {
			t.Errorf("pm2_env.%s = %#v, want %#v", k, env[k], v)
		}
	}
	inner := env["env"].(map[string]any)
	if inner["PORT"] != "38123" || inner["status"] != "bogus" {
		t.Errorf("pm2_env.env = %v", inner)
	}

	w := got[1]
	if w["pid"] != float64(0) || w["monit"].(map[string]any)["memory"] != float64(0) || w["monit"].(map[string]any)["cpu"] != float64(0) {
		t.Errorf("stopped entry must have zero pid/monit: %v", w)
	}
	wenv := w["pm2_env"].(map[string]any)
	if wenv["exec_mode"] != "fork_mode" || wenv["autorestart"] != false || wenv["INSTANCE_ID"] != float64(4) ||
		wenv["instance_var"] != "INSTANCE_ID" || wenv["namespace"] != "default" || wenv["watch"] != false || wenv["exit_code"] != float64(2) {
		t.Errorf("worker pm2_env = %v", wenv)
	}
	if _, ok := wenv["args"]; ok {
		t.Errorf("args present although unset")
	}

	// Key order follows PM2's.
	keys := Entry(sample()[0]).Keys()
	if !reflect.DeepEqual(keys, []string{"pid", "name", "pm_id", "monit", "pm2_env"}) {
		t.Errorf("entry keys %v", keys)
	}
}

func TestJListEmpty(t *testing.T) {
	out, err := JList(nil)
	if err != nil || string(out) != "[]" {
		t.Fatalf("JList(nil) = %q, %v", out, err)
	}
}

func TestInspectBasics(t *testing.T) {
	o := &Object{}
	o.Set("memory", 0)
	o.Set("cpu", 0.5)
	o.Set("it's", "a'b")
	o.Set("list", []string{"a", "b"})
	o.Set("none", []string{})
	got := Inspect(o)
	want := `{ memory: 0, cpu: 0.5, "it's": "a'b", list: [ 'a', 'b' ], none: [] }`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// PrettyList must be byte-identical to Node's util.inspect of the same data.
func TestPrettyListMatchesNode(t *testing.T) {
	node := nodetest.Node(t)
	procs := sample()
	js, err := JList(procs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "-e", `let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(require('util').inspect(JSON.parse(s),false,null,false)))`)
	cmd.Stdin = strings.NewReader(string(js))
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if got := PrettyList(procs); got != string(want) {
		t.Errorf("PrettyList differs from node:\n--- got\n%s\n--- want\n%s", got, want)
	}
}
