package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/appspec"
)

// Environment of the re-executed test binary that runs Save under a file size limit.
const (
	envFullDisk      = "CORRAL_STATEFILE_TEST_FULLDISK"
	envFullDiskLimit = "CORRAL_STATEFILE_TEST_LIMIT"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envFullDisk); path != "" {
		os.Exit(fullDiskChild(path))
	}
	os.Exit(m.Run())
}

// fullDiskChild saves a large list to path with RLIMIT_FSIZE set low, so that writes fail with
// EFBIG the way they fail with ENOSPC on a full disk. It prints Save's error.
func fullDiskChild(path string) int {
	limit, err := strconv.ParseUint(os.Getenv(envFullDiskLimit), 10, 64)
	if err != nil {
		fmt.Println("bad limit:", err)
		return 2
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	err = Save(path, manyApps(200), false)
	if err == nil {
		fmt.Println("Save succeeded")
		return 3
	}
	fmt.Println(err)
	return 0
}

func manyApps(n int) []appspec.App {
	apps := make([]appspec.App, n)
	for i := range apps {
		apps[i] = appspec.App{Name: fmt.Sprintf("app-%d", i), Script: fmt.Sprintf("/srv/app-%d/server.js", i), Instances: 1}
	}
	return apps
}

func sampleApps() []appspec.App {
	off := false
	return []appspec.App{
		{
			Name: "api", Namespace: "prod", Script: "server.js", Args: []string{"--port", "80"},
			Cwd: "/srv/api", Instances: 4, ExecMode: "cluster", Listen: []string{":8080"},
			Env: map[string]string{"NODE_ENV": "production", "EMPTY": ""}, Autorestart: &off,
			MaxRestarts: 3, KillTimeout: 5000, Watch: []string{"."}, MaxMemoryRestart: 300 << 20,
		},
		{Name: "worker", Script: "python3 worker.py", Interpreter: "none"},
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.json")
	want := sampleApps()
	before := time.Now().UTC().Add(-time.Second)
	if err := Save(path, want, false); err != nil {
		t.Fatal(err)
	}
	got, warning, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if warning != "" {
		t.Errorf("unexpected warning %q", warning)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Version int               `json:"version"`
		SavedAt time.Time         `json:"saved_at"`
		Apps    []json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("dump is not JSON: %v\n%s", err, data)
	}
	if env.Version != 1 || len(env.Apps) != 2 || env.SavedAt.Before(before) || env.SavedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("envelope: version %d, %d apps, saved_at %v", env.Version, len(env.Apps), env.SavedAt)
	}
	if _, err := os.Stat(path + ".bak"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("first save created a backup (stat: %v)", err)
	}
	assertNoTemp(t, filepath.Dir(path))
}

func TestBackupKeepsPreviousDump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.json")
	a := sampleApps()
	b := manyApps(3)
	if err := Save(path, a, false); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(path, b, false); err != nil {
		t.Fatal(err)
	}
	bak, err := os.ReadFile(path + ".bak")
	if err != nil {
		t.Fatal(err)
	}
	if string(bak) != string(first) {
		t.Errorf("backup is not the previous dump:\n%s\nwant\n%s", bak, first)
	}
	if st, err := os.Stat(path + ".bak"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup stat: %v, %v", st, err)
	}
	got, _, err := Load(path)
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Errorf("Load = %v, %v; want the second list", got, err)
	}
	assertNoTemp(t, filepath.Dir(path))
}

func TestCorruptOrMissingDumpFallsBackToBackup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(path string) error
		wantMsg string
	}{
		{"truncated", func(p string) error { return truncateHalf(p) }, "is corrupt"},
		{"zero bytes", func(p string) error { return os.WriteFile(p, nil, 0o600) }, "empty file"},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("\x00\x00\x00garbage"), 0o600) }, "is corrupt"},
		{"missing", os.Remove, "is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dump.json")
			a, b := sampleApps(), manyApps(2)
			if err := Save(path, a, false); err != nil {
				t.Fatal(err)
			}
			if err := Save(path, b, false); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			got, warning, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, a) {
				t.Errorf("Load = %+v, want the backup's list", got)
			}
			for _, s := range []string{path, path + ".bak", tc.wantMsg} {
				if !strings.Contains(warning, s) {
					t.Errorf("warning %q does not mention %q", warning, s)
				}
			}
		})
	}
}

func TestCorruptDumpDoesNotReplaceBackup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.json")
	a := sampleApps()
	if err := Save(path, a, false); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, manyApps(1), false); err != nil {
		t.Fatal(err)
	}
	if err := truncateHalf(path); err != nil {
		t.Fatal(err)
	}
	c := manyApps(5)
	if err := Save(path, c, false); err != nil {
		t.Fatal(err)
	}
	bak, err := loadFile(path + ".bak")
	if err != nil || !reflect.DeepEqual(bak, a) {
		t.Errorf("backup = %v, %v; want the last good dump before the corrupt one", bak, err)
	}
	got, warning, err := Load(path)
	if err != nil || warning != "" || !reflect.DeepEqual(got, c) {
		t.Errorf("Load = %v, %q, %v", got, warning, err)
	}
}

