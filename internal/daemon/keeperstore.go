package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/procstat"
	"golang.org/x/sys/unix"
)

// The Manager's side of the keeper's fd store (docs/keeper.md, "Store discipline"; the hand-over
// as a whole is traced in docs/architecture.md, "How a daemon hand-over flows").
//
// Every descriptor an app depends on is stored in the keeper as soon as it exists and removed
// when it is gone for good, under a name "<kind>/<n>" (n from a counter kept in the state):
//
//	out/<n>, err/<n>  the read ends of a process's stdout and stderr pipes (every mode)
//	ipc/<n>           the daemon's end of a fork-mode Node app's IPC channel (NODE_CHANNEL_FD),
//	                  or the primary's end of a cluster worker's (Worker.ChannelFile)
//	lsn/<n>           a socket a listen-mode app's instances share (App.Listen)
//	ln/<n>            a listening socket of a cluster app's primary (Primary.ListenerFiles), by
//	                  handle key in the state
//	state             a sealed memfd with the serialised process table (savedState)
//
// Stores and removals never run under m.mu: they are queued (with a duplicate of the fd, so that
// the resource may close meanwhile) and one goroutine (run) sends them to the keeper in order,
// then the state when it changed. The state is marked dirty on every state change (setStatus,
// adopt, remove, Reset) and compared every stateSweep (backing off to stateSweepMax while
// nothing changes) as a catch-all, at most once per stateGap; it is copied under m.mu, marshalled
// outside it (marshalStateInto), and stored when it differs from the last one stored. The state
// is always stored after the fds it names, since both go through the one queue.
//
// A daemon on trial after an update may not change the store until it has told the keeper it is
// ready (KeeperReady; keeper.ErrReadOnly), so that a rollback finds it exactly as the previous
// daemon left it: the queue is held until then, unless the keeper says no update is under way
// (Recover), as after a crash or at a first start.

// stateSweep is how often the state is marshalled and compared even without a change reported,
// right after a change. Each sweep that finds the state as it was doubles the wait for the next,
// up to stateSweepMax; a reported change or a sweep that finds one starts over at stateSweep. (A
// daemon with 100 apps marshals about 1.8 MB of garbage per sweep: every 2 s it kept an idle
// daemon's heap and CPU busy.)
const (
	stateSweep    = 2 * time.Second
	stateSweepMax = 32 * time.Second
)

// stateGap is the least time between two snapshots of the state outside a hand-over: a burst of
// changes (a start of 100 apps) is stored every stateGap, not after every change (each snapshot
// marshals the whole table under m.mu, which the starts wait for).
const stateGap = 25 * time.Millisecond

// keeperCallTimeout bounds one request to the keeper.
const keeperCallTimeout = 10 * time.Second

type keeperOp struct {
	name string
	fd   int // a duplicate owned by the op; -1 for a removal
}

// keeperLink is the Manager's connection to the keeper.
type keeperLink struct {
	c      *keeper.Client
	socket string
	log    *slog.Logger
	snap   func(*bytes.Buffer) bool // marshals the state into the buffer, taking m.mu; false on failure

	// mu is a leaf lock (taken after m.mu, never before it).
	mu     sync.Mutex
	ops    []keeperOp
	dirty  bool
	held   bool // until KeeperReady
	frozen bool // after the hand-over: nothing more is sent
	gone   bool // the connection failed (the keeper died): nothing more is sent
	// recovered: Recover is done (or was never to run): the state may be stored. Before, a state
	// taken from a half-rebuilt table would replace the previous daemon's.
	recovered bool
	seq       uint64
	pumps     map[*os.File]struct{} // pipes being pumped, woken at the hand-over

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	flushMu   sync.Mutex // one flush at a time (the goroutine, or the hand-over's last one)
	lastSnap  time.Time  // when the state was last marshalled (under flushMu)
	snapTimer bool       // a kick is due at lastSnap+stateGap (under flushMu)
	// Under flushMu: the buffer the state is marshalled into (reused: with 100 apps the state is
	// ~430 KB), and the SHA-256 of the last state stored, against which a new one is compared.
	stateBuf  bytes.Buffer
	lastState [sha256.Size]byte

	quiesce atomic.Bool    // hand-over: pumps and readers stop at their next boundary
	pumpWG  sync.WaitGroup // the pumps of kept pipes

	exits *exitWatcher
}

