// Package daemon is corral's process manager (PM2's "God" daemon): it starts, watches, restarts,
// reloads and stops the instances of every app, writes their logs and serves api.Backend.
//
// # Model
//
// An app is a definition (appspec.App, resolved to a program, an interpreter and an exec mode) and
// its instances. An instance is a process slot with a stable pm_id; a run is one process of an
// instance: the current one, a reload's replacement, or an old one being retired. Each instance
// follows one explicit state machine (the transitions table in state.go): launching → online →
// stopping → stopped, plus waiting restart and errored; every change goes through setStatus.
// Goroutines that watch processes only report events to the Manager, which applies them under its
// lock. The serialisable part of an instance (InstanceState: pm_id, pid, counters, descriptors) is
// plain data, so that a future daemon can take the processes over in place.
//
// Apps run in one of three modes: fork (a child process per instance, in its own process group),
// cluster (one cluster.Primary per app, each instance a worker; the primary owns the listening
// sockets and holds them across crashes and reloads) and listen (the daemon binds the app's
// addresses once and hands them to every instance by socket activation).
//
// What the daemon does for each PM2 behaviour and option (readiness, the restart policy, stopping,
// reload, cron_restart, watch, max_memory_restart, the environment, orphans) is described in
// docs/pm2-semantics.md; the flows through the code are traced in docs/architecture.md.
//
// # Files
//
//	lifecycle.go  Start and Scale: creating, redefining, growing and removing apps and instances
//	restart.go    Restart, and the environment a restart or reload freezes again
//	reload.go     Reload: replacing a process without downtime
//	stop.go       Stop, Delete, Shutdown, and how one process is asked to stop, forced and cleared away
//	spawn.go      starting one process (fork, listen, cluster worker) and the goroutines that watch it
//	policy.go     what an exit means: the restart policy and its delays, launch, releasing a primary
//	process.go    the run type and its start-up signals
//	state.go      the state machine
//	backend.go    the thin api.Backend methods: List, Signal, Reset, Apps
//	logfiles.go   log files, Flush, ReloadLogs, Logs
//	auto.go, cron.go, watch.go, monitor.go  automatic restarts: cron_restart, watch, max_memory_restart
//	reaper.go     the orphan reaper (Config.Subreaper)
//	keeperstore.go  under a keeper (Config.Keeper): what is stored in it and when; the serialised state
//	adopt.go      Recover and Handover: taking the processes over from the previous daemon
//	logpump.go    the log pump of a pipe kept in the keeper (peek with tee, write, then consume)
//	resolve.go    resolving an app: program, interpreter, exec mode, environment
//	health.go     readiness and liveness probes (internal/probe), the notify socket (sd_notify)
//	order.go      depends_on: start order and its conditions, stop in reverse
//	targets.go    which instances a target names
//	web.go        Web: the web dashboard (internal/web), restored from its saved setting at New
//	events.go, eventsteps.go  the event feed (internal/events): Events, and the steps of user actions
//	errtail.go    the last stderr lines of a process, for its exit event
//	history.go    History: five minutes of CPU and memory samples per instance
//	watchfeed.go  Watch: list snapshots each sample and after each event (monit, the web dashboard)
//	drain.go      the connection drain of Node apps (internal/drain): when it is on, its report
//	spawnretry.go launches that failed for want of resources (EMFILE, EAGAIN, ...), retried with backoff
//	pm2env.go, stdin.go, rename.go, unwatch.go  PM2's variables, send/attach, restart --name, stop --watch
//
// # Locking
//
// Manager.mu guards every field of the Manager below it and everything reachable from
// Manager.procs and Manager.apps (apps, instances, their runs' pid/worker/startErr and the
// InstanceState), except where a field says otherwise. Manager.changed is a sync.Cond on mu,
// broadcast on every state change; waitCond waits on it instead of polling.
//
// Each instance also has an operation token (instance.op, taken with lock/unlock): one user
// operation at a time per instance (stop, restart, reload, delete, scale down, an automatic or
// max_memory_restart replacement). The token is taken without mu (so the wait can be cancelled)
// and held across waits for processes; the order is token, then mu, never mu then token. A
// goroutine that holds several tokens took them in pm_id order.
//
// While holding mu the daemon may: fork/exec a fork- or listen-mode process (cmd.Start; but the
// instances of a new app, launched by create for Start, are exec'd by execFork on goroutines
// without mu, a few at once, and recorded under mu afterwards like a cluster worker), bind the
// sockets of a listen app, open, truncate and reopen log files, create pipes and IPC socket pairs,
// write and remove pid files, send signals (kill(2) does not block), create a cluster.Primary and
// register its handlers, arm timers, and take the leaf locks below it (children.mu,
// workerSignals.mu, the log files' own locks). All of these are bounded by the kernel or the local
// file system, so `ls` may wait behind them, but never for long.
//
// While holding mu the daemon must not: call a method of cluster.Primary or cluster.Worker that
// takes the primary's lock (ForkWith, Disconnect, Close, Kill, ExitCode, ...); send on an IPC
// channel; wait for a process, a channel or a timer (other than through changed.Wait); take an
// operation token; or call anything that can call back into the Manager (its exported methods,
// list, targets). A cluster primary that does not answer — wedged on its own lock — could
// otherwise freeze every client of the daemon. So those calls run on goroutines without mu:
// forkWorker forks a cluster worker, askStop disconnects, messages and signals a process, and
// retirePrimary closes a primary; the state machine learns the outcome through channels of the
// run (forked, done, finished) and applies it under mu. A wedged primary can then only hold up
// operations on its own app's instances (they wait with their caller's context), not `ls` or
// other apps.
//
// Callbacks and the goroutine they run on:
//   - cluster.Primary's OnOnline, OnDisconnect and OnMessage (registered in primaryFor) run on the
//     primary's event goroutine, one at a time; they only close the worker's signal channels
//     through workerSignals (a leaf mutex), and never take mu or call the primary.
//   - The IPC OnMessage of a fork-mode Node app (spawn) runs on the channel's reader goroutine and
//     likewise only closes the run's signal channels.
//   - A worker's exit is read on a goroutine of forkWorker's that waits for Worker.Done and then
//     asks the worker for its exit status (the primary's lock), without mu.
//   - supervise (from the exit or a stop request on), watchOnline, the pumps (while their pipe has data: logpump.go), askStop, forkWorker and execFork are per-process goroutines; each
//     takes mu only briefly to apply an event, never while waiting. So are watchHealth (the
//     probes: it calls Worker.Release and Worker.Dial without mu, and hands a liveness failure to
//     a goroutine that takes the operation token, then mu) and readNotify (the notify socket).
//   - Timers (restartDue, cron and watch firings) run on their own goroutines, take mu and check a
//     generation or stopped flag first, since they may fire after being cancelled. A crash restart
//     without delay has no timer: supervise's exited (under mu) starts the new process itself.
//   - The sampler reads /proc without mu; the orphan reaper takes only children.mu.
//   - The event feed (Manager.ev, an events.Bus) has its own leaf lock; Publish is called with or
//     without mu and never blocks (a subscriber that falls behind is dropped). Events and Watch
//     run one goroutine per subscriber, which takes mu only through List.
//   - watchDrain, one per process with the drain, waits for the process's drain report (recorded by
//     the IPC OnMessage through the run's signals, a leaf) or its end, then takes mu to record it.
//   - The web dashboard (web.Controller) has its own mutex, never taken under mu; its HTTP
//     handlers call the Manager's public methods like any API client.
//   - Under a keeper, stores and removals of fds and the state go through keeperLink's queue
//     (its mu is a leaf after mu); one goroutine sends them to the keeper, taking mu only to
//     marshal the state. No request to the keeper is made under mu.
//
// Goroutines: everything the Manager starts for a process, a primary, an automatic restart or a
// memory restart is counted in Manager.bg, and Close waits for it after stopping every instance
// (bounded by closeWait), then for the sampler and the reaper. What it cannot wait for is logged:
// a pump whose pipe is still held by a process that left the instance's process group, or a
// goroutine blocked in a cluster primary that never releases its lock. Logs streams end with their
// context or at Close; a reload's settle timer (settled) ends within listen_timeout; the
// goroutines of eachLocked and stopAll end before their caller returns.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/corralhq/corral/internal/events"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/keeper"
	"github.com/corralhq/corral/internal/logs"
	"github.com/corralhq/corral/internal/owner"
	"github.com/corralhq/corral/internal/pm2json"
	"github.com/corralhq/corral/internal/web"
	"golang.org/x/sys/unix"
)

