package daemon

import (
	"fmt"
	"slices"
)

// renameLocked files app a under newName (PM2's restart --name): the apps table and the creation
// order. The caller holds m.mu and sets a.spec (with the new name) right after, in the same
// critical section; redefine gives the instances the new name and log paths.
func (m *Manager) renameLocked(a *app, newName string) error {
	old := a.spec.Name
	if m.apps[old] != a {
		return fmt.Errorf("rename %s: the app was deleted", old)
	}
	if m.apps[newName] != nil {
		return fmt.Errorf("rename %s to %s: an app of that name exists", old, newName)
	}
	delete(m.apps, old)
	m.apps[newName] = a
	if i := slices.Index(m.appOrder, old); i >= 0 {
		m.appOrder[i] = newName
	}
	return nil
}
