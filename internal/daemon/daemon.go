// Package daemon is corral's process manager (PM2's "God" daemon): it starts, watches, restarts,
// reloads and stops the instances of every app, writes their logs and serves api.Backend.
//
// Each instance follows one explicit state machine (see transitions in state.go): launching →
// online → stopping → stopped, plus waiting restart and errored. All state lives in one table
// guarded by the Manager's mutex; goroutines that watch processes only report events to it. The
// per-instance state that matters (InstanceState: pm_id, pid, counters, descriptors) is plain
// serialisable data, so that a future daemon can take the processes over in place.
//
// Apps run in one of three modes:
//
//   - fork: a child process per instance (os/exec), in its own process group; Node apps also get
//     Node's IPC channel on fd 3, so process.send('ready') and the 'shutdown' message work;
//   - cluster: Node apps with several instances (or exec_mode cluster), and Go programs built with
//     corral's cluster package: one cluster.Primary per app, each instance a worker; the primary
//     owns the listening sockets and holds them across crashes and reloads;
//   - listen: any program, when the app lists addresses in Listen: the daemon binds them once
//     and passes them to every instance by socket activation (LISTEN_FDS) through
//     `corral __activate`; the sockets stay open until the app is deleted.
//
// Readiness. An instance is online right after spawn (fork, listen) or on the worker's 'online'
// event (cluster); with wait_ready, on the IPC message "ready", or after listen_timeout anyway
// (PM2's rule). During a reload the replacement must be really ready before the old process is
// stopped: cluster — its first 'listening' event (or "ready" with wait_ready); listen — "ready"
// with wait_ready, otherwise having stayed up for min(listen_timeout, 300ms) (a program without
// IPC cannot say more; the sockets queue connections meanwhile, so none is lost; with wait_ready
// but no IPC channel: having stayed up for listen_timeout). A replacement
// that exits or is not ready within listen_timeout is killed, the old process keeps serving and
// the reload stops with an error naming the instance.
//
// Restart policy: an exit that was not asked for restarts the instance unless autorestart is off
// or the exit code is in stop_exit_codes (then stopped). A run shorter than min_uptime is an
// unstable restart; max_restarts consecutive unstable restarts make the instance errored (a run
// that lasted min_uptime resets the count). The delay is restart_delay, or with
// exp_backoff_restart_delay that value growing ×1.5 per restart up to 15 s and starting over
// after 30 s of uptime; the instance is "waiting restart" meanwhile. Exit codes are recorded as
// is; a process killed by a signal gets ExitSignal "SIGxxx" and ExitCode 128+signal (the shell
// convention).
//
// Stopping sends the "shutdown" IPC message (shutdown_with_message, when the process has a
// channel) or kill_signal (SIGINT by default) to the whole process group, then SIGKILL to the
// group after kill_timeout, and waits until the leader is reaped and the group is empty. Members
// of the group left behind by a crash are killed too.
//
// Automatic restarts. cron_restart (five cron fields with an optional leading seconds field, or a
// descriptor such as @daily; "0" disables it) and watch restart every instance of the app that
// the user did not stop, one at a time: online instances of cluster and listen apps are reloaded
// without downtime, the others (fork apps, instances that are not online) restarted; each gets a
// note saying why. Both run while the app has an instance the user did not stop: Stop (of every
// instance) and Delete remove them, a start or restart brings them back, and a new definition
// (start --force, ecosystem) replaces them. An instance that exited on its own (autorestart off,
// stop_exit_codes) is still restarted by them, which is how a periodic job is run. A cron
// activation that comes while the previous automatic restart is still running is skipped.
//
// watch lists paths relative to the app's cwd ("." is the cwd itself); directories are watched
// recursively (new subdirectories included), files through their directory. A restart happens
// once no change was seen for watch_delay (500ms when unset). Changes below a watch path under
// node_modules, logs or any name starting with a dot are ignored, and so are those matching
// ignore_watch: globs (*, ?, [...], ** across directories) or plain names, matched against the
// path relative to the cwd, each leading part of it, and — for patterns without '/' — each path
// component (see ignoreRule).
//
// Environment. An app's own variables (App.Env) win over the shell environment it was started
// from (App.ShellEnv); restart or reload with --update-env replaces ShellEnv with the new shell's
// environment, so variables removed from the shell disappear; restart or reload of an ecosystem
// file replaces Env with the file's env read again (RestartOptions.AppEnv). Apps without ShellEnv
// keep the older rule: Env is the whole environment and --update-env merges the new shell over it.
//
// Orphans. With Config.Subreaper the daemon is the parent of whatever its apps orphan; on every
// SIGCHLD (and every 10 s) it reaps the zombies among its children that it did not start itself
// and that are outside its own process group.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/logs"
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
}

