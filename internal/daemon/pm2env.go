package daemon

import (
	"os"
	"strings"
	"sync"

	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/modconf"
	"golang.org/x/sys/unix"
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

// pm2Defaults gives an app that sets no kill_signal, kill_timeout or listen_timeout the values of
// PM2's daemon-wide variables PM2_KILL_SIGNAL, PM2_KILL_TIMEOUT and PM2_GRACEFUL_LISTEN_TIMEOUT (ms),
// read from the daemon's environment (the environment of the command that started it, as for
// PM2's daemon). They become part of the app's definition, saved with it. A value that does not
// parse is ignored (Validate would refuse the app otherwise).
func pm2Defaults(spec *appspec.App) {
	if v := strings.ToUpper(strings.TrimSpace(os.Getenv("PM2_KILL_SIGNAL"))); v != "" && spec.KillSignal == "" {
		if !strings.HasPrefix(v, "SIG") {
			v = "SIG" + v
		}
		if unix.SignalNum(v) != 0 {
			spec.KillSignal = v
		}
	}
	for _, d := range []struct {
		env string
		dst *int64
	}{{"PM2_KILL_TIMEOUT", &spec.KillTimeout}, {"PM2_GRACEFUL_LISTEN_TIMEOUT", &spec.ListenTimeout}} {
		if v := os.Getenv(d.env); v != "" && *d.dst == 0 {
			if ms, err := appspec.ParseDuration(v); err == nil && ms > 0 {
				*d.dst = ms
			}
		}
	}
}