func newKeeperLink(c *keeper.Client, socket string, lg *slog.Logger) *keeperLink {
	return &keeperLink{c: c, socket: socket, log: lg, held: true, pumps: map[*os.File]struct{}{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the queue goroutine.
func (k *keeperLink) start(snap func(*bytes.Buffer) bool) {
	k.snap = snap
	go k.run()
}

// name returns a new fd name of the given kind.
func (k *keeperLink) name(kind string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	return kind + "/" + strconv.FormatUint(k.seq, 10)
}

// store queues c's descriptor under a new name of the given kind and returns the name, or ""
// when the descriptor could not be duplicated (then it is not protected; logged).
func (k *keeperLink) store(kind string, c syscall.Conn) string {
	if k == nil {
		return ""
	}
	fd := fdOf(c)
	if fd < 0 {
		return ""
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		k.log.Warn("keeper: duplicate fd; it is not kept across a daemon restart", "kind", kind, "err", err)
		return ""
	}
	name := k.name(kind)
	k.push(keeperOp{name: name, fd: dup})
	return name
}

// remove queues the removal of name ("" does nothing).
func (k *keeperLink) remove(name string) {
	if k == nil || name == "" {
		return
	}
	k.push(keeperOp{name: name, fd: -1})
}

func (k *keeperLink) push(op keeperOp) {
	k.mu.Lock()
	if k.frozen {
		k.mu.Unlock()
		if op.fd >= 0 {
			unix.Close(op.fd)
		}
		return
	}
	k.ops = append(k.ops, op)
	k.mu.Unlock()
	k.kick()
}

// markDirty asks for the state to be stored again. It may be called with m.mu held.
func (k *keeperLink) markDirty() {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.dirty = true
	k.mu.Unlock()
	k.kick()
}

func (k *keeperLink) kick() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// recoveredNow allows the state to be stored (Recover is done).
func (k *keeperLink) recoveredNow() {
	k.mu.Lock()
	k.recovered = true
	k.dirty = true
	k.mu.Unlock()
	k.kick()
}

// unhold sends the queue from now on, before READY: the daemon is not on trial.
func (k *keeperLink) unhold() {
	k.mu.Lock()
	k.held = false
	k.mu.Unlock()
	k.kick()
}

// release ends the hold: the daemon is ready, the store is its own.
func (k *keeperLink) release() {
	k.mu.Lock()
	k.held = false
	k.dirty = true
	k.mu.Unlock()
	k.kick()
}

func (k *keeperLink) run() {
	defer close(k.done)
	// The sweep backs off while it finds nothing that was not reported (see stateSweepMax).
	interval := stateSweep
	next := time.Now().Add(interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		sweep := false
		select {
		case <-k.stop:
			return
		case <-k.wake:
		case <-t.C:
			sweep = true
			k.mu.Lock()
			k.dirty = true
			k.mu.Unlock()
		}
		stored := k.flush(nil)
		now := time.Now()
		switch {
		case sweep && !stored:
			interval = min(2*interval, stateSweepMax)
			next = now.Add(interval)
			t.Reset(interval)
		case sweep:
			interval, next = stateSweep, now.Add(stateSweep)
			t.Reset(stateSweep)
		default: // a change was reported: sweep soon again
			interval = stateSweep
			if next.After(now.Add(stateSweep)) {
				next = now.Add(stateSweep)
				t.Reset(stateSweep)
			}
		}
	}
}

// flush sends the queued operations, then the state if it is dirty. final, when not nil, is the
// state to store whatever it is (the hand-over's). It reports whether it stored a new state.
func (k *keeperLink) flush(final []byte) (stored bool) {
	k.flushMu.Lock()
	defer k.flushMu.Unlock()
	k.mu.Lock()
	if k.held || (k.frozen && final == nil) {
		k.mu.Unlock()
		return false
	}
	ops, dirty, gone := k.ops, k.dirty, k.gone
	k.ops, k.dirty = nil, false
	k.mu.Unlock()
	if gone {
		for _, op := range ops {
			if op.fd >= 0 {
				unix.Close(op.fd)
			}
		}
		return false
	}
	for _, op := range ops {
		k.send(op)
	}
	k.mu.Lock()
	recovered := k.recovered
	k.mu.Unlock()
	state := final
	if state == nil && dirty && k.snap != nil && recovered {
		if wait := stateGap - time.Since(k.lastSnap); wait > 0 {
			k.mu.Lock()
			k.dirty = true // taken at lastSnap+stateGap
			k.mu.Unlock()
			if !k.snapTimer {
				k.snapTimer = true
				time.AfterFunc(wait, func() {
					k.flushMu.Lock()
					k.snapTimer = false
					k.flushMu.Unlock()
					k.kick()
				})
			}
			return false
		}
		k.lastSnap = time.Now()
		k.stateBuf.Reset()
		if k.snap(&k.stateBuf) {
			state = k.stateBuf.Bytes() // valid until the next flush (flushMu); copied into the memfd
		}
	}
	if state == nil && dirty && !recovered {
		k.mu.Lock()
		k.dirty = true // stored once Recover is done
		k.mu.Unlock()
	}
	if state == nil {
		return false
	}
	sum := sha256.Sum256(state)
	if sum == k.lastState {
		return false
	}
	f, err := keeper.NewStateFile("corral-state", state)
	if err != nil {
		k.log.Error("keeper: state file", "err", err)
		return false
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), keeperCallTimeout)
	defer cancel()
	if err := k.c.Store(ctx, "state", f); err != nil {
		if k.failed(err) {
			return false
		}
		k.log.Error("keeper: store the state; a daemon restart now would not know the latest changes", "err", err)
		k.mu.Lock()
		k.dirty = true // try again at the next change or sweep
		k.mu.Unlock()
		return false
	}
	k.lastState = sum
	return true
}

func (k *keeperLink) send(op keeperOp) {
	ctx, cancel := context.WithTimeout(context.Background(), keeperCallTimeout)
	defer cancel()
	if op.fd < 0 {
		if _, err := k.c.Remove(ctx, op.name); err != nil && !k.failed(err) {
			k.log.Warn("keeper: remove", "name", op.name, "err", err)
		}
		return
	}
	f := os.NewFile(uintptr(op.fd), op.name)
	defer f.Close()
	if err := k.c.Store(ctx, op.name, rawConn{f}); err != nil && !k.failed(err) {
		k.log.Warn("keeper: store; this descriptor is not kept across a daemon restart", "name", op.name, "err", err)
	}
}

// failed reports whether err means the connection to the keeper is lost (not an error the keeper
// answered); the link then stops sending, after one log line. The keeper's death itself is the
// daemon's business (keeper.OnKeeperDeath).
func (k *keeperLink) failed(err error) bool {
	var ke *keeper.Error
	if errors.As(err, &ke) {
		return false
	}
	k.mu.Lock()
	was := k.gone
	k.gone = true
	k.mu.Unlock()
	if !was {
		k.log.Error("keeper: connection lost; the descriptors and the state are no longer kept", "err", err)
	}
	return true
}

// rawConn gives an *os.File's descriptor to keeper.Client.Store without making it blocking.
type rawConn struct{ f *os.File }

func (r rawConn) SyscallConn() (syscall.RawConn, error) { return r.f.SyscallConn() }

// freeze stops the queue goroutine, sends what is queued and final as the state, and drops
// everything queued later: after the hand-over the store belongs to the next daemon.
func (k *keeperLink) freeze(final []byte) {
	close(k.stop)
	<-k.done
	k.mu.Lock()
	k.held = false
	k.mu.Unlock()
	k.flush(final)
	k.mu.Lock()
	k.frozen = true
	for _, op := range k.ops {
		if op.fd >= 0 {
			unix.Close(op.fd)
		}
	}
	k.ops = nil
	k.mu.Unlock()
}

// close ends the queue goroutine after a last flush (Manager.Close).
func (k *keeperLink) close() {
	if k == nil {
		return
	}
	select {
	case <-k.stop:
		return // frozen already
	default:
	}
	k.flush(nil)
	close(k.stop)
	<-k.done
	if k.exits != nil {
		k.exits.close()
	}
}

// ---- the serialised state ----

// stateVersion is the version of savedState; a daemon refuses a state of another version (it
// then adopts nothing and leaves the processes to the keeper's exit records).
const stateVersion = 1

// savedState is the process table as the keeper keeps it for the next daemon.
type savedState struct {
	Version int          `json:"version"`
	PID     int          `json:"daemon_pid"`
	Saved   time.Time    `json:"saved_at"`
	NextID  int          `json:"next_id"`
	FDSeq   uint64       `json:"fd_seq"`
	Apps    []savedApp   `json:"apps"`
	Strays  []savedStray `json:"strays,omitempty"`
}

type savedApp struct {
	Spec      appspec.App                  `json:"spec"`
	EnvSets   map[string]map[string]string `json:"env_sets,omitempty"`
	Res       savedRes                     `json:"res"`
	Notes     []string                     `json:"notes,omitempty"`
	Listeners []string                     `json:"listeners,omitempty"` // lsn/ names, in the order of Spec.Listen
	Primary   *savedPrimary                `json:"primary,omitempty"`   // cluster mode, while the app has a primary
	Instances []savedInstance              `json:"instances"`
}

// savedPrimary is a cluster app's primary: its sockets (ln/ names by handle key) and where its
// numbering goes on (NODE_CLUSTER seq, worker IDs).
type savedPrimary struct {
	Listeners    map[string]string `json:"listeners,omitempty"`
	NextSeq      int64             `json:"next_seq"`
	NextWorkerID int               `json:"next_worker_id"`
}

type savedRes struct {
	Mode        int                 `json:"mode"`
	Interpreter string              `json:"interpreter"`
	ExecPath    string              `json:"exec_path"`
	Cwd         string              `json:"cwd"`
	Argv        []string            `json:"argv"`
	IPC         bool                `json:"ipc"`
	Cred        *syscall.Credential `json:"cred,omitempty"`
	Home        string              `json:"home,omitempty"`
	Notes       []string            `json:"notes,omitempty"`
}

type savedInstance struct {
	State       InstanceState `json:"state"`
	UserStopped bool          `json:"user_stopped,omitempty"`
	Run         *savedRun     `json:"run,omitempty"`  // the current process
	Next        *savedRun     `json:"next,omitempty"` // a reload's replacement
}

// savedRun is one process: its pid and start time (clock ticks since boot, /proc/<pid>/stat
// field 22, against pid reuse), and the names of its stored fds.
type savedRun struct {
	PID       int       `json:"pid"`
	Start     uint64    `json:"start"`
	StartedAt time.Time `json:"started_at"`
	Out       string    `json:"out,omitempty"`
	Err       string    `json:"err,omitempty"`
	IPC       string    `json:"ipc,omitempty"`
	Stopping  bool      `json:"stopping,omitempty"` // a stop was requested
	// Cluster workers.
	WorkerID  int      `json:"worker_id,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	Listening bool     `json:"listening,omitempty"`
}

// savedStray is a process of an instance that is neither its current one nor a reload's
// replacement: an old process being retired. The next daemon finishes stopping it.
type savedStray struct {
	PMID int      `json:"pm_id"`
	Run  savedRun `json:"run"`
}

func saveRes(r resolved) savedRes {
	return savedRes{Mode: int(r.mode), Interpreter: r.interpreter, ExecPath: r.execPath, Cwd: r.cwd,
		Argv: r.argv, IPC: r.ipc, Cred: r.cred, Home: r.home, Notes: r.notes}
}

func (s savedRes) resolved() resolved {
	return resolved{mode: execMode(s.Mode), interpreter: s.Interpreter, execPath: s.ExecPath, cwd: s.Cwd,
		argv: s.Argv, ipc: s.IPC, cred: s.Cred, home: s.Home, notes: s.Notes}
}

// saveRun describes r for the state, or nil when it has no process (yet). The caller holds m.mu.
func saveRun(r *run) *savedRun {
	if r == nil || r.pid == 0 || r.procStart == 0 {
		return nil
	}
	s := &savedRun{PID: r.pid, Start: r.procStart, StartedAt: r.startedAt, Out: r.outName, Err: r.errName, IPC: r.ipcName,
		WorkerID: r.workerID, Keys: r.keys, Listening: r.listening}
	select {
	case <-r.stopReq:
		s.Stopping = true
	default:
	}
	select {
	case <-r.done:
		return nil // exited: nothing to adopt
	default:
	}
	return s
}

// marshalStateInto serialises the process table into buf (the keeper link's, reused). It takes
// m.mu only to copy the table: the JSON encoding (milliseconds with 100 apps) runs outside it. It
// reports success.
//
// The environment maps are not copied but looked up in m.envc (keeperenc.go): only those that
// changed since the last snapshot are copied and encoded again.
func (m *Manager) marshalStateInto(buf *bytes.Buffer) bool {
	m.mu.Lock()
	out := m.envc.prepare(m.snapshotLocked(true, false))
	m.mu.Unlock()
	err := m.envc.resolve(&out)
	if err == nil {
		err = appendState(buf, &out)
	}
	if err != nil {
		m.log.Error("keeper: marshal the state", "err", err)
		return false
	}
	return true
}

// marshalStateLocked serialises the process table for a caller holding m.mu.
func (m *Manager) marshalStateLocked() []byte {
	return m.encodeState(m.saveStateLocked(false))
}

// saveStateLocked returns the state to store. With detach, what the table may change in place
// afterwards is copied (the environment maps and the slices, as proc copies them for List), so
// that the result may be encoded once m.mu is released. The caller holds m.mu.
func (m *Manager) saveStateLocked(detach bool) savedState {
	return m.snapshotLocked(detach, detach)
}

// snapshotLocked is saveStateLocked; with detach but not cloneEnv, the environment maps (the
// spec's Env and ShellEnv, the instances' Env) are still the table's: the caller must be done
// with them before it releases m.mu (envCache.prepare). The caller holds m.mu.
func (m *Manager) snapshotLocked(detach, cloneEnv bool) savedState {
	st := savedState{Version: stateVersion, PID: os.Getpid(), NextID: m.nextID}
	if len(m.appOrder) > 0 {
		st.Apps = make([]savedApp, 0, len(m.appOrder))
	}
	listed := map[*run]bool{}
	for _, name := range m.appOrder {
		a := m.apps[name]
		if a == nil {
			continue
		}
		sa := savedApp{Spec: a.spec, EnvSets: a.spec.EnvSets, Res: saveRes(a.res), Notes: a.notes, Listeners: a.listenerNames}
		if cloneEnv {
			sa.Spec.Env, sa.Spec.ShellEnv = maps.Clone(a.spec.Env), maps.Clone(a.spec.ShellEnv)
		}
		if detach {
			sa.EnvSets = cloneEnvSets(a.spec.EnvSets)
			sa.Spec.EnvSets = sa.EnvSets
			sa.Notes, sa.Listeners = slices.Clone(a.notes), slices.Clone(a.listenerNames)
			sa.Res.Notes = slices.Clone(sa.Res.Notes)
		}
		if p := a.primary; p != nil {
			// NextSeq and NextWorkerID are atomics: they do not take the primary's lock.
			sa.Primary = &savedPrimary{Listeners: maps.Clone(a.lnNames), NextSeq: p.NextSeq(), NextWorkerID: p.NextWorkerID()}
		}
		if len(a.instances) > 0 {
			sa.Instances = make([]savedInstance, 0, len(a.instances))
		}
		for _, in := range a.instances {
			if in.deleted {
				continue
			}
			si := savedInstance{State: in.st, UserStopped: in.userStopped, Run: saveRun(in.run), Next: saveRun(in.next)}
			if cloneEnv {
				si.State.Env = maps.Clone(in.st.Env)
			}
			if detach {
				si.State.Notes = slices.Clone(in.st.Notes)
				detachRun(si.Run)
				detachRun(si.Next)
			}
			listed[in.run], listed[in.next] = true, true
			sa.Instances = append(sa.Instances, si)
		}
		st.Apps = append(st.Apps, sa)
	}
	m.kids.mu.Lock()
	for _, r := range m.kids.pids {
		if listed[r] || r.in == nil || r.in.deleted {
			continue
		}
		if sr := saveRun(r); sr != nil {
			detachRun(sr)
			st.Strays = append(st.Strays, savedStray{PMID: r.in.st.PMID, Run: *sr})
		}
	}
	m.kids.mu.Unlock()
	if m.kp != nil {
		m.kp.mu.Lock()
		st.FDSeq = m.kp.seq
		m.kp.mu.Unlock()
	}
	return st
}

func (m *Manager) encodeState(st savedState) []byte {
	b, err := json.Marshal(st)
	if err != nil {
		m.log.Error("keeper: marshal the state", "err", err)
		return nil
	}
	return b
}

func detachRun(r *savedRun) {
	if r != nil {
		r.Keys = slices.Clone(r.Keys)
	}
}

func cloneEnvSets(sets map[string]map[string]string) map[string]map[string]string {
	if sets == nil {
		return nil
	}
	out := make(map[string]map[string]string, len(sets))
	for k, v := range sets {
		out[k] = maps.Clone(v)
	}
	return out
}

// dirty reports a change of the process table to the keeper link (if any). The caller may hold m.mu.
func (m *Manager) dirty() {
	if m.kp != nil {
		m.kp.markDirty()
	}
}

// keepPipes stores a new process's output pipes in the keeper and starts their pumps; without a
// keeper it starts the plain pumps. The caller holds m.mu.
func (m *Manager) keepPipes(r *run, outR, errR *os.File) {
	out, errw := m.lineWriters(r.in)
	r.health.tapLines(out, errw) // health.go: log_line probes see this process's lines only
	if m.kp == nil {
		m.bg.Go(func() { pump(outR, out) })
		m.bg.Go(func() { pump(errR, errw) })
		return
	}
	m.noteStarted(r)
	setPipeSize(outR)
	setPipeSize(errR)
	r.outName = m.kp.store("out", outR)
	r.errName = m.kp.store("err", errR)
	m.startKeptPump(outR, out, r.outName)
	m.startKeptPump(errR, errw, r.errName)
}

// keepIPC stores the daemon's end of a fork-mode process's IPC channel. The caller holds m.mu.
func (m *Manager) keepIPC(r *run, conn syscall.Conn) {
	if m.kp != nil {
		r.ipcName = m.kp.store("ipc", conn)
	}
}

// keepListeners stores a listen-mode app's sockets. The caller holds m.mu.
func (m *Manager) keepListeners(a *app) {
	if m.kp == nil {
		return
	}
	for _, name := range a.listenerNames {
		m.kp.remove(name)
	}
	a.listenerNames = nil
	for _, f := range a.listeners {
		a.listenerNames = append(a.listenerNames, m.kp.store("lsn", f))
	}
}

// dropListeners removes a listen-mode app's sockets from the keeper. The caller holds m.mu.
func (m *Manager) dropListeners(a *app) {
	if m.kp == nil {
		return
	}
	for _, name := range a.listenerNames {
		m.kp.remove(name)
	}
	a.listenerNames = nil
}

// keepWorker stores a new cluster worker's channel (the primary's end) and, once the worker
// listens, the primary's sockets (syncCluster). It runs without m.mu, on forkWorker's goroutine:
// ChannelFile only takes the channel's own leaf lock.
func (m *Manager) keepWorker(r *run, p *cluster.Primary, w *cluster.Worker) {
	if m.kp == nil {
		return
	}
	r.workerID = w.ID // before r.forked is closed: read under m.mu after
	if f, err := w.ChannelFile(); err == nil {
		r.ipcName = m.kp.store("ipc", f)
		f.Close()
	} else {
		m.log.Warn("keeper: worker channel; it is not kept across a daemon restart", "pid", w.Process.Pid, "err", err)
	}
	a := r.in.app
	m.bg.Go(func() {
		select {
		case <-w.Listening():
		case <-w.Done():
			return
		}
		m.syncCluster(a, p, r, w)
	})
}

// syncCluster stores the primary's sockets that are not stored yet, and records, for the state,
// the handle keys of r's worker and of the app's other workers (one that listens on a second
// address later is seen at the next worker's first 'listening'). It runs without m.mu
// (ListenerFiles and HandleKeys take the primary's lock).
func (m *Manager) syncCluster(a *app, p *cluster.Primary, r *run, w *cluster.Worker) {
	files, err := p.ListenerFiles()
	if err != nil {
		m.log.Warn("keeper: cluster sockets", "app", a.spec.Name, "err", err)
		return
	}
	m.mu.Lock()
	others := map[*run]*cluster.Worker{}
	for _, in := range a.instances {
		for _, o := range []*run{in.run, in.next} {
			if o != nil && o != r && o.worker != nil && o.listening {
				others[o] = o.worker
			}
		}
	}
	m.mu.Unlock()
	keys := w.HandleKeys()
	otherKeys := map[*run][]string{}
	for o, ow := range others {
		otherKeys[o] = ow.HandleKeys()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, f := range files {
		if a.primary == p && a.lnNames[key] == "" {
			if a.lnNames == nil {
				a.lnNames = map[string]string{}
			}
			a.lnNames[key] = m.kp.store("ln", f)
		}
		f.Close()
	}
	r.keys, r.listening = keys, true
	for o, k := range otherKeys {
		if len(k) > 0 {
			o.keys = k
		}
	}
	m.dirty()
}

// dropClusterListeners removes a retired primary's sockets from the keeper: Close shuts them down
// for every copy. The caller holds m.mu.
func (m *Manager) dropClusterListeners(a *app) {
	if m.kp == nil {
		return
	}
	for _, name := range a.lnNames {
		m.kp.remove(name)
	}
	a.lnNames = nil
}

// dropIPC removes a run's IPC channel from the keeper once the channel is closed for good.
func (m *Manager) dropIPC(r *run) {
	if m.kp != nil && r.ipcName != "" {
		m.kp.remove(r.ipcName)
	}
}

// KeeperReady tells the keeper that this daemon has recovered and serves (READY), and from then
// on sends the queued stores and removals: until READY, a daemon started by an update may not
// change the store. It does nothing without a keeper.
func (m *Manager) KeeperReady(ctx context.Context) error {
	if m.kp == nil {
		return nil
	}
	if err := m.kp.c.Ready(ctx); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	m.kp.release()
	return nil
}

// errNoKeeper is returned by Recover and Handover without a keeper.
var errNoKeeper = errors.New("daemon: not started by a keeper")

// setPipeSize raises a log pipe's capacity to logPipeSize, so that an app writing while no daemon
// runs blocks later (best effort: an unprivileged user's pipe budget may refuse it).
func setPipeSize(f *os.File) {
	if fd := fdOf(f); fd >= 0 {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, logPipeSize)
	}
}

// logPipeSize is the capacity asked for the pipes of an app's output under a keeper: what an app
// may write while the daemon is dead before its writes block. 256 KiB per pipe keeps an
// unprivileged user within the kernel's default pipe budget (pipe-user-pages-soft, 64 MiB) up
// to a hundred instances.
const logPipeSize = 256 << 10

// procStartOf returns pid's start time (/proc/<pid>/stat field 22) for the state, or 0 without a
// keeper or when it cannot be read. It takes no lock.
func (m *Manager) procStartOf(pid int) uint64 {
	if m.kp == nil {
		return 0
	}
	st, err := procstat.ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.Start
}

// noteStarted records a new process's start time for the state (against pid reuse) and marks the
// state dirty. The caller holds m.mu.
func (m *Manager) noteStarted(r *run) {
	if m.kp == nil || r.pid == 0 {
		return
	}
	if st, err := procstat.ReadStat(r.pid); err == nil {
		r.procStart = st.Start
	}
	m.dirty()
}