// Manager runs apps. It implements api.Backend. Create it with New and release it with Close.
type Manager struct {
	cfg Config
	log *slog.Logger
	bc  *logs.Broadcaster

	mu             sync.Mutex
	changed        *sync.Cond // broadcast on every state change
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

	kids       children      // processes started by the Manager, for the orphan reaper
	stopReaper chan struct{} // nil without Config.Subreaper
	reaperDone chan struct{}
	bg         sync.WaitGroup // watchers and automatic restarts; Add only under mu and before closed
}

var _ api.Backend = (*Manager)(nil)

// app is one app definition and what its instances share.
type app struct {
	spec      appspec.App // Defaults applied; Instances is the wanted count
	res       resolved
	primary   *cluster.Primary // cluster mode; nil until the first worker or after all stopped
	workers   *workerSignals
	listeners []*os.File // listen mode; open until the app is deleted
	instances []*instance
	notes     []string
	cron      *cronJob // cron_restart schedule while armed, else nil
	watch     *watcher // file watcher while armed, else nil
	autoBusy  bool     // a cron or watch restart of the app is running
}

// instance is one process slot of an app, with a stable pm_id.
type instance struct {
	st       InstanceState
	app      *app
	run      *run // the current process, nil when none
	next     *run // a reload's replacement, until it takes over
	timer    *time.Timer
	timerGen int
	op       chan struct{} // one user operation at a time (stop, restart, reload, delete)
	deleted  bool
	cpu      float64
	mem      uint64
	// userStopped is set by Stop (and for autostart off) and cleared by the next launch: the
	// instance is left alone by cron_restart and watch meanwhile.
	userStopped bool
	// memRestart is set while max_memory_restart replaces the instance.
	memRestart bool
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
	for _, dir := range []string{home, filepath.Join(home, "logs"), filepath.Join(home, "pids")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("daemon: create %s: %w", dir, err)
		}
	}
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
		procs: make(map[int]*instance),
		apps:  make(map[string]*app),
		files: make(map[string]*sharedFile),
	}
	m.changed = sync.NewCond(&m.mu)
	if cfg.SampleInterval >= 0 {
		interval := cfg.SampleInterval
		if interval == 0 {
			interval = time.Second
		}
		m.stopSampler = make(chan struct{})
		m.samplerDone = make(chan struct{})
		go m.sample(interval)
	}
	if cfg.Subreaper {
		m.stopReaper = make(chan struct{})
		m.reaperDone = make(chan struct{})
		go m.reapLoop()
	}
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
	m.bg.Wait()
	if m.stopReaper != nil {
		close(m.stopReaper)
		<-m.reaperDone
	}
	m.bc.Close()
}

// releaseApp closes what an app holds: its cluster primary and its listening sockets (removing
// Unix socket files). The caller holds m.mu.
func (m *Manager) releaseApp(a *app) {
	if a == nil {
		return
	}
	if a.primary != nil {
		if err := a.primary.Close(); err != nil {
			m.log.Warn("close cluster primary", "app", a.spec.Name, "err", err)
		}
		a.primary = nil
	}
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
		st.Env = cloneMap(in.st.Env)
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
	a := in.app
	spec := a.spec
	spec.Env = cloneMap(a.spec.Env)
	spec.ShellEnv = cloneMap(a.spec.ShellEnv)
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
		Env:   cloneMap(in.st.Env),
		Notes: append(slices.Clone(a.notes), in.st.Notes...),
	}
	if in.st.Status == StatusOnline {
		p.CPU, p.Memory = in.cpu, in.mem
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

func cloneMap(src map[string]string) map[string]string {
	if src == nil {
		return nil
	}
	dst := make(map[string]string, len(src))
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// sortStrings sorts s in place.
func sortStrings(s []string) { slices.Sort(s) }
