package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/probe"
	"golang.org/x/sys/unix"
)

// Health checks (issue 12): readiness and liveness probes, and sd_notify.
//
// A run whose app has a readiness_probe gets a runHealth with a ready channel, closed once the
// probe passed: watchOnline moves the instance to online only then (never on listen_timeout), a
// reload's awaitReady waits for it (bounded by readinessLimit) and reports the probe's last output
// when it gives up, and waitStarted waits for it. A cluster worker of such an app is forked held
// (cluster.ForkOptions.Held): it is handed no connection until the probe passed and watchHealth
// released it, and the probe reaches that worker alone through Worker.Dial. Then the liveness
// probe, if any, runs; failure_threshold consecutive failures restart the instance, with the
// reason in its state (restart_reason, liveness_restarts), its notes and the event feed.
//
// With wait_ready, every run gets a notify socket (NOTIFY_SOCKET, systemd's protocol): READY=1
// from the process, or any process of its tree running as the app's user, counts as the "ready"
// message; STATUS= is recorded; WATCHDOG=1 is accepted.
//
// Goroutines: watchHealth and the notify reader are per-run goroutines counted in m.bg; they end
// when the process has ended (r.done) or a stop was requested (r.stopReq). They take m.mu only
// briefly to read the target and apply a verdict, and call cluster.Worker methods (Release, Dial)
// without it. runHealth.mu is a leaf.

// runHealth is the health-check state of one run.
type runHealth struct {
	readiness *appspec.Probe
	liveness  *appspec.Probe
	ready     chan struct{} // closed once the readiness probe passed; nil without one
	readyOnce sync.Once
	limit     time.Duration // how long start and reload wait for readiness

	notifyPath string   // NOTIFY_SOCKET ("" without wait_ready)
	notify     net.Conn // the socket, closed by the reader

	// watchdog_sec: WATCHDOG=1 datagrams (pet) and WATCHDOG=trigger (trigger), see watchdog.
	watchdog    time.Duration
	pet         chan struct{}
	trigger     chan struct{}
	triggerOnce sync.Once

	// log_line probes: matchers fed with this process's own output (tapLines).
	readyLines, liveLines *probe.LineMatcher

	mu      sync.Mutex
	last    string // the readiness probe's last output, or the liveness failure
	unready bool   // ready once, then failed failure_threshold times in a row (watchReadiness)
}

func (h *runHealth) markReady() { h.readyOnce.Do(func() { close(h.ready) }) }

// setLast records s and reports whether it differs from the previous output.
func (h *runHealth) setLast(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.last != s
	h.last = s
	return changed
}

func (h *runHealth) lastOutput() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// readinessLimit is how long start and reload wait for a readiness probe to pass:
// listen_timeout, or longer when the probe's own timing needs it (initial delay plus
// failure_threshold periods).
func readinessLimit(spec appspec.App) time.Duration {
	p := spec.ReadinessProbe
	if p == nil {
		return ms(spec.ListenTimeout)
	}
	own := p.InitialDelay() + time.Duration(p.Failures())*p.Period() + p.Timeout()
	return max(ms(spec.ListenTimeout), own)
}

var notifySeq atomic.Int64

// prepareHealth sets up r's health checks before its process starts: the readiness gate and the
// notify socket. It returns the variables to add to the process's environment, and whether a
// cluster worker is to be forked held. The caller holds m.mu.
func (m *Manager) prepareHealth(r *run) (env []string, held bool) {
	spec := r.in.app.spec
	if spec.ReadinessProbe == nil && spec.LivenessProbe == nil && !spec.WaitReady && spec.WatchdogSec <= 0 {
		return nil, false
	}
	h := &runHealth{readiness: spec.ReadinessProbe, liveness: spec.LivenessProbe, limit: readinessLimit(spec)}
	if p := h.readiness; p != nil && p.LogLine != "" {
		h.readyLines, _ = probe.NewLineMatcher(p.LogLine)
	}
	if p := h.liveness; p != nil && p.LogLine != "" {
		h.liveLines, _ = probe.NewLineMatcher(p.LogLine)
	}
	if spec.WatchdogSec > 0 {
		h.watchdog = time.Duration(spec.WatchdogSec * float64(time.Second))
		h.pet, h.trigger = make(chan struct{}, 1), make(chan struct{})
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(h.watchdog.Microseconds(), 10))
	}
	if h.readiness != nil {
		h.ready = make(chan struct{})
		held = r.mode == modeCluster
	}
	if spec.WaitReady || spec.WatchdogSec > 0 {
		if err := m.openNotify(r, h); err != nil {
			m.log.Warn("notify socket", "pm_id", r.in.st.PMID, "err", err)
		} else {
			env = append(env, "NOTIFY_SOCKET="+h.notifyPath)
		}
	}
	r.health = h
	return env, held
}

