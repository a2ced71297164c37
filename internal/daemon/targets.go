package daemon

import "github.com/corralhq/corral/internal/api"

// targets resolves target strings to instances by api.Match, the one definition of a target:
// "all", a numeric pm_id, an app name, a namespace, or /regex/ on app names. The instances are
// ordered by pm_id, without duplicates. Any target that matches nothing is an error wrapping
// api.ErrUnknownTarget (nothing is returned then).
func (m *Manager) targets(targets []string) ([]*instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	procs := make([]api.Proc, 0, len(m.procs))
	for _, in := range m.procs {
		procs = append(procs, api.Proc{PMID: in.st.PMID, Name: in.st.Name, Namespace: in.st.Namespace, ExecPath: in.app.res.execPath})
	}
	matched, err := api.Match(procs, targets)
	if err != nil {
		return nil, err
	}
	out := make([]*instance, len(matched))
	for i, p := range matched {
		out[i] = m.procs[p.PMID]
	}
	return out, nil
}
