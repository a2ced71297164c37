package serve

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("home"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "f.txt"), []byte("f"), 0o644)
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	h := Handler(Config{Dir: dir, Homepage: "/index.html"})
	if code, body := get(h, "/"); code != 200 || body != "home" {
		t.Errorf("/: %d %q", code, body)
	}
	if code, _ := get(h, "/sub/"); code != 404 { // no directory listing
		t.Errorf("/sub/: %d", code)
	}
	if code, _ := get(h, "/missing"); code != 404 {
		t.Errorf("/missing: %d", code)
	}
	if code, _ := get(h, "/../../etc/passwd"); code != 404 {
		t.Errorf("escape: %d", code)
	}
	os.WriteFile(filepath.Join(dir, "404.html"), []byte("nope"), 0o644)
	if code, body := get(h, "/missing"); code != 404 || body != "nope" {
		t.Errorf("404.html: %d %q", code, body)
	}
	if _, err := FromEnv(func(k string) string {
		return map[string]string{"PM2_SERVE_PATH": dir, "PM2_SERVE_BASIC_AUTH": "true"}[k]
	}); err == nil {
		t.Error("basic auth without credentials accepted")
	}
	c, err := FromEnv(func(k string) string { return map[string]string{"PM2_SERVE_PATH": dir}[k] })
	if err != nil || c.Addr != ":8080" || c.Homepage != "/index.html" {
		t.Errorf("defaults: %+v %v", c, err)
	}
}