// openNotify creates r's notify socket: a datagram socket under the state directory (or in the
// abstract namespace when that path is too long for a socket address).
func (m *Manager) openNotify(r *run, h *runHealth) error {
	dir := filepath.Join(m.cfg.Home, "notify")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	name := fmt.Sprintf("%d-%d.sock", r.in.st.PMID, notifySeq.Add(1))
	path := filepath.Join(dir, name)
	// An app run as another user cannot enter the state directory (0700): it gets an abstract
	// socket, whose senders are checked by their credentials (notifySenderOK) like the others'.
	if len(path) > 100 || r.in.app.res.cred != nil {
		path = fmt.Sprintf("@corral-%d-%s", os.Getpid(), name)
	} else {
		os.Remove(path)
	}
	addr := path
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	}
	h.notifyPath, h.notify = path, c
	return nil
}

// startHealth starts r's health goroutines once its process was started (spawn's end). The
// caller holds m.mu.
func (m *Manager) startHealth(r *run) {
	h := r.health
	if h == nil {
		return
	}
	if c, ok := h.notify.(*net.UnixConn); ok {
		m.bg.Go(func() { m.readNotify(r, c) })
		if h.watchdog > 0 {
			m.bg.Go(func() { m.watchdog(r) })
		}
	}
	m.bg.Go(func() { m.watchHealth(r) })
}

// closeNotify releases the notify socket of a run whose process could not be started.
func (h *runHealth) closeNotify() {
	if h == nil || h.notify == nil {
		return
	}
	h.notify.Close()
	if !strings.HasPrefix(h.notifyPath, "@") {
		os.Remove(h.notifyPath)
	}
}

// readNotify reads sd_notify datagrams for r until its process has ended.
func (m *Manager) readNotify(r *run, c *net.UnixConn) {
	go func() {
		<-r.done
		c.Close()
		if p := r.health.notifyPath; !strings.HasPrefix(p, "@") {
			os.Remove(p)
		}
	}()
	<-r.forked // r.sig is final once forked is closed (a cluster worker's comes from its primary)
	uid := uint32(os.Getuid())
	if cred := r.in.app.res.cred; cred != nil {
		uid = cred.Uid
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		if !notifySenderOK(oob[:oobn], uid) {
			continue
		}
		for line := range strings.SplitSeq(string(buf[:n]), "\n") {
			switch {
			case line == "READY=1":
				r.sig.markReady()
			case line == "WATCHDOG=1" && r.health != nil && r.health.pet != nil:
				select {
				case r.health.pet <- struct{}{}:
				default:
				}
			case line == "WATCHDOG=trigger" && r.health != nil && r.health.pet != nil:
				r.health.triggerOnce.Do(func() { close(r.health.trigger) })
			case strings.HasPrefix(line, "STATUS="):
				if r.health != nil {
					r.health.setLast("sd_notify " + line)
				}
			}
		}
	}
}

// notifySenderOK accepts a datagram from root, the daemon's user or the app's user.
func notifySenderOK(oob []byte, uid uint32) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, msg := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msg); err == nil {
			return cred.Uid == 0 || cred.Uid == uid || cred.Uid == uint32(os.Getuid())
		}
	}
	return false
}

// probeTarget builds what r's probes check. The caller holds m.mu.
func (m *Manager) probeTarget(r *run, p *appspec.Probe) probe.Target {
	in, a := r.in, r.in.app
	// An exec probe learns which process it checks: during a reload the instance has two.
	t := probe.Target{Probe: p, Dir: a.res.cwd, Env: envList(in.st.Env, "CORRAL_PROBE_PID="+strconv.Itoa(r.pid)), Cred: a.res.cred,
		Start: m.kids.startHelper}
	if len(a.spec.Listen) == 1 {
		t.Port = portOf(a.spec.Listen[0])
	}
	if t.Port == 0 {
		t.Port, _ = strconv.Atoi(in.st.Env["PORT"])
	}
	if r.mode == modeCluster && r.worker != nil {
		w := r.worker
		t.Dial = func(ctx context.Context) (net.Conn, error) { return w.Dial(ctx, "") }
	}
	return t
}

// portOf returns the TCP port of a listen address ("3000", ":3000", "127.0.0.1:3000",
// "tcp://..."), or 0.
func portOf(addr string) int {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "tcp://"), "tcp:")
	if n, err := strconv.Atoi(addr); err == nil {
		return n
	}
	if _, p, err := net.SplitHostPort(addr); err == nil {
		n, _ := strconv.Atoi(p)
		return n
	}
	return 0
}

