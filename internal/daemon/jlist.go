package daemon

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/lstable"
)

var (
	_ api.JLister     = (*Manager)(nil)
	_ api.RowLister   = (*Manager)(nil)
	_ api.ListTexter  = (*Manager)(nil)
	_ api.JListLender = (*Manager)(nil)
)

// ListText renders `ls`'s whole output here, for the CLI's early fast path (internal/fastls):
// what the CLI prints from ListRows (lstable.WriteList of the rows as api.Row.Proc gives them
// after the trip over the socket), then the out-of-date warning.
func (m *Manager) ListText(ctx context.Context, clientVersion, daemonVersion string) ([]byte, error) {
	rows, err := m.ListRows(ctx)
	if err != nil {
		return nil, err
	}
	procs := make([]api.Proc, len(rows))
	for i, r := range rows {
		procs[i] = r.Proc()
	}
	var b bytes.Buffer
	b.Grow(256 + 160*len(rows))
	lstable.WriteList(&b, procs, time.Now())
	b.WriteString(lstable.OutOfDate(daemonVersion, clientVersion))
	return b.Bytes(), nil
}

// JList renders `jlist` here, so that the CLI copies PM2's JSON out instead of decoding every
// instance's environment from a ProcsResponse and encoding it again (api/fastlist.go).
//
// The environments, most of the answer, are encoded once per instance and environment
// (m.jlistCache, pm2json.EnvCache), not at every call: the procs given it hold the maps of the
// instances and apps themselves (procShared), which are replaced whole, never changed in place,
// so they are read here after m.mu is released.
func (m *Manager) JList(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	ins := m.sortedProcs()
	procs := make([]api.Proc, len(ins))
	keys := make([]any, len(ins))
	for i, in := range ins {
		procs[i], keys[i] = m.procShared(in), in.st.PMID // the maps tell a new instance with a reused id
	}
	m.mu.Unlock()
	return m.jlistCache.JList(procs, keys)
}

// jlistScratch is what LendJList reuses from call to call (Manager.jlistScratch, a sync.Pool: a
// daemon that nobody asks for jlist lets the collector take it back).
type jlistScratch struct {
	buf   []byte
	procs []api.Proc
	keys  []any
}

// maxKeptJList bounds the answer buffer LendJList keeps for the next call.
const maxKeptJList = 8 << 20

// LendJList renders what JList returns into a buffer it reuses and lends it to fn (the API
// server writes it out) until fn returns: at every call a whole answer (~4 KB per instance) was
// garbage, and the collections it caused were most of a polled jlist's cost in the daemon.
func (m *Manager) LendJList(ctx context.Context, fn func([]byte) error) error {
	s, _ := m.jlistScratch.Get().(*jlistScratch)
	if s == nil {
		s = &jlistScratch{}
	}
	m.mu.Lock()
	ins := m.sortedProcs()
	s.procs, s.keys = slices.Grow(s.procs[:0], len(ins))[:len(ins)], slices.Grow(s.keys[:0], len(ins))[:len(ins)]
	for i, in := range ins {
		s.procs[i], s.keys[i] = m.procShared(in), in.st.PMID
	}
	m.mu.Unlock()
	out, err := m.jlistCache.AppendJList(s.buf[:0], s.procs, s.keys)
	if err == nil {
		err = fn(out)
	}
	clear(s.procs) // holds the instances' maps
	clear(s.keys)
	if cap(out) <= maxKeptJList {
		s.buf = out[:0]
	}
	m.jlistScratch.Put(s)
	return err
}

// ListRows returns what `ls` prints of every instance: api.RowOf of List's Procs
// (TestListRowsMatchList), without copying the environments List copies.
func (m *Manager) ListRows(ctx context.Context) ([]api.Row, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ins := m.sortedProcs()
	rows := make([]api.Row, len(ins))
	for i, in := range ins {
		r := api.Row{PMID: in.st.PMID, Name: in.st.Name, Namespace: in.st.Namespace, PID: in.st.PID,
			Status: string(in.st.Status), ExecMode: in.app.spec.ExecMode, Listen: in.app.spec.Listen,
			Restarts: in.st.Restarts}
		if !in.st.StartedAt.IsZero() {
			r.StartedAt = in.st.StartedAt.UnixNano()
		}
		if in.st.Status == StatusOnline { // as proc
			r.CPU, r.Memory = in.cpu, in.mem
		}
		rows[i] = r
	}
	return rows, nil
}
