package ecosystem

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/nodetest"
)

// manyEnvKeys returns a JSON config whose one app has n env keys.
func manyEnvKeys(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"apps": [{"name": "a", "script": "a.js", "env": {`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n%q: %q", fmt.Sprintf("KEY_%d", i), "v")
	}
	b.WriteString("}}]}\n")
	return []byte(b.String())
}

// TestManyKeysParseInLinearTime parses configs with 10,000 and 80,000 env keys in one object. The
// duplicate check used to scan every earlier key: 8 times the keys cost about 60 times the time
// (80,000 keys: 9.7 s). Linear, it is about 8 times; the test allows 24, so that a loaded machine
// or the race detector (which slow both sizes alike) do not fail it. It also loads the big one.
func TestManyKeysParseInLinearTime(t *testing.T) {
	best := func(n, runs int) time.Duration {
		src := manyEnvKeys(n)
		d := time.Duration(1<<63 - 1)
		for range runs {
			start := time.Now()
			if _, err := parseJSON(src); err != nil {
				t.Fatal(err)
			}
			d = min(d, time.Since(start))
		}
		return d
	}
	small, big := best(10000, 3), best(80000, 2)
	ratio := float64(big) / float64(small)
	t.Logf("parse: 10,000 keys %v, 80,000 keys %v: x%.1f", small, big, ratio)
	if ratio > 24 {
		t.Errorf("8 times the keys took %.1f times as long (10,000: %v, 80,000: %v): not linear", ratio, small, big)
	}

	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, manyEnvKeys(80000), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Apps[0].Env); n != 80000 {
		t.Fatalf("%d env keys, want 80000", n)
	}
	t.Logf("80,000 env keys loaded in %v", time.Since(start))
}

// TestDuplicateKeyAmongMany checks the map-based check still finds a duplicate, in JSON and YAML.
func TestDuplicateKeyAmongMany(t *testing.T) {
	src := strings.Replace(string(manyEnvKeys(1000)), `"KEY_999"`, `"KEY_3"`, 1)
	_, err := Load(writeFile(t, t.TempDir(), "dup.json", src))
	if err == nil || !strings.Contains(err.Error(), `duplicate key "KEY_3"`) {
		t.Errorf("err = %v, want a duplicate key error", err)
	}
	_, err = Load(writeFile(t, t.TempDir(), "dup.yaml", "apps:\n  - name: a\n    script: a.js\n    env:\n      A: 1\n      B: 2\n      A: 3\n"))
	if err == nil || !strings.Contains(err.Error(), `duplicate key "A"`) {
		t.Errorf("err = %v, want a duplicate key error", err)
	}
}

func BenchmarkManyEnvKeys(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.json")
	if err := os.WriteFile(path, manyEnvKeys(80000), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOversizeFile checks that a file over MaxFileSize is refused with a clear error, before any
// parsing, and that one just under it is read.
func TestOversizeFile(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "huge.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	// 60 MB of an invalid array: it cost 42 s and 4.8 GB of RSS before the limit.
	chunk := []byte(strings.Repeat(`{"name": "x", "script": "x.js"},`, 1024))
	for written := 0; written < 60<<20; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	start := time.Now()
	_, err = Load(big)
	if err == nil || !strings.Contains(err.Error(), "too large (60.0 MB): ecosystem files are limited to 16 MB") ||
		!strings.HasPrefix(err.Error(), big+": ") {
		t.Errorf("err = %v, want the size limit named", err)
	}
	t.Logf("refused in %v: %v", time.Since(start), err)

	// Just under the limit: read and parsed (padding in a string value).
	pad := strings.Repeat("x", MaxFileSize-100)
	ok := writeFile(t, dir, "ok.json", `{"name": "a", "script": "a.js", "env": {"PAD": "`+pad+`"}}`)
	if _, err := Load(ok); err != nil {
		t.Errorf("a file under the limit: %v", err)
	}
}

// TestAllTypeErrorsReported checks that a config with several bad values names every one of them,
// each with its line, not only the first.
func TestAllTypeErrorsReported(t *testing.T) {
	src := `{"apps": [
  {"name": "a", "script": "a.js",
   "instances": "many",
   "autorestart": "perhaps",
   "env": [1, 2]},
  {"name": "b", "script": ["x"], "no_such_key": 1}
]}
`
	_, err := Load(writeFile(t, t.TempDir(), "bad.json", src))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`bad.json:3:14: app "a": instances:`,
		`bad.json:4:16: app "a": autorestart:`,
		`bad.json:5:8: app "a": env:`,
		`bad.json:6:24: app "b": script:`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 4 { // the unknown key is a warning, as in PM2
		t.Errorf("%d lines, want 4:\n%s", n, msg)
	}

	// Many bad values: the first maxErrors are listed, the rest counted.
	var b strings.Builder
	b.WriteString(`{"name": "a", "script": "a.js"`)
	for i := range 30 {
		fmt.Fprintf(&b, ",\n\"env_%d\": 1", i)
	}
	b.WriteString("}\n")
	_, err = Load(writeFile(t, t.TempDir(), "many.json", b.String()))
	if err == nil || !strings.Contains(err.Error(), "... and 10 more problems") || strings.Count(err.Error(), "\n") != maxErrors {
		t.Errorf("err = %v", err)
	}
}

// TestNodeConfigLeavingChildHoldingStdout evaluates, with node, a config that leaves a detached
// child holding node's stdout. The CLI used to wait for that child (as long as it lived); now it
// returns about a second after node exits.
func TestNodeConfigLeavingChildHoldingStdout(t *testing.T) {
	nodetest.Node(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	path := writeFile(t, dir, "ecosystem.config.js", `const { spawn } = require('child_process');
const c = spawn('sleep', ['120'], { detached: true, stdio: ['ignore', 'inherit', 'inherit'] });
require('fs').writeFileSync(__dirname + '/child.pid', String(c.pid));
c.unref();
module.exports = { apps: [{ name: 'a', script: 'a.js' }] };
`)
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	start := time.Now()
	f, err := Load(path)
	took := time.Since(start)
	t.Logf("loaded in %v", took)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Apps) != 1 || f.Apps[0].Name != "a" {
		t.Errorf("apps %+v", f.Apps)
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("the config's child did not start: %v", err)
	}
	if took > evalTimeout {
		t.Errorf("took %v, more than the %v evaluation limit (the child lives 120 s)", took, evalTimeout)
	}
}
