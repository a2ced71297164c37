package ecosystem

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/nodetest"
)

// wantApps is what every testdata/ecosystem.* file describes.
func wantApps(t *testing.T) []appspec.App {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	no := false
	return []appspec.App{{
		Name:             "api",
		Script:           "server.js",
		Cwd:              filepath.Join(dir, "app"),
		Args:             []string{"--port", "3000", "--verbose"},
		Instances:        2,
		ExecMode:         "cluster",
		Watch:            []string{"."},
		IgnoreWatch:      []string{"node_modules"},
		MaxMemoryRestart: 150 << 20,
		KillTimeout:      3000,
		StopExitCodes:    []int{0, 3},
		LogDateFormat:    "YYYY-MM-DD HH:mm Z",
		Env:              map[string]string{"NODE_ENV": "development", "PORT": "3000"},
		EnvSets:          map[string]map[string]string{"production": {"NODE_ENV": "production"}},
	}, {
		Name:          "worker",
		Script:        "worker.py",
		Interpreter:   "python3",
		Autorestart:   &no,
		CronRestart:   "0 */5 * * * *",
		OutFile:       "logs/worker.out",
		ErrorFile:     "logs/worker.err",
		MinUptime:     2000,
		RestartDelay:  500,
		Time:          true,
		MergeLogs:     true,
		StopExitCodes: []int{2},
		Env:           map[string]string{"QUEUE": "jobs", "DEBUG": "true"},
		EnvSets:       map[string]map[string]string{"production": {"QUEUE": "jobs-prod"}},
	}}
}

func TestFormatsAgree(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no node: JS configs must load with the embedded interpreter
	want := wantApps(t)
	for _, name := range []string{"ecosystem.json", "ecosystem.yaml", "ecosystem.config.js", "ecosystem.config.mjs"} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Apps, want) {
				t.Errorf("apps differ\n got: %+v\nwant: %+v", f.Apps, want)
			}
		})
	}
}

// TestShimsMatchNode evaluates the JS configs both with goja and with node: the shims must give
// what node gives.
func TestShimsMatchNode(t *testing.T) {
	nodeBin := nodetest.Node(t)
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "ecosystem.config.js", InitTemplate())
	for _, path := range []string{"testdata/ecosystem.config.js", "testdata/ecosystem.config.mjs", tmpl} {
		abs, _ := filepath.Abs(path)
		src, err := os.ReadFile(abs)
		if err != nil {
			t.Fatal(err)
		}
		g, missing, err := evalGoja(context.Background(), abs, string(src), false)
		if err != nil || missing != "" {
			t.Fatalf("goja %s: missing %q, %v", path, missing, err)
		}
		n, err := evalNode(context.Background(), nodeBin, abs)
		if err != nil {
			t.Fatalf("node %s: %v", path, err)
		}
		if !reflect.DeepEqual(g, n) {
			t.Errorf("%s: goja and node disagree", path)
		}
	}
}

func TestSelect(t *testing.T) {
	f, err := Load("testdata/ecosystem.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := func(apps []appspec.App) (ns []string) {
		for _, a := range apps {
			ns = append(ns, a.Name)
		}
		return ns
	}

	all, err := f.Select(nil, "")
	if err != nil || !reflect.DeepEqual(names(all), []string{"api", "worker"}) {
		t.Fatalf("Select(nil) = %v, %v", names(all), err)
	}
	if !reflect.DeepEqual(all, f.Apps) {
		t.Error("Select without --env changed the apps")
	}
	both, err := f.Select([]string{"worker,api"}, "")
	if err != nil || len(both) != 2 {
		t.Fatalf("Select(worker,api) = %v, %v", names(both), err)
	}

	prod, err := f.Select([]string{"api", "worker"}, "production")
	if err != nil {
		t.Fatal(err)
	}
	// deploy.production.env < env < env_production
	wantAPI := map[string]string{"NODE_ENV": "production", "PORT": "3000", "REGION": "eu"}
	wantWorker := map[string]string{"NODE_ENV": "from-deploy", "QUEUE": "jobs-prod", "DEBUG": "true", "REGION": "eu"}
	if !reflect.DeepEqual(prod[0].Env, wantAPI) || !reflect.DeepEqual(prod[1].Env, wantWorker) {
		t.Errorf("--env production: api %v, worker %v", prod[0].Env, prod[1].Env)
	}
	if f.Apps[0].Env["NODE_ENV"] != "development" || len(f.Apps[1].Env) != 2 {
		t.Errorf("Select changed the file's apps: %v %v", f.Apps[0].Env, f.Apps[1].Env)
	}
	prod[0].Args[0] = "changed"
	prod[0].EnvSets["production"]["X"] = "y"
	if f.Apps[0].Args[0] != "--port" || f.Apps[0].EnvSets["production"]["X"] != "" {
		t.Error("Select's result shares memory with the file")
	}

	only, err := f.Select([]string{"worker"}, "")
	if err != nil || !reflect.DeepEqual(names(only), []string{"worker"}) {
		t.Fatalf("--only worker = %v, %v", names(only), err)
	}
	if _, err := f.Select([]string{"api", "nope"}, ""); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("--only nope: %v", err)
	}
	if _, err := f.Select(nil, "staging"); err == nil || !strings.Contains(err.Error(), "env_staging") {
		t.Errorf("--env staging: %v", err)
	}
}

