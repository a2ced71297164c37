package appspec

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DetectFileInterpreter is DetectInterpreter for an existing file: when the extension says
// nothing, the file's first bytes do, as PM2 runs a text file without a known extension with node.
//
//   - a "#!" line naming node (`#!/usr/bin/env node`, `#!/usr/local/bin/node --flag`): "node",
//     so that node_args and cluster mode apply as to any Node script;
//   - another "#!" line: "none" (run directly) when the file is executable, else the program the
//     line names (bash, python3, ...), where PM2 would wrongly use node;
//   - no "#!" line: "none" for a binary (a NUL byte among its first bytes), else "node" (PM2's rule).
//
// A file that cannot be read gets "none" (the start then reports why).
func DetectFileInterpreter(path string) string {
	if i := DetectInterpreter(path); i != "none" {
		return i
	}
	f, err := os.Open(path)
	if err != nil {
		return "none"
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if n == 0 {
		return "none"
	}
	if prog, ok := shebangProgram(head); ok {
		if prog == "node" || strings.HasPrefix(prog, "node@") {
			return "node"
		}
		if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o111 != 0 {
			return "none"
		}
		if prog == "" {
			return "none"
		}
		return prog
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return "none"
	}
	return "node"
}

// shebangProgram returns the base name of the program a "#!" line runs (through env, when it
// is `#!/usr/bin/env [-S] prog`), and whether head starts with "#!".
func shebangProgram(head []byte) (string, bool) {
	if !bytes.HasPrefix(head, []byte("#!")) {
		return "", false
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return "", true
	}
	prog := filepath.Base(fields[0])
	if prog == "env" {
		prog = ""
		for _, f := range fields[1:] {
			if strings.HasPrefix(f, "-") || strings.Contains(f, "=") {
				continue
			}
			prog = filepath.Base(f)
			break
		}
	}
	return prog, true
}

// SourceMaps reports whether a Node app runs with --enable-source-maps (PM2's source_map_support):
// as a.SourceMapSupport says, else when a source map (script + ".map") sits next to the script.
func SourceMaps(a App, script string) bool {
	if a.SourceMapSupport != nil {
		return *a.SourceMapSupport
	}
	st, err := os.Stat(script + ".map")
	return err == nil && !st.IsDir()
}
