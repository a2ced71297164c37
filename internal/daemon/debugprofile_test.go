package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/testutil"
)

// The debug-only profiling writes a CPU profile and an execution trace in the window the environment
// asks for, and nothing when it does not ask.
func TestDebugProfileWritesTheFilesAsked(t *testing.T) {
	if d := startDebugProfile(slog.New(slog.DiscardHandler)); d != nil {
		t.Fatal("profiling started with no CORRAL_DEBUG_* variable set")
	}
	dir := t.TempDir()
	cpu, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "trace.out")
	t.Setenv("CORRAL_DEBUG_CPUPROFILE", cpu)
	t.Setenv("CORRAL_DEBUG_TRACE", tr)
	t.Setenv("CORRAL_DEBUG_PROFILE_AFTER", "10ms")
	t.Setenv("CORRAL_DEBUG_PROFILE_FOR", "1h")
	d := startDebugProfile(slog.New(slog.DiscardHandler))
	testutil.WaitFor(t, 10*time.Second, "the profile to start", func() bool {
		_, err := os.Stat(tr)
		return err == nil
	})
	d.stop()
	d.stop() // only the first counts
	for _, f := range []string{cpu, tr} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Fatalf("%s is empty", f)
		}
	}
}
