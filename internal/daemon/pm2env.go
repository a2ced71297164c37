package daemon

import (
	"os"
	"sync"

	"github.com/corralhq/corral/internal/modconf"
)

// killUseMessage reports whether PM2_KILL_USE_MESSAGE is set in the daemon's environment (which is
// the environment of the command that started it, as for PM2's daemon): then every app is stopped
// with the IPC message 'shutdown' instead of a signal, as if each had shutdown_with_message. PM2
// takes any value; corral takes any value but "false" and "0".
var killUseMessage = sync.OnceValue(func() bool {
	v := os.Getenv("PM2_KILL_USE_MESSAGE")
	return v != "" && v != "false" && v != "0"
})

// moduleRotation is the log rotation the pm2-logrotate keys of module_conf.json ask for (see
// modconf.LogRotate), or none. A store that cannot be read is logged and means none.
func (m *Manager) moduleRotation() appSpecLogs {
	c, err := modconf.Load(m.cfg.Home)
	if err != nil {
		m.log.Warn("module configuration", "err", err)
		return appSpecLogs{}
	}
	r, _, ok := c.LogRotate()
	if !ok {
		return appSpecLogs{}
	}
	return appSpecLogs{maxSize: r.MaxSize, maxFiles: r.MaxFiles, daily: r.Daily}
}
