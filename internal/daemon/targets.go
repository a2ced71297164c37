package daemon

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/api"
)

// targets resolves target strings to instances, ordered by pm_id and without duplicates:
// "all", a numeric pm_id, an app name, a namespace, or /regex/ on app names. Any target that
// matches nothing is an error wrapping api.ErrUnknownTarget (nothing is returned then).
func (m *Manager) targets(targets []string) ([]*instance, error) {
	if len(targets) == 0 {
		return nil, errors.New("no target given (use a name, a pm_id, a namespace or \"all\")")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[*instance]bool{}
	var out []*instance
	add := func(in *instance) {
		if !seen[in] {
			seen[in] = true
			out = append(out, in)
		}
	}
	var unknown []error
	for _, t := range targets {
		t = strings.TrimSpace(t)
		n := len(out)
		hit := false
		switch {
		case t == "all":
			for _, in := range m.procs {
				add(in)
				hit = true
			}
		case len(t) > 2 && strings.HasPrefix(t, "/") && strings.HasSuffix(t, "/"):
			re, err := regexp.Compile(t[1 : len(t)-1])
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", t, err)
			}
			for _, in := range m.procs {
				if re.MatchString(in.st.Name) {
					add(in)
					hit = true
				}
			}
		default:
			if id, err := strconv.Atoi(t); err == nil {
				if in := m.procs[id]; in != nil {
					add(in)
					hit = true
				}
			}
			for _, in := range m.procs {
				if in.st.Name == t || in.st.Namespace == t {
					add(in)
					hit = true
				}
			}
		}
		if !hit && len(out) == n {
			unknown = append(unknown, api.UnknownTargetError(t))
		}
	}
	if len(unknown) > 0 {
		return nil, errors.Join(unknown...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].st.PMID < out[j].st.PMID })
	return out, nil
}