func TestSelectEnvOfSomeApps(t *testing.T) {
	path := writeFile(t, t.TempDir(), "e.json", `[
		{"name": "a", "script": "a.js", "env": {"X": "1"}, "env_test": {"X": "2"}},
		{"name": "b", "script": "b.js", "env": {"X": "1"}}
	]`)
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	apps, err := f.Select(nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	if apps[0].Env["X"] != "2" || apps[1].Env["X"] != "1" {
		t.Errorf("--env test: a %v, b %v", apps[0].Env, apps[1].Env)
	}
	if _, err := f.Select([]string{"b"}, "test"); err == nil {
		t.Error("--only b --env test: no error, though b has no env_test")
	}
}

// TestMalformed checks that a broken file of each format fails whole, naming the file and line.
func TestMalformed(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // the same answer with or without node; without is faster
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"bad.json", "{\n  \"apps\": [\n    {\"name\": \"a\",\n     \"script\": \"a.js\",,\n  ]\n}\n", 4, "invalid JSON"},
		{"cut.json", "{\n  \"apps\": [\n    {\"name\": \"a\"\n", 4, "unexpected end"},
		{"two.json", "{\"apps\": []}\n{}\n", 2, "after the top-level value"},
		{"bad.yaml", "apps:\n  - name: a\n    script: a.js\n   env: [\n", 4, "invalid YAML"},
		{"tab.yml", "apps:\n  - name: a\n\tscript: a.js\n", 3, "invalid YAML"},
		{"bad.js", "module.exports = {\n  apps: [\n    { name: 'a' script: 'a.js' },\n  ],\n};\n", 3, "syntax error"},
		{"bad.mjs", "import path from 'path';\nexport default {\n  apps: [\n    { name: 'a', script: },\n  ],\n};\n", 4, "syntax error"},
		{"throws.cjs", "const x = 1;\nmodule.exports = { apps: [{ name: 'a', script: missing.js }] };\n", 0, "missing is not defined"},
		{"nothing.js", "const x = 1;\n", 0, "the config is empty"},
		{"unsupported.toml", "[apps]\n", 0, "unsupported file type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tc.name, tc.src)
			f, err := Load(path)
			if f != nil || err == nil {
				t.Fatalf("Load = %v, %v; want an error", f, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if e.File != path || e.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: file %q line %d; want file %q line %d and %q", err, e.File, e.Line, path, tc.line, tc.want)
			}
		})
	}
}

// TestUnknownKeys checks that unknown app keys are warnings naming file, line, app and key (with a
// suggestion for a likely typo), as PM2 ignores them; and that object env values become JSON text.
func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"typo.json", "{\"apps\": [\n  {\n    \"name\": \"api\",\n    \"scirpt\": \"a.js\", \"script\": \"a.js\"\n  }\n]}", []string{`typo.json:4:`, `app "api"`, `unknown key "scirpt" ignored (did you mean "script"?)`}},
		{"typo.yaml", "apps:\n  - name: api\n    script: a.js\n    instnaces: 2\n", []string{`typo.yaml:4:`, `unknown key "instnaces" ignored (did you mean "instances"?)`}},
		{"typo.js", "module.exports = [{ name: 'api', script: 'a.js', wach: true }];\n", []string{`app "api"`, `unknown key "wach" ignored (did you mean "watch"?)`}},
		{"real.json", `{"apps": [{"name": "api", "script": "a.js", "max": "10", "options": {"x": 1}}]}`, []string{`unknown key "max" ignored`, `unknown key "options" ignored`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tc.name, tc.src)
			f, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			all := strings.Join(f.Warnings, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q do not contain %q", all, w)
				}
			}
			if len(f.Apps) != 1 || f.Apps[0].Name != "api" {
				t.Errorf("apps %+v", f.Apps)
			}
		})
	}
	path := writeFile(t, t.TempDir(), "env.yaml", "- name: a\n  script: a.js\n  env:\n    A: {b: 1, c: [x, 2]}\n    N: 3\n")
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Apps[0].Env; got["A"] != `{"b":1,"c":["x",2]}` || got["N"] != "3" {
		t.Errorf("env %q", got)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("warnings %q", f.Warnings)
	}
}

