package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/testutil"
)

var settleSink []byte

// TestMemSettlerReleasesFreeHeapAndTrimsAfterACollection: free heap left by a burst is released
// on the first quiet tick (no collection since the previous one) past settleReleaseGap, a
// collection leads to a page trim past settleTrimGap, and nothing happens again before the gaps
// have passed. (What the release gives back is measured by bench/mem.sh, not here: other
// goroutines of the test binary allocate meanwhile.)
func TestMemSettlerReleasesFreeHeapAndTrimsAfterACollection(t *testing.T) {
	t0 := time.Now()
	s := newMemSettler()
	s.lastRelease, s.lastTrim = t0, t0 // as if it had just settled
	if rel, trim, err := s.tick(t0.Add(time.Second)); rel || trim || err != nil {
		t.Fatalf("tick within the gaps: released %v, trimmed %v, err %v", rel, trim, err)
	}
	burst := func() {
		for i := 0; i < 64; i++ { // 16 MB of garbage
			settleSink = make([]byte, 256<<10)
			settleSink[0] = 1
		}
		settleSink = nil
		runtime.GC()
	}
	// The tick right after a collection is not quiet: no release, but the collection's pages are
	// trimmed (past settleTrimGap).
	burst()
	at := t0.Add(3 * time.Second)
	if rel, trim, err := s.tick(at); rel || !trim || err != nil {
		t.Fatalf("tick right after a collection: released %v, trimmed %v, err %v; want a trim only", rel, trim, err)
	}
	// A quiet tick after a burst releases the free heap and trims after its own collection at once.
	// (The scavenger may have returned the first burst meanwhile: another one, and the settler
	// is told that a tick has passed since its collection.)
	burst()
	free := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(free)
	if value(free[0]) < settleFreeMin {
		t.Skipf("only %d bytes of free heap resident after the burst: the scavenger was quicker", value(free[0]))
	}
	metrics.Read(s.samples)
	s.prevGC = value(s.samples[0])
	at = at.Add(time.Second)
	released, trimmed, err := s.tick(at)
	if err != nil {
		t.Fatal(err)
	}
	if !released || !trimmed {
		t.Fatalf("quiet tick after a burst: released %v, trimmed %v; want both", released, trimmed)
	}
	if rel, trim, _ := s.tick(at.Add(time.Second)); rel || trim {
		t.Fatalf("tick a second later: released %v, trimmed %v; want neither (rate limits)", rel, trim)
	}
	runtime.GC()
	s.tick(at.Add(2 * time.Second)) // not quiet (or, with other collections around, not yet)
	if _, trim, _ := s.tick(at.Add(settleTrimGap - time.Second)); trim {
		t.Fatal("trimmed again within settleTrimGap")
	}
}

// settleLog collects the daemon's "memory settled" records.
type settleLog struct {
	mu      sync.Mutex
	trimmed int
}

func (l *settleLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *settleLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *settleLog) WithGroup(string) slog.Handler            { return l }
func (l *settleLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "memory settled" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "trimmed_pages" && a.Value.Bool() {
			l.mu.Lock()
			l.trimmed++
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *settleLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.trimmed
}

// TestSamplerSettlesMemoryWhileAProcessRuns: with TrimMemory, the sampler goroutine trims the
// binary's pages after collections while it samples a real process (run it with -race: the
// settler runs beside the API and the process's goroutines), and the process stays online and
// sampled throughout.
func TestSamplerSettlesMemoryWhileAProcessRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for two trims, settleTrimGap apart")
	}
	l := &settleLog{}
	m := newTestManager(t, Config{SampleInterval: 20 * time.Millisecond, TrimMemory: true, Logger: slog.New(l)})
	p := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))[0]
	testutil.WaitFor(t, 3*settleTrimGap, "two trims", func() bool {
		runtime.GC() // a collection to trim after
		_, err := m.History(context.Background(), api.HistoryRequest{})
		return err == nil && l.count() >= 2
	})
	procs, err := m.List(context.Background())
	if err != nil || len(procs) != 1 || procs[0].PID != p.PID || procs[0].Status != string(StatusOnline) {
		t.Fatalf("after settling: %+v, %v; want pid %d online", procs, err, p.PID)
	}
}

// Without a collection, a quiet tick trims when the binary's resident pages have grown by
// settleFileGrowth over the working set measured one tick after the last trim, and not for less.
func TestMemSettlerTrimsWhenBinaryPagesGrow(t *testing.T) {
	s := newMemSettler()
	file := int64(3 << 20)
	s.fileRSS = func() (int64, error) { return file, nil }
	t0 := time.Now().Add(-time.Hour)
	s.lastRelease, s.lastTrim = time.Now().Add(time.Hour), t0 // no release in this test
	at := t0
	tick := func() bool {
		at = at.Add(time.Second)
		s.prevGC = value(s.samples[0]) // pretend quiet: no collection counted since the last tick
		metrics.Read(s.samples)
		s.prevGC, s.trimGC = value(s.samples[0]), value(s.samples[0])
		_, trim, err := s.tick(at)
		if err != nil {
			t.Fatal(err)
		}
		return trim
	}
	if tick() {
		t.Fatal("trimmed at the first tick (it measures the working set)")
	}
	file += settleFileGrowth / 2
	if tick() {
		t.Fatal("trimmed after a growth under settleFileGrowth")
	}
	file += settleFileGrowth
	for i := 0; i < 5 && !tick(); i++ {
		if i == 4 {
			t.Fatal("no trim after the binary's pages grew by more than settleFileGrowth")
		}
	}
	file = 1 << 20 // the trim dropped them; the next tick measures the working set again
	if tick() {
		t.Fatal("trimmed again right after a trim")
	}
}
