package daemon

import (
	"context"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/pm2json"
)

var _ api.JLister = (*Manager)(nil)

// JList renders `jlist` here, so that the CLI copies PM2's JSON out instead of decoding every
// instance's environment from a ProcsResponse and encoding it again (api/fastlist.go).
func (m *Manager) JList(ctx context.Context) ([]byte, error) {
	procs, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	return pm2json.JList(procs)
}
