package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/cli/clitest"
	"github.com/rogpeppe/go-internal/testscript"
)

// binDir holds the corral binary built once by TestMain, and corral-v2, the same program with
// another version (for `corral update`).
var binDir string

// v2Version is corral-v2's version.
const v2Version = "0.2.0-keeper-test"

func TestMain(m *testing.M) {
	if os.Getenv(testAppEnv) != "" { // re-executed as an app by the keeper tests
		os.Exit(testApp())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "corral-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// CORRAL_TEST_RACE=1 builds the binaries with the race detector (slow; for the daemon's own races).
	var race []string
	if os.Getenv("CORRAL_TEST_RACE") != "" {
		race = []string{"-race"}
	}
	build := exec.Command("go", append(append([]string{"build"}, race...), "-o", filepath.Join(dir, "corral"), ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build corral: %v\n", err)
		return 1
	}
	build = exec.Command("go", append(append([]string{"build"}, race...), "-o", filepath.Join(dir, "corral-v2"),
		"-ldflags", "-X github.com/corralhq/corral/internal/version.Version="+v2Version, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build corral-v2: %v\n", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// TestScripts drives the real corral binary (daemon and apps included) with
// the scripts in testdata/script, each with a private CORRAL_HOME.
func TestScripts(t *testing.T) {
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			if err := clitest.Setup(env); err != nil {
				return err
			}
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("EXAMPLES", examples)
			return nil
		},
		Cmds: clitest.Cmds(),
	})
}
