// Package ecosystem loads PM2 ecosystem files (JSON, YAML and JavaScript configs) into
// appspec.App values, and selects apps and environments from them as `--only` and `--env` do.
//
// JavaScript configs are evaluated in an embedded interpreter with small shims for require('path'),
// require('os'), require('url'), process.env, __dirname and __filename; ES module syntax is rewritten
// to CommonJS first. A config that requires anything else is handed to node, when node is on PATH.
package ecosystem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// File is a loaded ecosystem file.
type File struct {
	// Path is the file's path as given to Load.
	Path string
	// Apps holds the apps in file order, normalised and validated. Each App.Env is the file's env
	// block alone; the env_<name> blocks are in App.EnvSets.
	Apps []appspec.App
	// DeployEnv holds the deploy.<name>.env blocks, keyed by <name>; with --env <name> they are
	// applied under every app's env.
	DeployEnv map[string]map[string]string
	// Warnings are problems that did not stop the load ("file:line:col: app "x": unknown key
	// "max" ignored"), for the user.
	Warnings []string
}

// Error is a problem in an ecosystem file. Line and Column are 0 when unknown, as they are for
// keys of JavaScript configs, which are known only after evaluation.
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
	Err    error // underlying cause, or nil
}

// Error formats the error as "file:line:column: msg: cause", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// IsConfigFile reports whether path names a file that Load reads, judged by its extension.
func IsConfigFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json", ".yaml", ".yml", ".js", ".cjs", ".mjs":
		return true
	}
	return false
}

// Load reads, evaluates and normalises the ecosystem file at path. The format follows the
// extension: .json, .yaml or .yml, or .js, .cjs or .mjs for JavaScript configs. Any problem, from a
// syntax error to an unknown key or an invalid value, fails the whole load with an *Error.
func Load(path string) (*File, error) {
	return LoadContext(context.Background(), path)
}

// LoadContext is Load with a context that bounds the evaluation of JavaScript configs.
func LoadContext(ctx context.Context, path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	src, err := readLimited(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	return loadSource(ctx, path, abs, filepath.Dir(abs), src)
}

// LoadJSON loads an ecosystem given as JSON text (PM2 evaluates it as a JavaScript expression, so
// comments and trailing commas are accepted): `start -` reads one from standard input. name names
// it in errors; relative paths in it are relative to dir.
func LoadJSON(ctx context.Context, name, dir string, src []byte) (*File, error) {
	return loadSource(ctx, name+".json", filepath.Join(dir, name+".json"), dir, src)
}

// loadSource parses src, the content of the file path (abs: its absolute path; dir: the directory
// relative paths in it are relative to), by path's extension.
func loadSource(ctx context.Context, path, abs, dir string, src []byte) (*File, error) {
	var root *value
	var err error
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		root, err = parseJSON(src)
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			// PM2 evaluates .json files as JavaScript, so comments and trailing commas work there.
			if js, jerr := evalJSON5(ctx, abs, src); jerr == nil {
				root, err = js, nil
			}
		}
	case ".yaml", ".yml":
		root, err = parseYAML(src)
	case ".js", ".cjs", ".mjs":
		root, err = evalJS(ctx, abs, src)
	default:
		err = &Error{Msg: fmt.Sprintf("unsupported file type %q: want .json, .yaml, .yml, .js, .cjs or .mjs", ext)}
	}
	if err != nil {
		return nil, withFile(err, path)
	}
	n := normaliser{file: path, dir: dir, ncpu: runtime.NumCPU()}
	f, err := n.toFile(root)
	if err != nil {
		return nil, err
	}
	f.Path = path
	f.Warnings = n.warnings
	return f, nil
}

// MaxFileSize bounds the size of an ecosystem file. Real ones are a few kilobytes; the bound keeps
// a runaway or hostile file from costing gigabytes of memory to parse.
const MaxFileSize = 16 << 20

// readLimited reads the file at path, refusing one larger than limit bytes with an *Error.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if int64(len(src)) > limit {
		size := fmt.Sprintf("larger than %d MB", limit>>20)
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fmt.Sprintf("%.1f MB", float64(fi.Size())/(1<<20))
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("the file is too large (%s): ecosystem files are limited to %d MB", size, limit>>20)}
	}
	return src, nil
}

// withFile names path in err.
func withFile(err error, path string) error {
	if e, ok := err.(*Error); ok {
		e.File = path
		return e
	}
	return &Error{File: path, Msg: "load", Err: err}
}

// Select returns copies of the apps named in only (all apps when only is empty; names may also be
// comma-separated), with the environment envName applied when it is not empty: each app's env
// becomes deploy.<envName>.env, overridden by env, overridden by env_<envName>, as in PM2. A name in
// only that no app has, or an envName that neither an env_<envName> block of a selected app nor a
// deploy entry defines, is an error.
func (f *File) Select(only []string, envName string) ([]appspec.App, error) {
	want := map[string]bool{}
	for _, o := range only {
		for n := range strings.SplitSeq(o, ",") {
			if n = strings.TrimSpace(n); n != "" {
				want[n] = true
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if !slices.ContainsFunc(f.Apps, func(a appspec.App) bool { return a.Name == n }) {
			return nil, fmt.Errorf("%s: no app named %q (apps: %s)", f.Path, n, strings.Join(f.names(), ", "))
		}
	}
	var out []appspec.App
	envKnown := f.DeployEnv[envName] != nil
	for _, a := range f.Apps {
		if len(want) > 0 && !want[a.Name] {
			continue
		}
		if _, ok := a.EnvSets[envName]; ok {
			envKnown = true
		}
		out = append(out, cloneApp(a))
	}
	if envName == "" {
		return out, nil
	}
	if !envKnown {
		return nil, fmt.Errorf("%s: no env_%s block in the selected apps", f.Path, envName)
	}
	for i := range out {
		a := &out[i]
		env := map[string]string{}
		maps.Copy(env, f.DeployEnv[envName])
		maps.Copy(env, a.Env)
		maps.Copy(env, a.EnvSets[envName])
		if len(env) > 0 {
			a.Env = env
		}
	}
	return out, nil
}

func (f *File) names() []string {
	var ns []string
	for _, a := range f.Apps {
		if !slices.Contains(ns, a.Name) {
			ns = append(ns, a.Name)
		}
	}
	return ns
}

// cloneApp copies a so that changing the copy's maps and slices leaves a unchanged.
func cloneApp(a appspec.App) appspec.App {
	a.Args = slices.Clone(a.Args)
	a.InterpreterArgs = slices.Clone(a.InterpreterArgs)
	a.Listen = slices.Clone(a.Listen)
	a.StopExitCodes = slices.Clone(a.StopExitCodes)
	a.Watch = slices.Clone(a.Watch)
	a.IgnoreWatch = slices.Clone(a.IgnoreWatch)
	a.Env = maps.Clone(a.Env)
	if a.EnvSets != nil {
		sets := make(map[string]map[string]string, len(a.EnvSets))
		for k, v := range a.EnvSets {
			sets[k] = maps.Clone(v)
		}
		a.EnvSets = sets
	}
	if a.Autorestart != nil {
		v := *a.Autorestart
		a.Autorestart = &v
	}
	if a.Autostart != nil {
		v := *a.Autostart
		a.Autostart = &v
	}
	a.ReadinessProbe, a.LivenessProbe = a.ReadinessProbe.Clone(), a.LivenessProbe.Clone()
	a.DependsOn = slices.Clone(a.DependsOn)
	return a
}
