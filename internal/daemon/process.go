package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/ipc"
	"golang.org/x/sys/unix"
)

// signals records the start-up milestones of one process. Each channel is closed once.
type signals struct {
	online       chan struct{} // the process runs (fork, listen) or reported 'online' (cluster)
	ready        chan struct{} // the process sent the IPC message "ready"
	disconnected chan struct{} // cluster: the worker's channel closed
	onlineOnce   sync.Once
	readyOnce    sync.Once
	discOnce     sync.Once
	d            drainSignals // the drain's report (drain.go)
}

func newSignals() *signals {
	return &signals{online: make(chan struct{}), ready: make(chan struct{}), disconnected: make(chan struct{})}
}

func (s *signals) markOnline()       { s.onlineOnce.Do(func() { close(s.online) }) }
func (s *signals) markReady()        { s.readyOnce.Do(func() { close(s.ready) }) }
func (s *signals) markDisconnected() { s.discOnce.Do(func() { close(s.disconnected) }) }

// workerSignals maps the workers of one cluster.Primary to their signals. The Primary's event
// handlers (OnOnline, OnDisconnect, OnMessage) run on the Primary's event goroutine and touch only
// this registry, whose mutex is a leaf: they never take m.mu, so that the daemon's lock and the
// Primary's never wait for each other. An event may arrive before ForkWith returns, hence the
// lazy creation.
type workerSignals struct {
	mu sync.Mutex
	m  map[*cluster.Worker]*signals
}

func (ws *workerSignals) get(w *cluster.Worker) *signals {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[*cluster.Worker]*signals)
	}
	s := ws.m[w]
	if s == nil {
		s = newSignals()
		ws.m[w] = s
	}
	return s
}

func (ws *workerSignals) drop(w *cluster.Worker) {
	ws.mu.Lock()
	delete(ws.m, w)
	ws.mu.Unlock()
}

// isReady reports whether an IPC message is the string "ready" (process.send('ready')).
func isReady(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte(`"ready"`))
}

// run is one process of an instance: the current one, a replacement being started by a reload,
// or an old one being retired.
//
// Its fields are written before forked is closed (or under m.mu) and only read after: by the
// watchers once they have waited for forked, by everyone else under m.mu.
type run struct {
	in        *instance
	pid       int // also the process group id (Setpgid); 0 until forked is closed
	startedAt time.Time
	mode      execMode

	// forked is closed once the process exists (pid, cmd or worker set) or could not be started
	// (startErr set, and done closed). Fork and listen processes are started by spawn itself; a
	// cluster worker is forked on a goroutine, without m.mu (see forkWorker).
	forked   chan struct{}
	startErr error

	// Copied from the app at spawn time, so the watchers need no lock.
	waitReady           bool
	listenTimeout       time.Duration
	killTimeout         time.Duration
	killSignal          syscall.Signal
	shutdownWithMessage bool
	drain               bool          // the process loads the connection drain (drain.go)
	drainTimeout        time.Duration // its bound

	cmd    *exec.Cmd       // fork and listen modes
	worker *cluster.Worker // cluster mode
	ch     *ipc.Channel    // Node IPC channel of fork/listen node apps
	sig    *signals
	health *runHealth // probes and notify socket (health.go); nil without them

	done     chan struct{} // closed once the process has been reaped; exitCode/exitSig valid then
	exitCode int
	exitSig  syscall.Signal

	stopReq  chan struct{} // closed once a stop was requested (askStop sends the signal or message)
	stopOnce sync.Once
	stopAt   time.Time     // when the stop was requested; written before stopReq is closed
	finished chan struct{} // closed after the Manager processed the exit (group gone, state set)

	stdoutFD, stderrFD, ipcFD int

	// superviseOnce starts supervise on the first of its events (startSupervise, stop.go).
	superviseOnce sync.Once

	// stdin is the write end of a fork or listen process's standard input (PM2's send and
	// attach), nil for cluster workers and adopted processes; closed when the process exits.
	// stdinMu guards it (a leaf lock, never held with m.mu).
	stdinMu sync.Mutex
	stdin   *os.File

	// Under a keeper (keeperstore.go): the process's start time (clock ticks since boot, against
	// pid reuse), the names of its fds in the keeper's store, and whether an earlier daemon
	// started it (adopt.go).
	procStart                 uint64
	outName, errName, ipcName string
	adopted                   bool
	// Cluster workers, for the state: the worker's ID, and (written under m.mu once it listens)
	// the handle keys of its sockets.
	workerID  int
	keys      []string
	listening bool
}

// send delivers an IPC message to the process, if it has a channel.
func (r *run) send(msg any) error {
	switch {
	case r.worker != nil:
		return r.worker.Send(msg)
	case r.ch != nil:
		return r.ch.Send(msg)
	}
	return errors.New("no IPC channel")
}

// exitDescription says how the process ended, for notes and errors.
func (r *run) exitDescription() string {
	if r.startErr != nil {
		return "could not be started (" + r.startErr.Error() + ")"
	}
	if r.exitSig != 0 {
		return "was killed by " + unix.SignalName(r.exitSig)
	}
	return "exited with code " + strconv.Itoa(r.exitCode)
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// fdOf returns the descriptor number behind c without changing its mode (unlike os.File.Fd,
// which makes it blocking).
func fdOf(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// appendNote adds a note, keeping the latest few.
func appendNote(notes []string, note string) []string {
	const keep = 5
	notes = append(notes, note)
	if len(notes) > keep {
		notes = append([]string(nil), notes[len(notes)-keep:]...)
	}
	return notes
}
