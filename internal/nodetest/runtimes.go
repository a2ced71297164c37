package nodetest

import (
	"os"
	"path/filepath"
	"testing"
)

// RuntimesEnv names the environment variable holding the directory where .ci/run installs Bun and Deno
// (one npm prefix each: <dir>/bun and <dir>/deno). When it is unset, <module root>/.cache/runtimes is used.
const RuntimesEnv = "CORRAL_RUNTIMES"

// RuntimesDir returns the directory that holds Bun and Deno: $CORRAL_RUNTIMES if set, else
// <module root>/.cache/runtimes. It returns "" when neither is known.
func RuntimesDir() string {
	if dir := os.Getenv(RuntimesEnv); dir != "" {
		return dir
	}
	root := ModuleRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(root, ".cache", "runtimes")
}

// BunBinary and DenoBinary return where .ci/run installs the bun and deno binaries under dir (the
// npm packages @oven/bun-linux-x64 and @deno/linux-x64-glibc ship the real binaries).
func BunBinary(dir string) string {
	return filepath.Join(dir, "bun", "node_modules", "@oven", "bun-linux-x64", "bin", "bun")
}

// DenoBinary: see BunBinary.
func DenoBinary(dir string) string {
	return filepath.Join(dir, "deno", "node_modules", "@deno", "linux-x64-glibc", "deno")
}

// Bun returns the bun binary that .ci/run installs. When it is missing it skips t, or fails it under CI.
func Bun(t testing.TB) string {
	t.Helper()
	return runtimeBinary(t, "bun", BunBinary)
}

// Deno returns the deno binary that .ci/run installs. When it is missing it skips t, or fails it under CI.
func Deno(t testing.TB) string {
	t.Helper()
	return runtimeBinary(t, "deno", DenoBinary)
}

func runtimeBinary(t testing.TB, name string, path func(string) string) string {
	t.Helper()
	dir := RuntimesDir()
	if dir == "" {
		missing(t, "%s: %s is unset and the module root was not found", name, RuntimesEnv)
		return ""
	}
	bin := path(dir)
	if err := executable(bin); err != nil {
		missing(t, "%s: %s: %v", name, bin, err)
		return ""
	}
	return bin
}
