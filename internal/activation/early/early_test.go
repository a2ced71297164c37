package early

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/activation"
	"github.com/corralhq/corral/internal/cli"
)

// This test binary links the package, so its init is the shim when the binary is run as
// `<test binary> __activate <program>`. TestMain is reached in such a run only when the init
// declined to exec: it then prints fellBack, as the corral binary would go on to run
// activation.Exec.
const fellBack = "early: fell back"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimCommand {
		fds := "" // flags of fd 3 when passed: the init left them as they were
		if n, err := strconv.Atoi(os.Getenv(envFDs)); err == nil && n > 0 {
			f, errno := fcntl(firstFD, 1 /* F_GETFD */, 0)
			fds = " 3=" + strconv.Itoa(int(f)) + "/" + strconv.Itoa(int(errno))
		}
		os.Stdout.WriteString(fellBack + fds + "\n")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestConstantsMatchActivation(t *testing.T) {
	if shimCommand != activation.ShimCommand || firstFD != activation.FirstFD || envFDs != activation.EnvFDs ||
		envPID != activation.EnvPID || runtimeName != cli.RuntimeName {
		t.Error("early's constants differ from activation's or cli's")
	}
	// Wrap hides exactly nodeChannelEnv under hiddenPrefix.
	cmd := exec.Command("/bin/true")
	var env []string
	for _, k := range nodeChannelEnv {
		env = append(env, k+"=x")
	}
	cmd.Env = env
	activation.Wrap(cmd, "/corral", nil)
	var want []string
	for _, k := range nodeChannelEnv {
		want = append(want, hiddenPrefix+k+"=x")
	}
	if got := cmd.Env[:len(nodeChannelEnv)]; !reflect.DeepEqual(got, want) {
		t.Errorf("Wrap hid %q, early restores %q", got, want)
	}
}

// shim runs the test binary as `__activate args...` with env and files as fds 3, 4, ...
func shim(t *testing.T, env []string, files []*os.File, args ...string) (out string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{shimCommand}, args...)...)
	cmd.Env = env
	cmd.ExtraFiles = files
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(b), cmd.ProcessState.ExitCode()
}

// The init execs the program with the descriptors open, LISTEN_PID set to the shim's pid (the
// stale one removed), the hidden Node variables restored and the program found in PATH.
func TestInitExecs(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	script := `echo "pid=$$ listen_pid=$LISTEN_PID fds=$LISTEN_FDS chan=$NODE_CHANNEL_FD uid=$NODE_UNIQUE_ID hidden=$CORRAL_ACTIVATE_NODE_CHANNEL_FD other=$CORRAL_ACTIVATE_OTHER"; ` +
		`test -e /proc/$$/fd/3 && echo fd3 open; printf '%s\n' "$*"`
	env := []string{"PATH=" + os.Getenv("PATH"), "LISTEN_PID=1", "LISTEN_FDS=1", "CORRAL_ACTIVATE_NODE_CHANNEL_FD=4",
		"CORRAL_ACTIVATE_NODE_UNIQUE_ID=7", "CORRAL_ACTIVATE_OTHER=kept"}
	out, code := shim(t, env, []*os.File{w}, "sh", "-c", script, "sh", "-x", "fork", "--", "a b")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	var pid, listenPID string
	rest := strings.Fields(lines[0])
	for _, f := range rest {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "pid":
			pid = v
		case "listen_pid":
			listenPID = v
		}
	}
	if pid == "" || listenPID != pid {
		t.Errorf("LISTEN_PID=%s in process %s", listenPID, pid)
	}
	if want := "fds=1 chan=4 uid=7 hidden= other=kept"; !strings.Contains(lines[0], want) {
		t.Errorf("environment %q, want %q", lines[0], want)
	}
	if lines[1] != "fd3 open" {
		t.Errorf("fd 3 not passed: %q", lines[1])
	}
	if lines[2] != "-x fork -- a b" {
		t.Errorf("arguments %q, want them verbatim", lines[2])
	}

	// Argument forms that are not the shim start the binary as usual.
	exe, _ := os.Executable()
	for _, argv0 := range []string{"/x/corral-runtime", "corral-runtime"} {
		cmd := exec.Command(exe, shimCommand, "/bin/true")
		cmd.Args[0] = argv0
		cmd.Env = []string{"LISTEN_FDS=0"}
		b, _ := cmd.CombinedOutput()
		if !strings.HasPrefix(string(b), fellBack) {
			t.Errorf("argv[0] %s: %q, want the binary to start (as `corral runtime __activate`)", argv0, b)
		}
	}
}

