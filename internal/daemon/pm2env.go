package daemon

import (
	"os"
	"path/filepath"
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
// modconf.LogRotate), or none. A store that cannot be read is logged and means none. The file is
// parsed again only when its identity (inode, size, mtime) changed since the last call: a start of
// many instances stats it once per instance instead of reading and parsing it (modconf.Save
// replaces it by a rename, so every `set` gives it a new inode). The caller holds m.mu.
func (m *Manager) moduleRotation() appSpecLogs {
	key := rotationKeyOf(filepath.Join(m.cfg.Home, modconf.FileName))
	if c := &m.rotation; c.valid && c.key == key {
		return c.rot
	}
	rot := m.loadModuleRotation()
	m.rotation = rotationCache{valid: true, key: key, rot: rot}
	return rot
}

// rotationCache is the last module rotation read and the identity of the file it was read from.
type rotationCache struct {
	valid bool
	key   rotationKey
	rot   appSpecLogs
}

// rotationKey identifies one version of a file; the zero key is a file that is not there (or that
// could not be stat'ed, which loadModuleRotation then reports).
type rotationKey struct {
	ino, size, mtime int64
}

func rotationKeyOf(path string) rotationKey {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rotationKey{}
	}
	return rotationKey{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}
}

// loadModuleRotation reads module_conf.json for moduleRotation.
func (m *Manager) loadModuleRotation() appSpecLogs {
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
