package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/corralhq/corral/internal/modconf"
)

// TestModuleRotationFollowsTheFile: moduleRotation is cached, but every change of
// module_conf.json (written by `set` as a new file, or edited in place) is seen by the next call,
// and so is its removal.
func TestModuleRotationFollowsTheFile(t *testing.T) {
	m := newTestManager(t, Config{})
	get := func() appSpecLogs {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.moduleRotation()
	}
	if r := get(); r != (appSpecLogs{}) {
		t.Fatalf("no file: %+v", r)
	}
	c := modconf.Conf{}
	c.Set("pm2-logrotate:max_size", "1K")
	if err := c.Save(m.cfg.Home); err != nil {
		t.Fatal(err)
	}
	if r := get(); r != (appSpecLogs{maxSize: 1024, maxFiles: 30, daily: true}) {
		t.Fatalf("after set max_size: %+v", r)
	}
	if r := get(); r.maxSize != 1024 {
		t.Fatalf("cached: %+v", r)
	}
	c.Set("pm2-logrotate:retain", "5")
	if err := c.Save(m.cfg.Home); err != nil {
		t.Fatal(err)
	}
	if r := get(); r.maxFiles != 5 {
		t.Fatalf("after set retain: %+v", r)
	}
	// Edited in place (same inode): a different size is a different version.
	path := filepath.Join(m.cfg.Home, modconf.FileName)
	if err := os.WriteFile(path, []byte(`{"pm2-logrotate":{"max_size":"2K","retain":"7"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := get(); r.maxSize != 2048 || r.maxFiles != 7 {
		t.Fatalf("after an edit in place: %+v", r)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := get(); r != (appSpecLogs{}) {
		t.Fatalf("after removal: %+v", r)
	}
}
