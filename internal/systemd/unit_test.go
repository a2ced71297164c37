package systemd

import (
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestUnitGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		opts   UnitOptions
	}{
		{"corral-alice.service", UnitOptions{
			User: "alice", Home: "/home/alice/.corral", Binary: "/usr/local/bin/corral",
			Path: "/home/alice/.nvm/versions/node/v20.20.2/bin:/usr/local/bin:/usr/bin:/bin",
		}},
		{"escaping.service", UnitOptions{
			ServiceName: "corral-web", User: "web", Home: `/srv/my "home"/100%`,
			Binary: "/opt/my apps/corral$1", Path: "/opt/bin:/usr/bin", StopTimeout: 2500 * time.Millisecond,
		}},
		{"minimal.service", UnitOptions{Binary: "/usr/bin/corral"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			if err := tc.opts.Validate(); err != nil {
				t.Fatal(err)
			}
			got := Unit(tc.opts)
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Unit(%+v) differs from %s:\n%s", tc.opts, path, got)
			}
		})
	}
}

func TestUnitContent(t *testing.T) {
	opts := UnitOptions{User: "bob", Home: "/home/bob/.corral", Binary: "/usr/bin/corral", Path: "/usr/bin:/bin"}
	if opts.Name() != "corral-bob.service" {
		t.Errorf("Name() = %q", opts.Name())
	}
	unit := Unit(opts)
	for _, want := range []string{
		"\nType=notify\n", "\nUser=bob\n", "\nEnvironment=PATH=/usr/bin:/bin CORRAL_HOME=/home/bob/.corral\n",
		"\nExecStart=/usr/bin/corral __keeper --foreground --resurrect\n", "\nNotifyAccess=all\n", "\nExecReload=/usr/bin/corral reload all\n",
		"\nKillMode=mixed\n", "\nTimeoutStopSec=90\n", "\nRestart=on-failure\n", "\nLimitNOFILE=infinity\n",
		"\nAfter=network.target\n", "\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if got := (UnitOptions{}).Name(); got != "corral.service" {
		t.Errorf("default name without user = %q", got)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []UnitOptions{
		{Binary: "corral"},
		{Binary: ""},
		{Binary: "/bin/corral", Home: "relative/home"},
		{Binary: "/bin/corral", ServiceName: "corral web"},
		{Binary: "/bin/corral", User: "a b"},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
	}
}

// TestUnitVerify runs `systemd-analyze verify` on generated units, when it is installed.
func TestUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// systemd-analyze checks that ExecStart's program exists; give it one whose path needs escaping.
	binDir := filepath.Join(dir, "my apps")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	for _, opts := range []UnitOptions{
		{User: me.Username, Home: filepath.Join(dir, "home"), Binary: truePath, Path: os.Getenv("PATH")},
		{ServiceName: "corral-odd", User: me.Username, Home: dir + `/a "b" 100%`, Binary: filepath.Join(binDir, "corral$1%n"), Path: "/usr/bin"},
	} {
		if opts.Binary != truePath {
			if err := os.Symlink(truePath, opts.Binary); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, opts.Name())
		if err := os.WriteFile(path, []byte(Unit(opts)), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, analyze, "verify", path).CombinedOutput()
		cancel()
		if err != nil || strings.Contains(string(out), opts.Name()) {
			t.Errorf("systemd-analyze verify %s: %v\n%s\n%s", opts.Name(), err, out, Unit(opts))
		}
	}
}

func TestInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "corral-alice.service")
	content := Unit(UnitOptions{User: "alice", Binary: "/usr/bin/corral"})

	var calls [][]string
	run := func(ctx context.Context, name string, args ...string) error {
		if ctx == nil {
			t.Error("runner got a nil context")
		}
		calls = append(calls, append([]string{name}, args...))
		return nil
	}

	if err := Install(context.Background(), path, content, run); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != content {
		t.Fatalf("unit file: %q, %v", data, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	want := [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "corral-alice.service"}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("install ran %q, want %q", calls, want)
	}

	calls = nil
	if err := Uninstall(context.Background(), path, run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unit file still there: %v", err)
	}
	want = [][]string{{"systemctl", "disable", "corral-alice.service"}, {"systemctl", "daemon-reload"}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("uninstall ran %q, want %q", calls, want)
	}

	calls = nil
	if err := Uninstall(context.Background(), path, run); !errors.Is(err, fs.ErrNotExist) || len(calls) != 0 {
		t.Errorf("second uninstall: err %v, calls %q", err, calls)
	}
}

func TestInstallWithoutRunnerOnlyWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.service")
	if err := Install(context.Background(), path, "[Unit]\n", nil); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "[Unit]\n" {
		t.Errorf("content %q, %v", data, err)
	}
	if err := Uninstall(context.Background(), path, nil); err != nil {
		t.Fatal(err)
	}
}

func TestInstallErrors(t *testing.T) {
	dir := t.TempDir()
	failing := func(ctx context.Context, name string, args ...string) error {
		return errors.New("exit status 1: Failed to connect to bus")
	}
	path := filepath.Join(dir, "corral.service")
	err := Install(context.Background(), path, "[Unit]\n", failing)
	if err == nil || !strings.Contains(err.Error(), "corral.service") || !strings.Contains(err.Error(), "Failed to connect to bus") {
		t.Errorf("failing runner: err = %v", err)
	}
	if err := Install(context.Background(), filepath.Join(dir, "corral.conf"), "", nil); err == nil {
		t.Error("a unit path without .service was accepted")
	}
	err = Install(context.Background(), filepath.Join(dir, "missing", "corral.service"), "", nil)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("unwritable path: err = %v", err)
	}
}

func TestExecRunner(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	if err := ExecRunner(context.Background(), "sh", "-c", "exit 0"); err != nil {
		t.Error(err)
	}
	err := ExecRunner(context.Background(), "sh", "-c", "echo boom >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("err = %v", err)
	}
}