// watchHealth runs r's probes: readiness until it passes (then the run is ready and a held
// cluster worker is released), then liveness until the process ends or is asked to stop.
func (m *Manager) watchHealth(r *run) {
	h := r.health
	<-r.forked
	if r.startErr != nil || (h.readiness == nil && h.liveness == nil) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.done:
		case <-r.stopReq:
		case <-ctx.Done():
		}
		cancel()
	}()
	if p := h.readiness; p != nil {
		m.mu.Lock()
		t := m.probeTarget(r, p)
		m.mu.Unlock()
		t.Lines = h.readyLines
		if p.LogLine != "" && t.Lines == nil {
			t.Lines = m.followLines(ctx, r, p.LogLine) // adopted: its pipes were tapped by another daemon
		}
		if r.worker != nil && (p.HTTPGet != nil || p.TCPSocket != nil) {
			select { // a worker is reached through its socket: nothing to check before it listens
			case <-r.worker.Listening():
			case <-ctx.Done():
				return
			}
		}
		rctx, rcancel := context.WithCancel(ctx)
		h.setLast("readiness probe: " + probe.Describe(t) + ": not checked yet")
		probe.Run(rctx, t, func(v probe.Verdict) {
			if v.Passing {
				rcancel()
			}
		}, func(res probe.Result) {
			if h.setLast("readiness probe: " + res.Output) {
				m.mu.Lock()
				m.changed.Broadcast() // the readiness shown by ls and show changed
				m.mu.Unlock()
			}
		})
		rcancel()
		if ctx.Err() != nil {
			return
		}
		if r.worker != nil {
			r.worker.Release() // without m.mu: it takes the primary's lock
		}
		h.markReady()
		m.log.Info("ready", "pm_id", r.in.st.PMID, "name", r.in.st.Name, "pid", r.pid, "probe", h.lastOutput())
		if p.LogLine == "" && h.liveness != nil {
			m.bg.Go(func() { m.watchReadiness(ctx, r, t) })
		} else if p.LogLine == "" {
			m.watchReadiness(ctx, r, t) // until the process ends: ctx is watchHealth's
			return
		}
	}
	if p := h.liveness; p != nil {
		m.mu.Lock()
		t := m.probeTarget(r, p)
		m.mu.Unlock()
		t.Lines = h.liveLines
		if p.LogLine != "" && t.Lines == nil {
			t.Lines = m.followLines(ctx, r, p.LogLine)
		}
		probe.Run(ctx, t, func(v probe.Verdict) {
			if !v.Passing {
				m.livenessFailed(r, v)
			}
		}, nil)
	}
}

// watchReadiness keeps checking readiness once r was ready, as Kubernetes does:
// failure_threshold failures in a row make it unready ("not ready: <output>" in ls and show, a
// cluster worker held out of the round robin), success_threshold successes ready again. It
// runs until ctx ends, without m.mu but for brief updates.
func (m *Manager) watchReadiness(ctx context.Context, r *run, t probe.Target) {
	h := r.health
	if !sleep(ctx, t.Probe.Period()) {
		return
	}
	tp := *t.Probe
	tp.InitialDelaySeconds = 0
	t.Probe = &tp
	probe.Run(ctx, t, func(v probe.Verdict) {
		h.mu.Lock()
		changed := h.unready == v.Passing
		h.unready = !v.Passing
		h.mu.Unlock()
		if !changed {
			return
		}
		if r.worker != nil {
			switch {
			case v.Passing:
				r.worker.Release()
			case m.othersReady(r):
				r.worker.Hold()
			default:
				// The last ready worker stays in rotation: an unready answer beats no answer.
				v.Last.Output += " (kept in the round robin: no other instance is ready)"
			}
		}
		h.setLast("readiness probe: " + v.Last.Output)
		m.mu.Lock()
		in := r.in
		if in.run == r && !in.deleted {
			to := "ready"
			if !v.Passing {
				to = "not ready"
			}
			m.ev.Publish(events.Event{Type: events.Health, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: r.pid,
				To: to, Reason: "readiness", Message: v.Last.Output})
			m.log.Warn("readiness changed", "pm_id", in.st.PMID, "name", in.st.Name, "pid", r.pid, "ready", v.Passing, "probe", v.Last.Output)
		}
		m.changed.Broadcast()
		m.mu.Unlock()
	}, nil)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// followLines feeds the output lines of r's instance to a matcher until ctx ends.
func (m *Manager) followLines(ctx context.Context, r *run, pattern string) *probe.LineMatcher {
	lm, err := probe.NewLineMatcher(pattern)
	if err != nil {
		return nil
	}
	src, stop := m.bc.Subscribe()
	id := r.in.st.PMID
	m.bg.Go(func() {
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case l, ok := <-src:
				if !ok {
					return
				}
				if l.ID == id {
					lm.Feed(l.Text)
				}
			}
		}
	})
	return lm
}

