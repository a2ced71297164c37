package api

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// Targets: what the arguments of stop, restart, reload, delete, reset,
// sendSignal, flush and logs may name. This file is their one definition; the
// daemon, the CLI and the test fake all resolve targets with Match.
//
//   - "all": every process;
//   - a number: the process with that pm_id;
//   - a name: every instance of the app of that name;
//   - a namespace: every process in it (an empty namespace is "default");
//   - "/regex/": every process whose app name matches the regular expression
//     (Go syntax, unanchored);
//   - an absolute path: the processes started from that script (pm_exec_path,
//     Proc.ExecPath), as PM2's `stop app.js`; the CLI makes a relative script
//     path absolute (see the CLI's resolveTargets) before it reaches Match;
//   - an ecosystem file (see IsEcosystemFile): the apps it defines. Only the
//     CLI can read the file, so it replaces the file by the names of its apps
//     before the targets reach the daemon; Match never sees one.
//
// A number that is also the name of an app (or of a namespace) names both.
// Surrounding blanks are ignored.

// ErrNoTarget is returned by Match when it is given no target at all.
var ErrNoTarget = errors.New("no process given (use an id, a name, a namespace or all)")

// Match returns the processes the targets name, ordered by pm_id and without
// duplicates. Every target must name at least one process ("all" included):
// the targets that name none are reported together, in one error wrapping
// ErrUnknownTarget per target, and no process is returned. A /regex/ that
// does not compile is an error of its own. Match does not modify procs.
func Match(procs []Proc, targets []string) ([]Proc, error) {
	if len(targets) == 0 {
		return nil, BadField("targets", ErrNoTarget)
	}
	hit := make([]bool, len(procs))
	var unknown []error
	for _, t := range targets {
		t = strings.TrimSpace(t)
		match, err := matcher(t)
		if err != nil {
			return nil, err
		}
		found := false
		for i, p := range procs {
			if match(p) {
				hit[i], found = true, true
			}
		}
		if !found {
			unknown = append(unknown, UnknownTargetError(t))
		}
	}
	if len(unknown) > 0 {
		return nil, errors.Join(unknown...)
	}
	var out []Proc
	for i, p := range procs {
		if hit[i] {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b Proc) int { return a.PMID - b.PMID })
	return out, nil
}

// matcher returns the predicate of one (trimmed) target.
func matcher(t string) (func(Proc) bool, error) {
	if t == "all" {
		return func(Proc) bool { return true }, nil
	}
	if expr, ok := RegexTarget(t); ok {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, BadField("targets", fmt.Errorf("target %s: %w", t, err))
		}
		return func(p Proc) bool { return re.MatchString(p.Name) }, nil
	}
	id, err := strconv.Atoi(t)
	isID := err == nil
	isPath := strings.HasPrefix(t, "/")
	return func(p Proc) bool {
		return (isID && p.PMID == id) || p.Name == t || namespaceOf(p) == t || (isPath && p.ExecPath == t)
	}, nil
}

// RegexTarget reports whether target is a "/regex/" target and returns the
// expression between the slashes.
func RegexTarget(target string) (expr string, ok bool) {
	if len(target) > 2 && strings.HasPrefix(target, "/") && strings.HasSuffix(target, "/") {
		return target[1 : len(target)-1], true
	}
	return "", false
}

// namespaceOf returns p's namespace, "default" when unset.
func namespaceOf(p Proc) string {
	if p.Namespace == "" {
		return appspec.DefaultNamespace
	}
	return p.Namespace
}

// Lookup returns the processes ref names when only a pm_id or an app name is
// accepted (describe, and start of an app that exists): no "all", namespace
// or regex. The result is nil when ref names nothing.
func Lookup(procs []Proc, ref string) []Proc {
	var out []Proc
	for _, p := range procs {
		if p.Name == ref || strconv.Itoa(p.PMID) == ref {
			out = append(out, p)
		}
	}
	return out
}

// IsEcosystemFile reports whether a target (or start argument) names an
// ecosystem file, by its name: *.config.js, *.config.cjs, *.config.mjs,
// *.json, *.yaml or *.yml, in any case; or "-", one on standard input.
func IsEcosystemFile(s string) bool {
	if s == "-" { // an ecosystem JSON on standard input (PM2's `start -`)
		return true
	}
	l := strings.ToLower(s)
	for _, suf := range []string{".config.js", ".config.cjs", ".config.mjs", ".json", ".yaml", ".yml"} {
		if strings.HasSuffix(l, suf) {
			return true
		}
	}
	return false
}
