package modconf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestStore(t *testing.T) {
	home := t.TempDir()
	c, err := Load(home)
	if err != nil || len(c) != 0 {
		t.Fatalf("empty home: %v %v", c, err)
	}
	for _, kv := range [][2]string{{"pm2-logrotate:max_size", "10M"}, {"mykey", "val"}, {"a:x", "1"}, {"a:y", "2"}} {
		if err := c.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set("a:", "x"); err == nil {
		t.Error("a: accepted")
	}
	if err := c.Save(home); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(home, FileName))
	if !strings.Contains(string(data), "\"pm2-logrotate\": {\n        \"max_size\": \"10M\"\n    }") {
		t.Errorf("layout:\n%s", data)
	}
	c, err = Load(home)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Get("pm2-logrotate:max_size"); !ok || v != "10M" {
		t.Errorf("get: %q %v", v, ok)
	}
	if v, ok := c.Get("a"); !ok || v != `{"x":"1","y":"2"}` {
		t.Errorf("get module: %q %v", v, ok)
	}
	if _, ok := c.Get("nosuch:key"); ok {
		t.Error("get of a missing key")
	}
	if !c.Unset("a:x") || c.Unset("a:x") {
		t.Error("unset")
	}
	c.Unset("a:y")
	if _, ok := c["a"]; ok {
		t.Error("empty module kept")
	}
	if got := c.Lines(); !slices.Equal(got, []string{"mykey val", "pm2-logrotate:max_size 10M"}) {
		t.Errorf("lines %q", got)
	}
	os.WriteFile(filepath.Join(home, FileName), []byte("{bad"), 0o600)
	if _, err := Load(home); err == nil {
		t.Error("a corrupt store loaded")
	}
}

func TestLogRotate(t *testing.T) {
	if _, _, ok := (Conf{}).LogRotate(); ok {
		t.Error("rotation without pm2-logrotate keys")
	}
	c := Conf{}
	c.Set("pm2-logrotate:max_size", "1K")
	r, notes, ok := c.LogRotate()
	if !ok || r != (Rotation{MaxSize: 1024, MaxFiles: 30, Daily: true}) || len(notes) != 0 {
		t.Errorf("defaults: %+v %q %v", r, notes, ok)
	}
	c.Set("pm2-logrotate:retain", "5")
	c.Set("pm2-logrotate:rotateInterval", "*/5 * * * *")
	c.Set("pm2-logrotate:compress", "true")
	r, notes, _ = c.LogRotate()
	if r != (Rotation{MaxSize: 1024, MaxFiles: 5}) || len(notes) != 2 {
		t.Errorf("set: %+v %q", r, notes)
	}
}