// Config configures a Manager.
type Config struct {
	// Home is the state directory (CORRAL_HOME): logs/ and pids/ are created in it.
	Home string
	// Logger receives the daemon's own log; nil discards it.
	Logger *slog.Logger
	// Self is the path of the corral binary, run as `<Self> __activate <program> <args>` to hand
	// sockets to apps that use Listen. Listen apps are refused when it is empty.
	Self string
	// Subreaper makes this process the child subreaper (Linux), so that processes orphaned by an
	// app are re-parented to the daemon, and reaps them: on SIGCHLD, every zombie child of the
	// process that the Manager did not start and that is outside the process's own process group
	// is collected. It is process-wide: set it in the daemon, not in a library user. Other code in
	// the same process must start its children in the process's own process group (os/exec's
	// default), or they may be reaped before their Wait.
	Subreaper bool
	// SampleInterval is how often CPU and memory of online instances are sampled; 0 means one
	// second, a negative value disables sampling.
	SampleInterval time.Duration
	// TrimMemory lets the sampler give memory back after bursts of work: free heap pages at once
	// rather than by the runtime's slow scavenger, and the pages of the executable that a garbage
	// collection read (memsettle.go). Process-wide: set it in the daemon, not in a library user.
	TrimMemory bool
	// Keeper, when set, is the connection to the keeper that started this daemon
	// (internal/keeper): every descriptor the apps depend on and the serialised process table are
	// stored in it (keeperstore.go), Recover takes them back at start and Handover hands them over.
	// KeeperSocket is the keeper's socket, for a second connection. The Manager owns the Client.
	Keeper       *keeper.Client
	KeeperSocket string
}

