package appspec

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectFileInterpreter(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"app.js", "console.log(1)", 0o644, "node"},
		{"envnode", "#!/usr/bin/env node\nconsole.log(1)\n", 0o644, "node"},
		{"envnodex", "#!/usr/bin/env node\nconsole.log(1)\n", 0o755, "node"},
		{"envS", "#!/usr/bin/env -S node --enable-source-maps\n", 0o644, "node"},
		{"abs", "#!/usr/local/bin/node --max-old-space-size=100\n", 0o644, "node"},
		{"bashx", "#!/bin/bash\necho hi\n", 0o755, "none"},
		{"bash", "#!/bin/bash\necho hi\n", 0o644, "bash"},
		{"py", "#!/usr/bin/env python3\nprint(1)\n", 0o644, "python3"},
		{"plain", "console.log(1)\n", 0o644, "node"},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00", 0o755, "none"},
		{"empty", "", 0o644, "none"},
	} {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		if got := DetectFileInterpreter(p); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := DetectFileInterpreter(filepath.Join(dir, "missing")); got != "none" {
		t.Errorf("missing: %q", got)
	}
}
