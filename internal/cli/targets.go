package cli

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/api"
)

// resolveTargets expands the targets of stop/restart/... (see api.Match for
// what a target is): ecosystem files become the names of their apps (with
// --only), /regex/ the names that match; ids, names, namespaces and "all" go
// to the daemon as they are. Expanding regexes here lets the commands print
// the names they act on.
func (a *app) resolveTargets(ctx context.Context, b api.Backend, targets []string, only string) ([]string, error) {
	if len(targets) == 0 {
		return nil, api.ErrNoTarget
	}
	var out []string
	var procs []api.Proc
	for _, t := range targets {
		if api.IsEcosystemFile(t) {
			apps, err := a.loadEcosystem(t, only, "")
			if err != nil {
				return nil, err
			}
			for _, app := range apps {
				out = append(out, app.Name)
			}
			continue
		}
		_, isRegex := api.RegexTarget(t)
		if !isRegex && !maybeScript(t) {
			out = append(out, t)
			continue
		}
		if procs == nil {
			var err error
			if procs, err = b.List(ctx); err != nil {
				return nil, err
			}
		}
		if !isRegex {
			// PM2's `stop app.js`: a script path names the processes started from it, unless
			// a name, id or namespace already says so.
			if api.Lookup(procs, t) == nil && !slices.ContainsFunc(procs, func(p api.Proc) bool { return p.Namespace == t }) {
				if abs := a.abs(t); slices.ContainsFunc(procs, func(p api.Proc) bool { return p.ExecPath == abs }) {
					t = abs
				}
			}
			out = append(out, t)
			continue
		}
		matched, err := api.Match(procs, []string{t})
		if err != nil {
			return nil, err
		}
		for _, p := range matched {
			if !slices.Contains(out, p.Name) {
				out = append(out, p.Name)
			}
		}
	}
	return slices.Compact(out), nil
}

// maybeScript reports whether a target could be a script path: it has an
// extension or a slash, and is neither "all" nor a number.
func maybeScript(t string) bool {
	if t == "all" {
		return false
	}
	if _, err := strconv.Atoi(t); err == nil {
		return false
	}
	return strings.ContainsRune(t, '/') || filepath.Ext(t) != ""
}

// isConfigArg reports whether a target or start argument names an ecosystem
// file (api.IsEcosystemFile).
func isConfigArg(s string) bool { return api.IsEcosystemFile(s) }