// livenessFailed restarts r's instance after its liveness probe failed, if r is still its
// process and online. It runs on watchHealth's goroutine, without m.mu.
func (m *Manager) livenessFailed(r *run, v probe.Verdict) {
	m.healthFailed(r, "liveness", fmt.Sprintf("liveness probe failed %d times: %s", v.Failures, v.Last.Output), v.Last.Output)
}

// healthFailed restarts r's instance for a failed health check (kind "liveness" or "watchdog"),
// if r is still its process and online. It runs without m.mu.
func (m *Manager) healthFailed(r *run, kind, reason, output string) {
	in := r.in
	m.mu.Lock()
	if in.deleted || in.run != r || in.st.Status != StatusOnline || m.shuttingDown || in.healthRestart {
		m.mu.Unlock()
		return
	}
	in.healthRestart = true
	in.st.LivenessRestarts++
	in.st.RestartReason = reason
	m.ev.Publish(events.Event{Type: events.Restart, App: in.st.Name, PMID: events.ID(in.st.PMID), PID: r.pid,
		Reason: kind, Message: output})
	m.log.Warn(kind+" failed: restarting", "pm_id", in.st.PMID, "name", in.st.Name, "pid", r.pid, "reason", reason)
	m.dirty()
	m.mu.Unlock()
	m.bg.Go(func() { m.healthRestartOne(in, reason) })
}

// healthRestartOne restarts in (its process is hung or broken: a reload would wait for it).
func (m *Manager) healthRestartOne(in *instance, reason string) {
	defer func() {
		m.mu.Lock()
		in.healthRestart = false
		m.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), autoRestartTimeout)
	defer cancel()
	if err := in.lock(ctx); err != nil {
		return
	}
	defer in.unlock()
	m.mu.Lock()
	if in.deleted || m.shuttingDown || !in.st.Status.running() {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	err := m.restartOne(ctx, in, api.RestartOptions{})
	m.mu.Lock()
	note := "restarted: " + reason
	if err != nil && !errors.Is(err, ErrShuttingDown) {
		note += " (" + err.Error() + ")"
	}
	in.st.Notes = appendNote(in.st.Notes, note)
	m.mu.Unlock()
}

// readinessNote says why r is not ready, for errors: the probe's last output. "" without a probe.
func (r *run) readinessNote() string {
	if r.health == nil || r.health.ready == nil {
		return ""
	}
	return r.health.lastOutput()
}

// notReady lists the instances among ins still waiting for their readiness probe, with the
// probe's last output. The caller holds m.mu.
func notReady(ins []*instance) error {
	var errs []error
	for _, in := range ins {
		if in.deleted || in.st.Status != StatusLaunching || in.run == nil || in.run.health == nil || in.run.health.ready == nil {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: instance %d (pm_id %d, pid %d) is not ready within %v: %s",
			in.st.Name, in.st.Instance, in.st.PMID, in.run.pid, in.run.health.limit, in.run.health.lastOutput()))
	}
	return errors.Join(errs...)
}

// waitLimit is how long waitStarted waits for in. The caller holds m.mu.
func waitLimit(in *instance) time.Duration {
	return readinessLimit(in.app.spec)
}

// readinessOf describes in's readiness for the API. The caller holds m.mu.
func readinessOf(in *instance) string {
	if in.app.spec.ReadinessProbe == nil {
		return ""
	}
	r := in.run
	if in.next != nil {
		r = in.next // a reload's replacement is the one being checked
	}
	if r == nil || r.health == nil || r.health.ready == nil {
		return "waiting"
	}
	select {
	case <-r.health.ready:
		r.health.mu.Lock()
		defer r.health.mu.Unlock()
		if r.health.unready {
			return "not ready: " + r.health.last
		}
		return "ready"
	default:
		return "waiting: " + r.health.lastOutput()
	}
}

// envUndo is an app's environment before a reload with a new one (--update-env), put back when
// the reload of its first instance fails: a crash restart of an old instance must not start the
// version that was refused.
type envUndo struct {
	env, shell map[string]string
	kept       bool // an instance was reloaded with the new environment: the app keeps it
}