// Manager runs apps. It implements api.Backend. Create it with New and release it with Close.
type Manager struct {
	cfg Config
	log *slog.Logger
	bc  *logs.Broadcaster
	ev  *events.Bus // the event feed; its own leaf lock, taken after mu (Publish never blocks)
	// jlistCache keeps jlist's encoded environments (jlist.go); its own lock, never taken with mu.
	jlistCache pm2json.EnvCache
	// jlistScratch pools LendJList's buffers (*jlistScratch).
	jlistScratch sync.Pool

	// mu guards everything below it, and the apps, instances and runs reachable from procs and
	// apps (see "Locking" in the package doc). Under mu: no call into a cluster.Primary or
	// cluster.Worker that takes the primary's lock, no IPC send, no wait for a process, no
	// operation token, nothing that calls back into the Manager. Fork/exec of fork and listen
	// processes, socket binds, log file opens and truncation and signals are allowed.
	mu             sync.Mutex
	changed        *sync.Cond // on mu; broadcast on every state change
	procs          map[int]*instance
	apps           map[string]*app
	appOrder       []string // app names in creation order
	nextID         int
	shuttingDown   bool
	closed         bool
	badTransitions int
	files          map[string]*sharedFile

	stopSampler chan struct{}
	samplerDone chan struct{}
	prof        *debugProfile // CORRAL_DEBUG_CPUPROFILE, CORRAL_DEBUG_TRACE (debugprofile.go)

	kp         *keeperLink   // nil without Config.Keeper; own lock, after mu
	envc       envCache      // the state snapshot's encoded environments (keeperenc.go); own lock, after mu
	kids       children      // processes started by the Manager, for the orphan reaper; own lock, after mu
	stopReaper chan struct{} // nil without Config.Subreaper
	reaperDone chan struct{}
	web        *web.Controller // the web dashboard (web.go); its own lock, never taken under mu
	// bg counts the goroutines the Manager starts: per process (spawn), per retired primary,
	// cron and watch restarts, memory restarts. Add (or Go) happens under mu, or on a goroutine
	// bg already counts, and never after Close has removed every instance; Close waits for it.
	bg sync.WaitGroup
	// keptPumps are the pumps of kept pipes on the poll loop (logpump.go); own leaf lock.
	keptPumps pumpSet

	// rotation is module_conf.json's log rotation, read again only when the file changed (pm2env.go).
	rotation rotationCache
	// execAsync is set by create while it launches a new app's instances (it holds mu throughout):
	// spawn then leaves the fork and exec of fork and listen processes to execFork, without mu.
	execAsync bool
}