func TestLoadBothBad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dump.json")

	_, _, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no files: err = %v, want fs.ErrNotExist", err)
	}

	if err := os.WriteFile(path, []byte(`{"version":1,"apps":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("corrupt dump, no backup: err = %v", err)
	}
	for _, s := range []string{path, path + ".bak", "1:22: truncated"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}

	if err := os.WriteFile(path+".bak", []byte(`{"version":1,"apps":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), path+".bak:1:") {
		t.Errorf("both corrupt: err = %v", err)
	}
}

func TestDecodeErrorsNameThePlace(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"{\n  \"version\": 1,\n  \"apps\": [\n    {\"name\": \"a\", \"script\": 7}\n  ]\n}\n", ":4:"},
		{`{"version":1,"apps":[{"name":"a","script":""}]}`, `apps[0] (name "a"): empty "script"`},
		{`{"version":2,"apps":[]}`, `unsupported "version" 2`},
		{`{"apps":[]}`, `missing "version"`},
		{`{"version":1}`, `missing "apps"`},
		{`[]`, "1:2: json: cannot unmarshal array"},
		{`{"version":1,"apps":[]} {}`, "1:25: trailing data"},
		{"   \n", "empty file"},
	} {
		path := filepath.Join(t.TempDir(), "dump.json")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadFile(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path) {
			t.Errorf("loadFile(%q) error = %v, want %q after the path", tc.content, err, tc.want)
		}
	}
}

func TestEmptyListGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.json")

	// Nothing saved yet: an empty list is fine.
	if err := Save(path, nil, false); err != nil {
		t.Fatalf("empty save on a fresh path: %v", err)
	}
	if got, _, err := Load(path); err != nil || len(got) != 0 || got == nil {
		t.Fatalf("Load after empty save = %#v, %v; want an empty, non-nil list", got, err)
	}

	a := sampleApps()
	if err := Save(path, a, false); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	err := Save(path, []appspec.App{}, false)
	if !errors.Is(err, ErrWouldEmpty) || !strings.Contains(err.Error(), path) {
		t.Fatalf("empty save over a non-empty dump: err = %v, want ErrWouldEmpty naming the file", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("refused save changed the dump")
	}

	// A corrupt dump with a good backup is still guarded: resurrect would use the backup.
	if err := truncateHalf(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".bak", before, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, nil, false); !errors.Is(err, ErrWouldEmpty) {
		t.Fatalf("empty save over corrupt dump with good backup: err = %v", err)
	}

	if err := Save(path, nil, true); err != nil {
		t.Fatalf("forced empty save: %v", err)
	}
	if got, warning, err := Load(path); err != nil || warning != "" || len(got) != 0 {
		t.Errorf("after forced clear Load = %v, %q, %v", got, warning, err)
	}
}

func TestSaveRejectsAppWithoutScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dump.json")
	err := Save(path, []appspec.App{{Name: "x", Script: "a.js"}, {Name: "broken"}}, false)
	if err == nil || !strings.Contains(err.Error(), `apps[1] (name "broken")`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a rejected save wrote the dump (stat: %v)", err)
	}
}

func TestUnwritableDirectory(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(notDir, "dump.json")
	err := Save(path, sampleApps(), false)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("save under a regular file: err = %v, want an error naming %s", err, path)
	}

	t.Run("read-only", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(ro, 0o700) })
		path := filepath.Join(ro, "dump.json")
		err := Save(path, sampleApps(), false)
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), path) {
			t.Errorf("err = %v, want a permission error naming %s", err, path)
		}
	})
}

// TestFullDiskKeepsOldDump runs Save in a child process whose file size limit is too small for
// the new dump, so its write fails (EFBIG, like ENOSPC), and checks the old dump survives.
func TestFullDiskKeepsOldDump(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dump.json")
	if err := Save(path, sampleApps(), false); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Room for the backup copy of the old dump, not for the new 200-app dump.
	limit := len(old) + 512

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFullDisk+"="+path, envFullDiskLimit+"="+strconv.Itoa(limit))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "file too large") || !strings.Contains(string(out), path) {
		t.Errorf("child's Save error = %q, want a write error naming %s", out, path)
	}
	now, err := os.ReadFile(path)
	if err != nil || string(now) != string(old) {
		t.Errorf("dump changed after a failed save (err %v)", err)
	}
	if got, warning, err := Load(path); err != nil || warning != "" || !reflect.DeepEqual(got, sampleApps()) {
		t.Errorf("Load after failed save = %v, %q, %v", got, warning, err)
	}
	assertNoTemp(t, dir)
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "corral.pid")
	if err := WriteFileAtomic(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("12345\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != "12345\n" {
		t.Errorf("content %q, %v", data, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	assertNoTemp(t, dir)

	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("write into a missing directory: err = %v", err)
	}
}

func truncateHalf(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Truncate(path, st.Size()/2)
}

// assertNoTemp fails if a temporary file of WriteFileAtomic was left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
