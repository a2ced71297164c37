package daemon

import (
	"context"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/web"
)

// webRestoreWait is how long a daemon tries to take the dashboard's saved port back (the previous
// daemon may still hold it while it hands over and exits).
const webRestoreWait = 10 * time.Second

// startWeb creates the web dashboard's controller (internal/web) and, in the background, serves
// the dashboard again if its saved setting (web.json in the home) says it was on.
func (m *Manager) startWeb() {
	m.web = web.NewController(web.Config{Backend: m, Home: m.cfg.Home, Logger: m.log.With("component", "web")})
	m.mu.Lock()
	m.bg.Add(1) // under mu, as bg's rule asks
	m.mu.Unlock()
	go func() {
		defer m.bg.Done()
		if _, err := m.web.Restore(webRestoreWait); err != nil {
			m.log.Warn("web dashboard not restored", "err", err)
		}
	}()
}

// Web implements api.WebSource: `corral web` starts, reports or stops the dashboard.
func (m *Manager) Web(ctx context.Context, req api.WebRequest) (api.WebResponse, error) {
	return m.web.Do(ctx, req)
}