// closeWait bounds how long Close waits for the Manager's goroutines once every instance has
// stopped (see "Goroutines" in the package doc).
const closeWait = 10 * time.Second

var _ api.Backend = (*Manager)(nil)

// app is one app definition and what its instances share.
type app struct {
	spec      appspec.App // Defaults applied; Instances is the wanted count
	res       resolved
	primary   *cluster.Primary // cluster mode; nil until the first worker or after all stopped
	released  <-chan struct{}  // closed once the retired primaries have closed; nil if none was (retirePrimary)
	workers   *workerSignals
	listeners []*os.File // listen mode; open until the app is deleted
	instances []*instance
	notes     []string
	cron      *cronJob // cron_restart schedule while armed, else nil
	watch     *watcher // file watcher while armed, else nil
	autoBusy  bool     // a cron or watch restart of the app is running
	// waiting is the primary's count of connections waiting for a free worker, as the sampler last
	// read it (Primary.Waiting takes the primary's lock: never on List's path); waitingBusy is set
	// while a read is running, so a wedged primary holds one goroutine, not one per tick.
	waiting     int
	waitingBusy bool

	listenerNames []string          // the listeners' names in the keeper's store (keepListeners)
	lnNames       map[string]string // cluster: the primary's sockets in the keeper's store, by handle key
}

// instance is one process slot of an app, with a stable pm_id.
type instance struct {
	st       InstanceState
	app      *app
	run      *run    // the current process, nil when none
	next     *run    // a reload's replacement, until it takes over
	errTail  errTail // the last stderr lines of the current process, for its exit event
	timer    *time.Timer
	timerGen int
	// op is the operation token: one user operation at a time (stop, restart, reload, delete).
	// Taken before mu, never while holding it.
	op      chan struct{}
	deleted bool
	cpu     float64
	mem     uint64
	hist    history // recent cpu/mem samples (history.go)
	// userStopped is set by Stop (and for autostart off) and cleared by the next launch: the
	// instance is left alone by cron_restart and watch meanwhile.
	userStopped bool
	// memRestart is set while max_memory_restart replaces the instance.
	memRestart bool
	// spawnRetries counts the consecutive launches whose process could not be started for want of
	// resources (see retrySpawn); a process that starts resets it.
	spawnRetries int
	// healthRestart is set while a failed liveness probe restarts the instance (health.go).
	healthRestart bool
	// startErr is why the process of the last launch could not be started, when that was found
	// after launch returned (a cluster fork; see startFailed). waitStarted reports it.
	startErr error
	// addrInUse is set by the log pumps when the instance printed that its address is in use
	// (EADDRINUSE), and cleared by a run that outlived min_uptime; exited then notes why the
	// instance keeps failing (see addrInUseNote).
	addrInUse atomic.Bool
}