// Whatever activation.Exec would report as an error is left to it: the init returns with the
// descriptors as they were.
func TestInitFallsBack(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "noexec.sh")
	if err := os.WriteFile(script, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("\x00\x01\x02 not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	path := "PATH=" + os.Getenv("PATH")
	for _, c := range []struct {
		name  string
		env   []string
		files []*os.File
		args  []string
		want  string
	}{
		{"no LISTEN_FDS", []string{path}, nil, []string{"true"}, fellBack + "\n"},
		{"bad LISTEN_FDS", []string{path, "LISTEN_FDS=x"}, nil, []string{"true"}, fellBack + "\n"},
		{"negative LISTEN_FDS", []string{path, "LISTEN_FDS=-1"}, nil, []string{"true"}, fellBack + "\n"},
		// (The Go runtime keeps cgroup files open at the lowest free descriptors after the passed
		// ones: 64 reaches beyond them.)
		{"fd not open", []string{path, "LISTEN_FDS=64"}, []*os.File{w}, []string{"true"}, fellBack + " 3=0/0\n"},
		{"empty program", []string{path, "LISTEN_FDS=0"}, nil, []string{""}, fellBack + "\n"},
		{"not found", []string{path, "LISTEN_FDS=0"}, nil, []string{"no-such-program-xyz"}, fellBack + "\n"},
		{"empty PATH", []string{"PATH=", "LISTEN_FDS=0"}, nil, []string{"true"}, fellBack + "\n"},
		{"not executable", []string{path, "LISTEN_FDS=0"}, nil, []string{script}, fellBack + "\n"},
		{"directory", []string{path, "LISTEN_FDS=0"}, nil, []string{dir}, fellBack + "\n"},
		{"exec fails", []string{path, "LISTEN_FDS=1"}, []*os.File{w}, []string{garbage}, fellBack + " 3=0/0\n"},
	} {
		out, code := shim(t, c.env, c.files, c.args...)
		if code != 3 || out != c.want {
			t.Errorf("%s: exit %d, output %q; want 3, %q", c.name, code, out, c.want)
		}
	}
	// No program at all is not the shim's form either.
	if out, code := shim(t, []string{"LISTEN_FDS=0"}, nil); code != 3 || out != fellBack+"\n" {
		t.Errorf("no program: exit %d, output %q", code, out)
	}
}

// lookPath finds what exec.LookPath finds, and fails where it fails.
func TestLookPathMatchesExec(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"prog": 0o755, "plain": 0o644, "sub/prog2": 0o700} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "dirprog"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, pathEnv := range []string{
		"", ":", dir, "/nonexistent:" + dir + "/sub:" + dir, dir + "/sub/../", "sub", "::sub", "./sub:.", "/bin:/usr/bin",
	} {
		t.Setenv("PATH", pathEnv)
		for _, file := range []string{"prog", "prog2", "plain", "dirprog", "sub", "./prog", "sub/prog2", dir + "/prog",
			dir + "/plain", "/nonexistent/prog", "", ".", "..", "sh", "true"} {
			want, err := exec.LookPath(file)
			if err != nil && !errors.Is(err, exec.ErrDot) {
				want = ""
			}
			got, ok := lookPath(file)
			if !ok {
				got = ""
			}
			if got != want {
				t.Errorf("PATH=%q: lookPath(%q) = %q, %v; exec.LookPath: %q, %v", pathEnv, file, got, ok, want, err)
			}
		}
	}
}

func TestExecEnv(t *testing.T) {
	in := []string{"A=1", "LISTEN_PID=9", "CORRAL_ACTIVATE_NODE_CHANNEL_FD=3", "CORRAL_ACTIVATE_NODE_CHANNEL_SERIALIZATION_MODE=json",
		"CORRAL_ACTIVATE_NODE_UNIQUE_ID=1", "CORRAL_ACTIVATE_X=2", "LISTEN_FDS=1", "LISTEN_PID=8", "B=LISTEN_PID=1"}
	want := []string{"A=1", "NODE_CHANNEL_FD=3", "NODE_CHANNEL_SERIALIZATION_MODE=json", "NODE_UNIQUE_ID=1",
		"CORRAL_ACTIVATE_X=2", "LISTEN_FDS=1", "B=LISTEN_PID=1", "LISTEN_PID=42"}
	if got := execEnv(in, 42); !reflect.DeepEqual(got, want) {
		t.Errorf("execEnv = %q, want %q", got, want)
	}
}