// TestBadValues checks bad values: each fails naming file, line, app and key.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		want      []string
	}{
		{"top.yaml", "apps:\n  - script: a.js\nextra: 1\n", 3, []string{`unknown top-level key "extra"`}},
		{"alias.yaml", "- name: a\n  script: a.js\n  exec: b.js\n", 3, []string{`key "exec" repeats "script"`}},
		{"inst.yaml", "- name: a\n  script: a.js\n  instances: lots\n", 3, []string{"instances", `"lots"`}},
		{"mem.yaml", "- name: a\n  script: a.js\n  max_memory_restart: 12Q\n", 3, []string{"max_memory_restart", `"12Q"`}},
		{"dur.yaml", "- name: a\n  script: a.js\n  min_uptime: soon\n", 3, []string{"min_uptime", `"soon"`}},
		{"watch.yaml", "- name: a\n  script: a.js\n  watch: 5\n", 3, []string{"watch", "is a number"}},
		{"bool.yaml", "- name: a\n  script: a.js\n  autorestart: sometimes\n", 3, []string{"autorestart", "true or false"}},
		{"codes.yaml", "- name: a\n  script: a.js\n  stop_exit_codes: [0, 1.5]\n", 3, []string{"stop_exit_codes", "whole number"}},
		{"script.yaml", "- name: a\n  args: x\n", 1, []string{`app "a"`, "script is missing"}},
		{"signal.yaml", "- name: a\n  script: a.js\n  kill_signal: SIGFOO\n", 1, []string{`kill_signal "SIGFOO"`}},
		{"cron.yaml", "- name: a\n  script: a.js\n  cron: 99 * * * *\n", 3, []string{"cron_restart", "99"}},
		{"dupkey.yaml", "- name: a\n  script: a.js\n  env:\n    A: 1\n    A: 2\n", 5, []string{`duplicate key "A"`}},
		{"dupkey.json", "[{\"name\": \"a\",\n  \"script\": \"a.js\",\n  \"name\": \"b\"}]", 3, []string{`duplicate key "name"`}},
		{"mode.yaml", "- name: a\n  script: a.js\n  exec_mode: swarm\n", 1, []string{`exec_mode "swarm"`}},
		{"logtype.yaml", "- name: a\n  script: a.js\n  log_type: xml\n", 1, []string{`log_type "xml"`}},
		{"empty.json", `{"apps": []}`, 1, []string{"no apps"}},
		{"scalar.yaml", "hello\n", 1, []string{"the config is a string"}},
		{"env_.yaml", "- name: a\n  script: a.js\n  env_: {}\n", 3, []string{`"env_" needs an environment name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), tc.name, tc.src)
			f, err := Load(path)
			if f != nil || err == nil {
				t.Fatalf("Load = %v, %v; want an error", f, err)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Line != tc.line {
				t.Errorf("error %q: want *Error with file %s line %d", err, path, tc.line)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestShapes loads the top-level shapes and syntaxes PM2 users write.
func TestShapes(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CORRAL_TEST_PORT", "4242")
	for _, tc := range []struct {
		name, src string
		want      []string // app names
	}{
		{"array.json", `[{"name": "a", "script": "a.js"}, {"script": "bin/b.sh"}]`, []string{"a", "b"}},
		{"one.yaml", "name: solo\nscript: solo.js\n", []string{"solo"}},
		{"pm2.json", `{"pm2": [{"script": "x.js"}], "deploy": {"prod": {"host": "h"}}}`, []string{"x"}},
		{"comments.json", "{\n  // PM2 evaluates .json as JavaScript\n  \"apps\": [{\"script\": \"c.js\",}],\n}\n", []string{"c"}},
		{"merge.yaml", "apps:\n  - &base\n    name: a\n    script: a.js\n    env: {X: '1'}\n  - <<: *base\n    name: b\n", []string{"a", "b"}},
		{"command.json", `{"apps": [{"script": "npm run start -- --x"}]}`, []string{"npm"}},
		{"exports.js", "#!/usr/bin/env node\nexports.apps = [{ name: 'e', script: __filename }];\n", []string{"e"}},
		{"array.mjs", "export default [{ name: 'm', script: 'm.js' }];\n", []string{"m"}},
		{"named.js", "import os from 'os';\nexport const apps = [{ name: 'n', script: 'n.js', instances: os.cpus().length }];\n", []string{"n"}},
		{"list.mjs", "const apps = [{ name: 'l', script: 'l.js' }];\nexport { apps };\n", []string{"l"}},
		{"asdefault.mjs", "const cfg = { apps: [{ name: 'd', script: 'd.js' }] };\nexport { cfg as default };\n", []string{"d"}},
		{"multiline.mjs", "import {\n  join,\n  dirname as dn,\n} from 'node:path';\nexport default { apps: [{ name: 'ml', script: join(dn('/x/y'), 'z.js') }] };\n", []string{"ml"}},
		{"env.cjs", "module.exports = { name: 'p', script: 'p.js', env: { PORT: process.env.CORRAL_TEST_PORT } };\n", []string{"p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Load(writeFile(t, t.TempDir(), tc.name, tc.src))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range f.Apps {
				got = append(got, a.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("apps %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValueDetails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CORRAL_TEST_PORT", "4242")
	dir := t.TempDir()
	load := func(name, src string) appspec.App {
		t.Helper()
		f, err := Load(writeFile(t, dir, name, src))
		if err != nil {
			t.Fatal(err)
		}
		return f.Apps[0]
	}

	a := load("merge.yaml", "apps:\n  - &base\n    name: a\n    script: a.js\n    env: {X: '1'}\n  - <<: *base\n    name: b\n")
	if a.Env["X"] != "1" {
		t.Errorf("merge.yaml: env %v", a.Env)
	}
	b := load("abs.json", `{"script": "a.js", "cwd": "/srv/app", "instances": "max", "cron": 0,
		"disable_logs": true, "port": 8080, "exec_mode": "fork_mode", "pid_file": "/tmp/x.pid"}`)
	if b.Cwd != "/srv/app" || b.Instances < 1 || b.CronRestart != "" || b.OutFile != "/dev/null" ||
		b.ErrorFile != "/dev/null" || b.Env["PORT"] != "8080" || b.ExecMode != "fork" {
		t.Errorf("abs.json: %+v", b)
	}
	c := load("env.cjs", "module.exports = { script: 'p.js', env: { PORT: process.env.CORRAL_TEST_PORT, F: __filename } };\n")
	if c.Env["PORT"] != "4242" || c.Env["F"] != filepath.Join(dir, "env.cjs") {
		t.Errorf("env.cjs: env %v", c.Env)
	}
	d := load("exports.js", "exports.apps = [{ script: 'x.js', instances: -1, node_args: '--inspect --trace' }];\n")
	if d.InterpreterArgs[1] != "--trace" || d.Instances < 1 {
		t.Errorf("exports.js: %+v", d)
	}
}

func TestInfiniteLoopIsCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := LoadContext(ctx, writeFile(t, t.TempDir(), "loop.js", "for (;;) {}\n"))
	if err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("err = %v, want a timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// TestSyntaxErrorWithNode checks that a config node cannot run either gets goja's positioned error.
func TestSyntaxErrorWithNode(t *testing.T) {
	nodetest.Node(t)
	path := writeFile(t, t.TempDir(), "bad.config.js", "module.exports = {\n  apps: [\n    { name: 'a' script: 'a.js' },\n  ],\n};\n")
	_, err := Load(path)
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || e.Column != 17 || strings.Contains(err.Error(), "node") {
		t.Errorf("err = %v, want goja's error at 3:17", err)
	}
}

func TestNodeFallback(t *testing.T) {
	nodetest.Node(t)
	f, err := Load("testdata/node/ecosystem.config.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Apps) != 2 || f.Apps[0].Name != "one" || f.Apps[1].Script != "two.js" || f.Apps[1].Env["FROM"] != "shared" {
		t.Errorf("apps %+v", f.Apps)
	}
}

func TestNodeFallbackWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Load("testdata/node/ecosystem.config.js")
	if err == nil || !strings.Contains(err.Error(), `requires "./shared"`) || !strings.Contains(err.Error(), "node is not on PATH") {
		t.Errorf("err = %v", err)
	}
}

func TestNodeFallbackFails(t *testing.T) {
	nodetest.Node(t)
	path := writeFile(t, t.TempDir(), "e.config.js", "require('./nowhere');\nmodule.exports = [];\n")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "run with node") ||
		!strings.Contains(err.Error(), "Cannot find module './nowhere'") {
		t.Errorf("err = %v", err)
	}
}

func TestInitTemplate(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f, err := Load(writeFile(t, t.TempDir(), "ecosystem.config.js", InitTemplate()))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := f.Select(nil, "production")
	if err != nil {
		t.Fatal(err)
	}
	a := apps[0]
	if len(apps) != 1 || a.Name != "app" || a.Script != "./app.js" || a.Env["NODE_ENV"] != "production" ||
		a.MinUptime != 1000 || a.KillTimeout != 1600 || !a.AutorestartOn() {
		t.Errorf("template app: %+v", a)
	}
}

func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
