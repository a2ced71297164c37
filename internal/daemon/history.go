package daemon

import (
	"context"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// historyLen is how many CPU/memory samples an instance keeps: five minutes at the default
// one-second sampling interval. A sample is 12 bytes (sampleRec; it was 16 with an int64 time
// and its padding), allocated on the instance's first sample, so 100 instances keep about 360 KB.
const historyLen = 300

// sampleRec is one recorded sample, compact: the time in seconds since the Unix epoch (unsigned
// 32 bits: until 2106), CPU in tenths of a percent, memory in KiB.
type sampleRec struct {
	unix  uint32
	memKB uint32
	cpu   uint16
}

// history is an instance's ring of recent samples. Guarded by Manager.mu (it lives in the
// instance).
type history struct {
	recs []sampleRec
	head int
}

func (h *history) add(t time.Time, cpu float64, mem uint64) {
	r := sampleRec{unix: uint32(min(max(t.Unix(), 0), 1<<32-1)), cpu: uint16(min(max(cpu*10, 0), 65535)), memKB: uint32(min(mem>>10, 1<<32-1))}
	if h.recs == nil {
		h.recs = make([]sampleRec, 0, historyLen)
	}
	if len(h.recs) < historyLen {
		h.recs = append(h.recs, r)
		return
	}
	h.recs[h.head] = r
	h.head = (h.head + 1) % historyLen
}

// samples returns the recorded samples after since (Unix seconds), oldest first.
func (h *history) samples(since int64) []api.Sample {
	n := len(h.recs)
	out := make([]api.Sample, 0, n)
	for i := 0; i < n; i++ {
		r := h.recs[(h.head+i)%n]
		if int64(r.unix) > since {
			out = append(out, api.Sample{Time: int64(r.unix), CPU: float64(r.cpu) / 10, Memory: uint64(r.memKB) << 10})
		}
	}
	return out
}

// History implements api.HistorySource: the recent CPU and memory samples of the targeted
// instances (every instance when no target is given).
func (m *Manager) History(ctx context.Context, req api.HistoryRequest) ([]api.ProcHistory, error) {
	var ins []*instance
	if len(req.Targets) > 0 {
		var err error
		if ins, err = m.targets(req.Targets); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(req.Targets) == 0 {
		for _, in := range m.procs {
			ins = append(ins, in)
		}
	}
	out := make([]api.ProcHistory, 0, len(ins))
	for _, in := range ins {
		if in.deleted {
			continue
		}
		out = append(out, api.ProcHistory{PMID: in.st.PMID, Name: in.st.Name, Samples: in.hist.samples(req.Since)})
	}
	slices.SortFunc(out, func(a, b api.ProcHistory) int { return a.PMID - b.PMID })
	return out, nil
}
