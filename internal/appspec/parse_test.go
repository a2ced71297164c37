package appspec

import (
	"strings"
	"testing"
)

func TestParseInstances(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ncpu    int
		want    int
		wantErr bool
	}{
		{"max", 4, 4, false},
		{"MAX", 8, 8, false},
		{"0", 4, 4, false},
		{"3", 4, 3, false},
		{" 2 ", 4, 2, false},
		{"-1", 4, 3, false},
		{"-3", 4, 1, false},
		{"-10", 4, 1, false},
		{"max", 0, 1, false},
		{"", 4, 0, true},
		{"lots", 4, 0, true},
		{"1.5", 4, 0, true},
	} {
		got, err := ParseInstances(tc.in, tc.ncpu)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseInstances(%q, %d) = %d, %v; want %d, error %v", tc.in, tc.ncpu, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1024", 1024, false},
		{"512K", 512 << 10, false},
		{"512k", 512 << 10, false},
		{"150M", 150 << 20, false},
		{"150mb", 150 << 20, false},
		{"1G", 1 << 30, false},
		{"1.5G", 3 << 29, false},
		{"0", 0, false},
		{"", 0, true},
		{"M", 0, true},
		{"-5M", 0, true},
		{"12T", 0, true},
		{"lots", 0, true},
	} {
		got, err := ParseMemory(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1000", 1000, false},
		{"0", 0, false},
		{"500ms", 500, false},
		{"10s", 10000, false},
		{"1.5s", 1500, false},
		{"1m", 60000, false},
		{"1h", 3600000, false},
		{"", 0, true},
		{"-1", 0, true},
		{"-2s", 0, true},
		{"1.5", 0, true},
		{"soon", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDetectInterpreter(t *testing.T) {
	for in, want := range map[string]string{
		"app.js":          "node",
		"lib/app.cjs":     "node",
		"app.mjs":         "node",
		"APP.JS":          "node",
		"worker.py":       "python3",
		"run.sh":          "bash",
		"x.rb":            "ruby",
		"index.php":       "php",
		"t.pl":            "perl",
		"srv.ts":          "bun",
		"view.tsx":        "bun",
		"/usr/bin/redis":  "none",
		"server":          "none",
		"archive.tar.bin": "none",
	} {
		if got := DetectInterpreter(in); got != want {
			t.Errorf("DetectInterpreter(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() App { return App{Name: "a", Script: "app.js"} }
	for _, tc := range []struct {
		name    string
		edit    func(*App)
		wantErr string // substring; "" means valid
	}{
		{"minimal", func(*App) {}, ""},
		{"everything valid", func(a *App) {
			a.ExecMode, a.KillSignal, a.CronRestart, a.LogType = "cluster", "SIGTERM", "0 */5 * * * *", "json"
			a.StopExitCodes = []int{0, 2}
		}, ""},
		{"cron five fields", func(a *App) { a.CronRestart = "*/5 * * * *" }, ""},
		{"cron descriptor", func(a *App) { a.CronRestart = "@daily" }, ""},
		{"cron disabled", func(a *App) { a.CronRestart = "0" }, ""},
		{"missing script", func(a *App) { a.Script = " " }, "script is missing"},
		{"bad exec_mode", func(a *App) { a.ExecMode = "cluster_mode" }, `exec_mode "cluster_mode"`},
		{"negative instances", func(a *App) { a.Instances = -1 }, "instances -1"},
		{"negative kill_timeout", func(a *App) { a.KillTimeout = -5 }, "kill_timeout -5"},
		{"negative memory", func(a *App) { a.MaxMemoryRestart = -1 }, "max_memory_restart"},
		{"bad exit code", func(a *App) { a.StopExitCodes = []int{300} }, "stop_exit_codes: 300"},
		{"bad signal", func(a *App) { a.KillSignal = "SIGNOPE" }, `kill_signal "SIGNOPE"`},
		{"signal without SIG", func(a *App) { a.KillSignal = "TERM" }, `kill_signal "TERM"`},
		{"bad cron", func(a *App) { a.CronRestart = "every monday" }, `cron_restart "every monday"`},
		{"cron too many fields", func(a *App) { a.CronRestart = "0 0 0 0 0 0 0" }, "cron_restart"},
		{"bad log_type", func(a *App) { a.LogType = "xml" }, `log_type "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ok()
			tc.edit(&a)
			err := a.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	a := App{ExecMode: "x", LogType: "y"}
	err := a.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{"script", "exec_mode", "log_type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
