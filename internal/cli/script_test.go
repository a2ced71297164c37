package cli

import (
	"os"
	"testing"

	"github.com/corralhq/corral/internal/cli/clitest"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain makes the test binary double as "corral" (with an in-memory
// process manager in its daemon) for the scripts in testdata/script.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"corral": func() { os.Exit(fakeMain()) },
	})
}

// TestScripts drives the real CLI, daemon lifecycle and control socket; only
// the process manager behind the socket is fake.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		Setup:               clitest.Setup,
		Cmds:                clitest.Cmds(),
		RequireExplicitExec: false,
	})
}