// lock takes the instance's operation lock, or fails when ctx ends first.
func (in *instance) lock(ctx context.Context) error {
	select {
	case in.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pm_id %d busy: %w", in.st.PMID, ctx.Err())
	}
}

func (in *instance) unlock() { <-in.op }

// New creates a Manager with its state directory (mode 0700) under cfg.Home.
func New(cfg Config) (*Manager, error) {
	if cfg.Home == "" {
		return nil, errors.New("daemon: Config.Home is empty")
	}
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return nil, fmt.Errorf("daemon: home %s: %w", cfg.Home, err)
	}
	cfg.Home = home
	// Another user's directory (or a link they planted) is refused: the daemon creates files there.
	for _, dir := range []string{home, filepath.Join(home, "logs"), filepath.Join(home, "pids")} {
		if err := owner.EnsureDir(dir); err != nil {
			return nil, fmt.Errorf("daemon: create %s: %w", dir, err)
		}
	}
	removeStaleNotify(home) // health.go
	if cfg.Self != "" {
		if cfg.Self, err = filepath.Abs(cfg.Self); err != nil {
			return nil, fmt.Errorf("daemon: self %s: %w", cfg.Self, err)
		}
	}
	if cfg.Subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("daemon: become child subreaper: %w", err)
		}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:   cfg,
		log:   lg,
		bc:    logs.NewBroadcaster(logs.DefaultSubscriberBuffer),
		ev:    events.NewBus(0),
		procs: make(map[int]*instance),
		apps:  make(map[string]*app),
		files: make(map[string]*sharedFile),
	}
	m.changed = sync.NewCond(&m.mu)
	m.prof = startDebugProfile(lg)
	if cfg.SampleInterval >= 0 {
		interval := cfg.SampleInterval
		if interval == 0 {
			interval = time.Second
		}
		m.stopSampler = make(chan struct{})
		m.samplerDone = make(chan struct{})
		go m.sample(interval)
	}
	if cfg.Keeper != nil {
		m.kp = newKeeperLink(cfg.Keeper, cfg.KeeperSocket, lg)
		m.kp.start(m.marshalStateInto)
	}
	if cfg.Subreaper {
		m.stopReaper = make(chan struct{})
		m.reaperDone = make(chan struct{})
		go m.reapLoop()
	}
	m.startWeb()
	return m, nil
}

// Close stops every app (gracefully, within each app's kill_timeout) and releases the sockets,
// log files and goroutines of the Manager. It is safe to call more than once.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	m.prof.stop()
	m.web.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		m.log.Warn("close: shutdown", "err", err)
	}
	if m.stopSampler != nil {
		close(m.stopSampler)
		<-m.samplerDone
	}
	m.mu.Lock()
	for _, name := range m.appOrder {
		m.stopAutomation(m.apps[name])
		m.releaseApp(m.apps[name])
	}
	m.apps = map[string]*app{}
	m.appOrder = nil
	for _, in := range m.procs {
		in.deleted = true
		in.cancelTimer()
		m.closeInstanceLogs(in)
	}
	m.procs = map[int]*instance{}
	m.mu.Unlock()
	waited := make(chan struct{})
	go func() {
		m.bg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(closeWait):
		m.log.Warn("close: goroutines still running; a process outside its instance's group may hold its output pipe, or a cluster primary does not answer",
			"waited", closeWait)
	}
	if m.stopReaper != nil {
		close(m.stopReaper)
		<-m.reaperDone
	}
	m.kp.close()
	m.bc.Close()
}

// releaseApp closes what an app holds: its cluster primary and its listening sockets (removing
// Unix socket files). The caller holds m.mu.
func (m *Manager) releaseApp(a *app) {
	if a == nil {
		return
	}
	m.retirePrimary(a)
	m.dropListeners(a)
	for i, f := range a.listeners {
		f.Close()
		if i < len(a.spec.Listen) {
			if path, ok := unixSocketPath(a.spec.Listen[i]); ok {
				os.Remove(path)
			}
		}
	}
	a.listeners = nil
}

