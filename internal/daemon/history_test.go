package daemon

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/testutil"
)

func TestHistoryRingKeepsTheNewestSamples(t *testing.T) {
	var h history
	t0 := time.Unix(1_000_000, 0)
	for i := 0; i < historyLen+5; i++ {
		h.add(t0.Add(time.Duration(i)*time.Second), float64(i%100)+0.25, uint64(i)<<20)
	}
	all := h.samples(0)
	if len(all) != historyLen {
		t.Fatalf("%d samples kept, want %d", len(all), historyLen)
	}
	if all[0].Time != t0.Unix()+5 || all[len(all)-1].Time != t0.Unix()+historyLen+4 {
		t.Fatalf("kept %d..%d, want the newest", all[0].Time, all[len(all)-1].Time)
	}
	if last := all[len(all)-1]; last.Memory != uint64(historyLen+4)<<20 || last.CPU != float64((historyLen+4)%100)+0.2 {
		t.Fatalf("last sample %+v", last)
	}
	if got := h.samples(t0.Unix() + historyLen + 2); len(got) != 2 {
		t.Fatalf("since filter kept %d, want 2", len(got))
	}
}

// TestHistoryRecordsARealProcess samples a real process and reads its history over the API type.
func TestHistoryRecordsARealProcess(t *testing.T) {
	m := newTestManager(t, Config{SampleInterval: 20 * time.Millisecond})
	p := startSleepers(t, m, goApp(t, "sleeper", "sleep", nil))[0]
	var got []api.ProcHistory
	testutil.WaitFor(t, 10*time.Second, "two samples", func() bool {
		var err error
		got, err = m.History(context.Background(), api.HistoryRequest{Targets: []string{"sleeper"}})
		return err == nil && len(got) == 1 && len(got[0].Samples) >= 2
	})
	if got[0].PMID != p.PMID || got[0].Samples[0].Memory == 0 {
		t.Fatalf("history %+v: want pm_id %d with a resident size", got[0], p.PMID)
	}
	if _, err := m.History(context.Background(), api.HistoryRequest{Targets: []string{"nosuch"}}); err == nil {
		t.Fatal("unknown target accepted")
	}
}

// TestSampleRecSize keeps the per-instance history at 12 bytes a sample (historyLen of them per
// instance, issue 13's memory budget).
func TestSampleRecSize(t *testing.T) {
	if n := unsafe.Sizeof(sampleRec{}); n != 12 {
		t.Fatalf("sampleRec is %d bytes, want 12", n)
	}
	var h history
	at := time.Unix(1_800_000_000, 0)
	h.add(at, 12.34, 5<<20)
	got := h.samples(0)
	if len(got) != 1 || got[0].Time != at.Unix() || got[0].CPU != 12.3 || got[0].Memory != 5<<20 {
		t.Fatalf("samples = %+v", got)
	}
	if len(h.samples(at.Unix())) != 0 {
		t.Fatal("a sample at since is returned")
	}
}
