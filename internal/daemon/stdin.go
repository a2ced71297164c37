package daemon

import (
	"context"
	"fmt"
	"time"
)

// stdinTimeout bounds a write to an app's standard input (an app that does not read it fills
// the pipe).
const stdinTimeout = 2 * time.Second

// SendLine writes line and a newline to the standard input of the one instance target names
// (PM2's send; attach sends each line it reads). Only fork-mode (and listen-mode) processes
// started by this daemon have one: not cluster workers, which share the primary's, nor processes
// adopted from an earlier daemon.
func (m *Manager) SendLine(ctx context.Context, target, line string) error {
	ins, err := m.targets([]string{target})
	if err != nil {
		return err
	}
	if len(ins) != 1 {
		return fmt.Errorf("send: %s names %d processes; give one pm_id", target, len(ins))
	}
	in := ins[0]
	m.mu.Lock()
	r := in.run
	name, id := in.st.Name, in.st.PMID
	m.mu.Unlock()
	if r == nil {
		return fmt.Errorf("send: %s (pm_id %d) is not running", name, id)
	}
	return r.writeStdin(line+"\n", name, id)
}

// writeStdin writes s to the process's standard input; name and id name it in errors.
func (r *run) writeStdin(s, name string, id int) error {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin == nil {
		switch {
		case r.mode == modeCluster:
			return fmt.Errorf("send: %s (pm_id %d) is a cluster instance; only fork-mode apps have a standard input to write to", name, id)
		case r.adopted:
			return fmt.Errorf("send: %s (pm_id %d) was started by an earlier daemon; its standard input is not available (restart it)", name, id)
		}
		return fmt.Errorf("send: %s (pm_id %d) has no standard input (exited)", name, id)
	}
	_ = r.stdin.SetWriteDeadline(time.Now().Add(stdinTimeout))
	if _, err := r.stdin.WriteString(s); err != nil {
		return fmt.Errorf("send to %s (pm_id %d): %w", name, id, err)
	}
	return nil
}

// closeStdin closes the process's standard input (it has exited).
func (r *run) closeStdin() {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin != nil {
		r.stdin.Close()
		r.stdin = nil
	}
}
