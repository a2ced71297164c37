package daemon

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/events"
	"golang.org/x/sys/unix"
)

// A process that could not be started for want of resources is tried again, after a delay that
// starts at spawnRetryFirst and doubles up to spawnRetryMax, for as long as it takes: the
// resources come back (fds closed, memory freed) and supervision must not have ended meanwhile.
const (
	spawnRetryFirst = 500 * time.Millisecond
	spawnRetryMax   = 15 * time.Second
)

// spawnRetryNote starts the note of an instance waiting to try again; the next attempt's note
// replaces it instead of piling up.
const spawnRetryNote = "could not start for want of resources, retrying: "

// transientSpawn reports whether err, from starting a process, is a lack of resources that may
// pass: file descriptors (EMFILE, ENFILE), processes (EAGAIN) or memory (ENOMEM). A missing
// script (ENOENT), a permission (EACCES) and the like are not: they wait for the user.
func transientSpawn(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOMEM)
}

// retrySpawn puts an instance whose process could not be started for a transient reason (err)
// in waiting restart, and launches it again after the backoff. It says so in the instance's notes
// (show) and in a spawn_failed event with reason "retry". These attempts count neither as
// restarts nor toward max_restarts. The caller holds m.mu; in has no process.
func (m *Manager) retrySpawn(in *instance, err error) {
	delay := min(spawnRetryFirst<<min(in.spawnRetries, 16), spawnRetryMax)
	in.spawnRetries++
	note := fmt.Sprintf("%s%v (attempt %d; next in %s)", spawnRetryNote, err, in.spawnRetries, delay)
	if n := len(in.st.Notes); n > 0 && strings.HasPrefix(in.st.Notes[n-1], spawnRetryNote) {
		in.st.Notes[n-1] = note
	} else {
		in.st.Notes = appendNote(in.st.Notes, note)
	}
	m.setStatus(in, StatusWaitingRestart)
	m.ev.Publish(events.Event{Type: events.SpawnFailed, App: in.st.Name, PMID: events.ID(in.st.PMID),
		Reason: "retry", Message: fmt.Sprintf("%v; retrying in %s", err, delay)})
	m.log.Warn("process could not be started; retrying", "pm_id", in.st.PMID, "name", in.st.Name,
		"err", err, "attempt", in.spawnRetries, "delay", delay)
	in.timerGen++
	gen := in.timerGen
	in.timer = time.AfterFunc(delay, func() { m.spawnRetryDue(in, gen) })
}

// spawnRetryDue launches again an instance whose spawn retry delay is over, unless something else
// happened to it meanwhile (a stop, a delete, a user restart).
func (m *Manager) spawnRetryDue(in *instance, gen int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.deleted || in.timerGen != gen || in.st.Status != StatusWaitingRestart || m.shuttingDown {
		return
	}
	in.timer = nil
	if err := m.launch(in); err != nil {
		m.log.Warn("spawn retry failed", "pm_id", in.st.PMID, "name", in.st.Name, "err", err)
	}
}
