package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/pm2import"
	"github.com/corralhq/corral/internal/statefile"
)

// orderBackend records the order of the apps it is asked to start.
type orderBackend struct {
	failingBackend
	started []string
}

func (o *orderBackend) Start(ctx context.Context, apps []appspec.App, opts api.StartOptions) ([]api.Proc, error) {
	for _, a := range apps {
		o.started = append(o.started, a.Name)
	}
	return o.failingBackend.Start(ctx, apps, opts)
}

// resurrect (and so the boot-time startup) starts dependencies first; a cycle starts nothing.
func TestResurrectHonoursDependsOn(t *testing.T) {
	home := t.TempDir()
	dump := filepath.Join(home, dumpName)
	apps := []appspec.App{
		{Name: "web", Script: "/x/web.js", DependsOn: []appspec.Dependency{{Name: "api", Condition: "ready"}}},
		{Name: "api", Script: "/x/api.js", DependsOn: []appspec.Dependency{{Name: "db"}}},
		{Name: "db", Script: "/x/db.js"},
	}
	if err := statefile.Save(dump, apps, false); err != nil {
		t.Fatal(err)
	}
	b := &orderBackend{}
	if rc, out, errOut := runWith(t, b, home, "resurrect"); rc != 0 {
		t.Fatalf("rc %d\n%s%s", rc, out, errOut)
	}
	if got := strings.Join(b.started, " "); got != "db api web" {
		t.Errorf("started %q, want db api web", got)
	}

	apps[2].DependsOn = []appspec.Dependency{{Name: "web"}}
	os.Remove(dump)
	if err := statefile.Save(dump, apps, true); err != nil {
		t.Fatal(err)
	}
	b = &orderBackend{}
	rc, _, errOut := runWith(t, b, home, "resurrect")
	if rc == 0 || !strings.Contains(errOut, "cycle") || len(b.started) != 0 {
		t.Errorf("a cycle: rc %d, started %v, %s", rc, b.started, errOut)
	}
}

func TestImportPM2Parse(t *testing.T) {
	dump := `[
 {"name":"api","exec_mode":"cluster_mode","pm_exec_path":"/srv/api/server.js","pm_cwd":"/srv/api","exec_interpreter":"node",
  "node_args":["--max-old-space-size=256"],"args":["--port","3000"],"env":{"PORT":3000,"api":"{}","unique_id":"u1","PM2_HOME":"/h/.pm2","SECRET":"s"},
  "PORT":3000,"max_memory_restart":209715200,"kill_timeout":4000,"cron_restart":"0 3 * * *","autorestart":true,
  "pm_out_log_path":"/h/.pm2/logs/api-out-0.log","pm_err_log_path":"/var/log/api.err","merge_logs":true,"status":"online",
  "restart_time":3,"pm_uptime":1,"axm_options":{},"instance_var":"NODE_APP_INSTANCE","treekill":false,"blue_green":true},
 {"name":"api","exec_mode":"cluster_mode","pm_exec_path":"/srv/api/server.js","status":"online"},
 {"name":"job","exec_mode":"fork_mode","pm_exec_path":"/srv/job.py","exec_interpreter":"python3","autorestart":false,
  "stop_exit_codes":[0],"watch":["src"],"status":"stopped","min_uptime":"5s"}
]`
	res, err := pm2import.Parse([]byte(dump), "/h/.pm2")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Apps) != 2 {
		t.Fatalf("%d apps", len(res.Apps))
	}
	api, job := res.Apps[0].Spec, res.Apps[1].Spec
	if api.Instances != 2 || api.ExecMode != "cluster" || api.Script != "/srv/api/server.js" || api.Cwd != "/srv/api" ||
		strings.Join(api.Args, " ") != "--port 3000" || api.InterpreterArgs[0] != "--max-old-space-size=256" ||
		api.MaxMemoryRestart != 209715200 || api.KillTimeout != 4000 || api.CronRestart != "0 3 * * *" ||
		api.Env["PORT"] != "3000" || api.Env["SECRET"] != "s" || api.Env["api"] != "" || api.Env["PM2_HOME"] != "" ||
		api.OutFile != "" || api.ErrorFile != "/var/log/api.err" || api.Autorestart != nil {
		t.Errorf("api: %+v", api)
	}
	if job.Instances != 1 || job.Interpreter != "python3" || job.Autorestart == nil || *job.Autorestart ||
		job.StopExitCodes[0] != 0 || job.Watch[0] != "src" || job.MinUptime != 5000 || res.Apps[1].Status != "stopped" {
		t.Errorf("job: %+v", job)
	}
	if strings.Join(res.Unknown, ";") != "blue_green (api)" {
		t.Errorf("unknown: %q", res.Unknown)
	}
	if !strings.Contains(strings.Join(res.Apps[0].Notes, ";"), "treekill") {
		t.Errorf("notes: %q", res.Apps[0].Notes)
	}
	if _, err := pm2import.Parse([]byte(`{"apps": []}`), ""); err == nil {
		t.Error("an object is not a dump")
	}
}
