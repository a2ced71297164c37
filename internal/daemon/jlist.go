package daemon

import (
	"context"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/pm2json"
)

var (
	_ api.JLister   = (*Manager)(nil)
	_ api.RowLister = (*Manager)(nil)
)

// JList renders `jlist` here, so that the CLI copies PM2's JSON out instead of decoding every
// instance's environment from a ProcsResponse and encoding it again (api/fastlist.go).
func (m *Manager) JList(ctx context.Context) ([]byte, error) {
	procs, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	return pm2json.JList(procs)
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
