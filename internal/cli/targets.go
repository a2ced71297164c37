package cli

import (
	"context"
	"slices"

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
		if _, ok := api.RegexTarget(t); !ok {
			out = append(out, t)
			continue
		}
		if procs == nil {
			var err error
			if procs, err = b.List(ctx); err != nil {
				return nil, err
			}
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

// isConfigArg reports whether a target or start argument names an ecosystem
// file (api.IsEcosystemFile).
func isConfigArg(s string) bool { return api.IsEcosystemFile(s) }
