package daemon

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

var settleSink []byte

// TestMemSettlerReleasesFreeHeapAndTrimsAfterACollection: free heap left by a burst goes back to
// the system on the first quiet tick (no collection since the previous one) past
// settleReleaseGap, a collection leads to a page trim past settleTrimGap, and nothing happens
// again before the gaps have passed.
func TestMemSettlerReleasesFreeHeapAndTrimsAfterACollection(t *testing.T) {
	t0 := time.Now()
	s := newMemSettler()
	s.lastRelease, s.lastTrim = t0, t0 // as if it had just settled
	if rel, trim, err := s.tick(t0.Add(time.Second)); rel || trim || err != nil {
		t.Fatalf("tick within the gaps: released %v, trimmed %v, err %v", rel, trim, err)
	}
	for i := 0; i < 64; i++ { // a burst: 16 MB of garbage
		settleSink = make([]byte, 256<<10)
		settleSink[0] = 1
	}
	settleSink = nil
	runtime.GC()
	free := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(free)
	if value(free[0]) < settleFreeMin {
		t.Skipf("only %d bytes of free heap resident after the burst: the scavenger was quicker", value(free[0]))
	}
	rel, trim, err := s.tick(t0.Add(settleTrimGap + time.Second))
	if rel || trim || err != nil {
		t.Fatalf("tick right after a collection (not quiet): released %v, trimmed %v, err %v", rel, trim, err)
	}
	rel, trim, err = s.tick(t0.Add(settleTrimGap + 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !rel || !trim {
		t.Fatalf("tick after a burst and a collection: released %v, trimmed %v; want both", rel, trim)
	}
	metrics.Read(free)
	if value(free[0]) >= settleFreeMin {
		t.Errorf("%d bytes of free heap still resident after the release", value(free[0]))
	}
	if rel, trim, _ := s.tick(t0.Add(settleTrimGap + 3*time.Second)); rel || trim {
		t.Fatalf("quiet tick after: released %v, trimmed %v; want neither (nothing to do)", rel, trim)
	}
	runtime.GC()
	s.tick(t0.Add(settleTrimGap + 4*time.Second)) // not quiet
	if rel, trim, _ := s.tick(t0.Add(settleTrimGap + 5*time.Second)); rel || trim {
		t.Fatalf("tick right after: released %v, trimmed %v; want neither (rate limits)", rel, trim)
	}
}