// unixSocketPath returns the file of a Unix socket address as activation.Listen understands it.
func unixSocketPath(addr string) (string, bool) {
	switch {
	case len(addr) > 5 && addr[:5] == "unix:":
		return addr[5:], addr[5] != '@'
	case len(addr) > 0 && addr[0] == '/',
		len(addr) > 1 && addr[:2] == "./",
		len(addr) > 2 && addr[:3] == "../":
		return addr, true
	}
	return "", false
}

// Snapshot returns the serialisable state of every instance, ordered by pm_id.
func (m *Manager) Snapshot() []InstanceState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]InstanceState, 0, len(m.procs))
	for _, in := range m.sortedProcs() {
		st := in.st
		st.Env = maps.Clone(in.st.Env)
		st.Notes = slices.Clone(in.st.Notes)
		out = append(out, st)
	}
	return out
}

// sortedProcs returns all instances ordered by pm_id. The caller holds m.mu.
func (m *Manager) sortedProcs() []*instance {
	out := make([]*instance, 0, len(m.procs))
	for _, in := range m.procs {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].st.PMID < out[j].st.PMID })
	return out
}

// proc describes an instance for the API. The caller holds m.mu.
func (m *Manager) proc(in *instance) api.Proc {
	p := m.procShared(in)
	p.App.Env, p.App.ShellEnv, p.Env = maps.Clone(p.App.Env), maps.Clone(p.App.ShellEnv), maps.Clone(p.Env)
	return p
}

// procLean is proc without any environment (api.StartOptions.Lean: not copied only to be
// dropped). The caller holds m.mu.
func (m *Manager) procLean(in *instance) api.Proc {
	p := m.procShared(in)
	p.App.Env, p.App.ShellEnv, p.App.EnvSets, p.Env = nil, nil, nil, nil
	return p
}

// procShared is proc with the environment maps of the instance and its app themselves, not
// copies: they are replaced whole, never changed in place (jlist.go reads them after m.mu is
// released). The caller holds m.mu.
func (m *Manager) procShared(in *instance) api.Proc {
	a := in.app
	spec := a.spec
	p := api.Proc{
		PMID: in.st.PMID, Name: in.st.Name, Namespace: in.st.Namespace, PID: in.st.PID,
		Status:      string(in.st.Status),
		App:         spec,
		Interpreter: a.res.interpreter,
		ExecPath:    a.res.execPath,
		Cwd:         a.res.cwd,
		Instance:    in.st.Instance,
		Restarts:    in.st.Restarts, UnstableRestarts: in.st.UnstableRestarts,
		StartedAt: in.st.StartedAt, CreatedAt: in.st.CreatedAt,
		ExitCode: in.st.ExitCode, ExitSignal: in.st.ExitSignal,
		OutLog: in.st.OutLog, ErrLog: in.st.ErrLog, CombinedLog: in.st.CombinedLog, PidFile: in.st.PidFile,
		Env:   in.st.Env,
		Notes: append(slices.Clone(a.notes), in.st.Notes...),
		Drain: in.st.LastDrain,
	}
	if in.st.Status == StatusOnline {
		p.CPU, p.Memory = in.cpu, in.mem
	}
	p.Readiness, p.LivenessRestarts, p.RestartReason = readinessOf(in), in.st.LivenessRestarts, in.st.RestartReason
	if in.run != nil && in.run.worker != nil {
		s := in.run.worker.Balancer() // lock-free
		p.Balancer = &api.Balancer{HandedOff: s.HandedOff, InFlight: s.InFlight, Refused: s.Refused, Rerouted: s.Rerouted}
	}
	return p
}

// procs describes instances for the API. The caller holds m.mu.
func (m *Manager) procList(ins []*instance) []api.Proc {
	out := make([]api.Proc, 0, len(ins))
	for _, in := range ins {
		out = append(out, m.proc(in))
	}
	return out
}
