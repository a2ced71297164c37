package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
)

// TestFastPathPrintsWhatTheTreePrints: `ls` (each alias) and `jlist` given alone run without the
// command tree (fastCommand) and print what they print with it (forced by --silent=false); errors
// too.
func TestFastPathPrintsWhatTheTreePrints(t *testing.T) {
	f := &apitest.Fake{}
	if _, err := f.Start(context.Background(), []appspec.App{
		{Name: "web", Script: "/srv/app.js", Instances: 2, Env: map[string]string{"PORT": "3000"}},
		{Name: "job", Script: "/srv/job.sh"},
	}, api.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stop(context.Background(), []string{"job"}); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"ls", "list", "l", "ps", "status", "jlist", "--version", "-v"} {
		if a.fastCommand([]string{cmd}) == nil {
			t.Errorf("%s: no fast path", cmd)
		}
		var fastOut, treeOut string
		for range 3 { // an uptime may tick between the two runs
			code, out, stderr := runFake(t, f, t.TempDir(), nil, cmd)
			if code != 0 || stderr != "" {
				t.Fatalf("%s: exit %d: %s", cmd, code, stderr)
			}
			fastOut = out
			code, out, stderr = runFake(t, f, t.TempDir(), nil, cmd, "--silent=false")
			if code != 0 || stderr != "" {
				t.Fatalf("%s --silent=false: exit %d: %s", cmd, code, stderr)
			}
			treeOut = out
			if fastOut == treeOut {
				break
			}
		}
		if fastOut != treeOut || len(fastOut) < 50 && !strings.HasPrefix(cmd, "-") || fastOut == "" {
			t.Errorf("%s alone printed\n%s\nwith the tree\n%s", cmd, fastOut, treeOut)
		}
	}
	for _, args := range [][]string{{"ls", "--sort", "name"}, {"jlist", "-h"}, {"--version", "x"}, {"-V"}, {"start"}, {}} {
		if a.fastCommand(args) != nil {
			t.Errorf("%q: fast path taken", args)
		}
	}

	broken := failingList{Fake: &apitest.Fake{}}
	for _, cmd := range []string{"ls", "jlist"} {
		code, _, stderr := runFake(t, broken, t.TempDir(), nil, cmd)
		code2, _, stderr2 := runFake(t, broken, t.TempDir(), nil, cmd, "--silent=false")
		if code != 1 || code2 != 1 || stderr != stderr2 || stderr != "[corral] daemon on fire\n" {
			t.Errorf("%s failing: exit %d %q; with the tree: exit %d %q", cmd, code, stderr, code2, stderr2)
		}
	}
}

type failingList struct{ *apitest.Fake }

func (failingList) List(context.Context) ([]api.Proc, error) {
	return nil, errors.New("daemon on fire")
}