// undoEnv puts back in's environment after its reload failed, and the app's unless another
// instance already runs with the new one.
func (m *Manager) undoEnv(in *instance, u *envUndo, prev map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in.deleted {
		return
	}
	in.st.Env = prev
	if u != nil && !u.kept {
		in.app.spec.Env, in.app.spec.ShellEnv = u.env, u.shell
	}
	m.dirty()
}

// adoptedHealth starts the probes of a process an earlier daemon started (adopt.go): liveness, and
// readiness while it is still launching. Its notify socket died with that daemon. The caller
// holds m.mu.
func (m *Manager) adoptedHealth(r *run) {
	in := r.in
	spec := in.app.spec
	h := &runHealth{liveness: spec.LivenessProbe, limit: readinessLimit(spec)}
	if spec.ReadinessProbe != nil && in.st.Status == StatusLaunching {
		h.readiness, h.ready = spec.ReadinessProbe, make(chan struct{})
	}
	if h.readiness == nil && h.liveness == nil {
		return
	}
	r.health = h
	m.bg.Go(func() { m.watchHealth(r) })
}

// probeNotes warns about a readiness probe that cannot tell a reload's new process from the old
// ones: an HTTP or TCP probe of the shared socket of a listen-mode app, which the kernel hands to
// whichever process accepts first.
func probeNotes(spec appspec.App, mode execMode) []string {
	p := spec.ReadinessProbe
	if p == nil || mode != modeListen || len(spec.Listen) != 1 {
		return nil
	}
	shared := portOf(spec.Listen[0])
	port := -1
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	}
	if port == 0 || (port == shared && shared != 0) {
		return []string{"readiness probe on the shared listen socket: during a reload an old process may answer it; " +
			"probe each process by itself with an exec probe ($CORRAL_PROBE_PID is the process checked)"}
	}
	return nil
}

// othersReady reports whether another instance of r's app is online and ready, so that r may be
// taken out of the round robin.
func (m *Manager) othersReady(r *run) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range r.in.app.instances {
		o := in.run
		if in == r.in || o == nil || in.st.Status != StatusOnline || o.health == nil || o.health.ready == nil {
			continue
		}
		select {
		case <-o.health.ready:
		default:
			continue
		}
		o.health.mu.Lock()
		ok := !o.health.unready
		o.health.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// watchdog restarts r's instance when, once it is online, no WATCHDOG=1 arrives on its notify
// socket for watchdog_sec (or WATCHDOG=trigger does): systemd's WatchdogSec. The process learns
// the interval from WATCHDOG_USEC, as under systemd, and should ping at half of it.
func (m *Manager) watchdog(r *run) {
	h := r.health
	<-r.forked
	if r.startErr != nil {
		return
	}
	// Armed once the instance is online (systemd: once start-up is complete); every status change
	// wakes waitCond.
	online := false
	m.waitCond(24*time.Hour, func() bool {
		mine := r.in.run == r
		online = mine && r.in.st.Status == StatusOnline
		pending := r.in.next == r || (mine && r.in.st.Status == StatusLaunching) // a reload's replacement, or starting
		return online || !pending
	})
	if !online {
		return
	}
	t := time.NewTimer(h.watchdog)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-r.stopReq:
			return
		case <-h.pet:
			if !t.Stop() {
				<-t.C
			}
			t.Reset(h.watchdog)
		case <-h.trigger:
			m.healthFailed(r, "watchdog", "watchdog: the process sent WATCHDOG=trigger", "WATCHDOG=trigger")
			return
		case <-t.C:
			m.healthFailed(r, "watchdog", fmt.Sprintf("watchdog: no WATCHDOG=1 for watchdog_sec %v", h.watchdog), "no WATCHDOG=1 for "+h.watchdog.String())
			return
		}
	}
}

// removeStaleNotify removes the notify sockets an earlier daemon of this home left behind (a
// daemon handing over exits without closing them; nothing reads them any more).
func removeStaleNotify(home string) {
	_ = os.RemoveAll(filepath.Join(home, "notify"))
}

// tapLines feeds the lines of the process's stdout and stderr writers to its log_line matchers.
// nil-safe. The caller holds m.mu.
func (h *runHealth) tapLines(out, errw interface{ SetTap(func(string)) }) {
	if h == nil || (h.readyLines == nil && h.liveLines == nil) {
		return
	}
	tap := func(line string) {
		if h.readyLines != nil {
			h.readyLines.Feed(line)
		}
		if h.liveLines != nil {
			h.liveLines.Feed(line)
		}
	}
	out.SetTap(tap)
	errw.SetTap(tap)
}
