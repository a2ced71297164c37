package monit

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
)

// Panes of the lower half.
const (
	paneLogs = iota
	paneEvents
	paneDetails
	numPanes
)

var paneNames = [numPanes]string{"Logs", "Events", "Details"}

// Log streams shown.
const (
	streamBoth = iota
	streamOut
	streamErr
)

var streamNames = []string{"stdout+stderr", "stdout", "stderr"}

// Sort columns.
const (
	sortID = iota
	sortName
	sortStatus
	sortRestarts
	sortUptime
	sortCPU
	sortMem
	numSorts
)

var sortNames = [numSorts]string{"id", "name", "status", "restarts", "uptime", "cpu", "memory"}

// Limits of what the model keeps.
const (
	historyKeep = 300  // samples per instance: five minutes at one a second
	logKeep     = 1000 // lines per instance
	eventKeep   = 1000
)

// sample is one CPU/memory point.
type sample struct {
	t   int64
	cpu float64
	mem uint64
}

// logEntry is one line in the log pane's buffers; seq orders lines across instances.
type logEntry struct {
	seq    int64
	pmid   int
	stream string
	text   string
}

// logBuf holds one instance's recent lines.
type logBuf struct {
	lines  []logEntry
	seeded bool
}

// row is one line of the process table: an app header (pmid -1) or an instance.
type row struct {
	app   string
	pmid  int // -1: the app's header row
	procs []api.Proc
}

func (r row) isApp() bool { return r.pmid < 0 }

// Model is the dashboard's state. It is owned by the bubbletea program's goroutine.
type Model struct {
	b       Backend
	version string
	ctx     context.Context
	stop    context.CancelFunc

	width, height int
	now           time.Time

	// connection
	gen     int
	conn    *conn
	down    string // why the daemon is unreachable ("" while connected)
	waiting bool   // before the first frame

	procs []api.Proc
	hist  map[int][]sample
	logs  map[int]*logBuf
	seq   int64 // the next live log line's seq
	low   int64 // the seq below which seeded lines go
	evs   []events.Event

	// table
	rows      []row
	cursor    int
	selApp    string
	selPMID   int
	top       int // first table row shown
	collapsed map[string]bool
	sortCol   int
	sortDesc  bool
	filter    string

	// lower pane
	pane      int
	stream    int
	scroll    int // lines up from the bottom of the lower pane (0: follow)
	appEvents bool

	// modes
	input     textinput.Model
	inputMode int // one of the mode constants
	confirm   *action
	palette   []command
	palIdx    int
	help      bool
	flash     string
	flashErr  bool
	flashAt   time.Time
	quitting  bool
}

// Input modes.
const (
	modeNone = iota
	modeFilter
	modeSignal
	modePalette
)

// New returns the dashboard's model over b.
func New(b Backend, version string) *Model {
	ctx, stop := context.WithCancel(context.Background())
	ti := textinput.New()
	ti.CharLimit = 200
	return &Model{
		b: b, version: version, ctx: ctx, stop: stop,
		width: 80, height: 24, now: time.Now(),
		selPMID: -1, waiting: true,
		hist: map[int][]sample{}, logs: map[int]*logBuf{}, collapsed: map[string]bool{},
		input: ti,
	}
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd {
	m.gen++
	return tea.Batch(connect(m.ctx, m.b, m.gen), clock())
}

func (m *Model) closeConn() {
	if m.conn != nil {
		m.conn.cancel()
		m.conn = nil
	}
}

// lost records that the daemon went away and schedules a reconnection.
func (m *Model) lost(why string) tea.Cmd {
	m.closeConn()
	m.down = why
	m.gen++
	return reconnectAfter(m.gen, 2*time.Second)
}

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.clampTop()
		return m, nil
	case clockMsg:
		m.now = time.Time(msg)
		if m.flash != "" && m.now.Sub(m.flashAt) > 6*time.Second {
			m.flash = ""
		}
		return m, clock()
	case connectedMsg:
		if msg.c.gen != m.gen || m.quitting {
			msg.c.cancel()
			return m, nil
		}
		m.conn, m.down = msg.c, ""
		m.hist = map[int][]sample{}
		for _, h := range msg.hist {
			s := make([]sample, 0, len(h.Samples))
			for _, x := range h.Samples {
				s = append(s, sample{t: x.Time, cpu: x.CPU, mem: x.Memory})
			}
			m.hist[h.PMID] = s
		}
		m.evs = nil
		for _, b := range m.logs {
			b.seeded = false // lines may have been missed while away
		}
		c := m.conn
		return m, tea.Batch(readFrame(c), readEvents(c), readLogs(c))
	case connectFailedMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		m.down = describeDown(msg.err)
		m.gen++
		return m, reconnectAfter(m.gen, 2*time.Second)
	case reconnectMsg:
		if msg.gen != m.gen || m.quitting {
			return m, nil
		}
		return m, connect(m.ctx, m.b, m.gen)
	case streamEndMsg:
		if m.conn == nil || msg.gen != m.conn.gen {
			return m, nil
		}
		if m.conn.reopened == nil {
			m.conn.reopened = map[string]int{}
		}
		if msg.what != "watch" && m.conn.reopened[msg.what] < 3 {
			// The watch stream tells whether the daemon is gone; this one may have been dropped
			// for falling behind: open it again (a few times per connection).
			m.conn.reopened[msg.what]++
			return m, reopen(m.conn.ctx, m.b, m.conn.gen, msg.what)
		}
		return m, m.lost("the daemon went away (its " + msg.what + " stream ended)")
	case reopenedMsg:
		if m.conn == nil || msg.gen != m.conn.gen {
			return m, nil
		}
		switch {
		case msg.err != nil:
			return m, m.lost(describeDown(msg.err))
		case msg.events != nil:
			m.conn.events = msg.events
			return m, readEvents(m.conn)
		default:
			m.conn.logs = msg.logs
			for _, b := range m.logs {
				b.seeded = false // lines were missed meanwhile
			}
			return m, tea.Batch(readLogs(m.conn), m.seedSelected())
		}
	case frameMsg:
		if m.conn == nil || msg.gen != m.conn.gen {
			return m, nil
		}
		m.applyFrame(msg.f)
		return m, tea.Batch(readFrame(m.conn), m.seedSelected())
	case eventsMsg:
		if m.conn == nil || msg.gen != m.conn.gen {
			return m, nil
		}
		if m.pane == paneEvents && m.scroll > 0 {
			for _, e := range msg.evs {
				if r, ok := m.selected(); !m.appEvents || (ok && e.App == r.app) {
					m.scroll += len(formatEvent(e))
				}
			}
		}
		m.evs = append(m.evs, msg.evs...)
		if len(m.evs) > eventKeep {
			m.evs = slices.Clone(m.evs[len(m.evs)-eventKeep:])
		}
		return m, readEvents(m.conn)
	case logsMsg:
		if m.conn == nil || msg.gen != m.conn.gen {
			return m, nil
		}
		sel := map[int]bool{}
		for _, p := range m.selectedProcs() {
			sel[p.PMID] = true
		}
		for _, l := range msg.lines {
			m.addLog(logEntry{seq: m.seq, pmid: l.PMID, stream: l.Stream, text: l.Text})
			m.seq++
			shown := sel[l.PMID] && !(m.stream == streamOut && l.Stream == "err") && !(m.stream == streamErr && l.Stream != "err")
			if m.pane == paneLogs && m.scroll > 0 && shown {
				m.scroll++ // a scrolled pane keeps showing the same lines
			}
		}
		return m, readLogs(m.conn)
	case seedMsg:
		m.applySeed(msg)
		return m, nil
	case actionDoneMsg:
		if msg.err != nil {
			m.setFlash(msg.what+": "+oneLine(msg.err.Error()), true)
		} else {
			s := msg.what + ": done"
			if len(msg.notes) > 0 {
				s += " (" + strings.Join(msg.notes, "; ") + ")"
			}
			m.setFlash(s, false)
		}
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	if m.inputMode != modeNone {
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return m, cmd
	}
	return m, nil
}

func describeDown(err error) string {
	if api.IsUnreachable(err) {
		return "the corral daemon is not running"
	}
	return "the corral daemon does not answer: " + oneLine(err.Error())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (m *Model) setFlash(s string, isErr bool) {
	m.flash, m.flashErr, m.flashAt = s, isErr, m.now
	if m.flashAt.IsZero() || time.Since(m.flashAt) > time.Second {
		m.flashAt = time.Now()
	}
}

// applyFrame takes a new snapshot: the table, and a sample per online instance for the
// sparklines.
func (m *Model) applyFrame(f api.WatchFrame) {
	m.waiting = false
	m.procs = f.Procs
	if !f.Time.IsZero() {
		m.now = f.Time
	}
	live := map[int]bool{}
	for _, p := range f.Procs {
		live[p.PMID] = true
		if p.Status != "online" {
			continue
		}
		h := m.hist[p.PMID]
		t := f.Time.Unix()
		if n := len(h); n > 0 && h[n-1].t >= t {
			h[n-1] = sample{t: t, cpu: p.CPU, mem: p.Memory} // a frame after an event: same second
		} else {
			h = append(h, sample{t: t, cpu: p.CPU, mem: p.Memory})
		}
		if len(h) > historyKeep {
			h = slices.Clone(h[len(h)-historyKeep:])
		}
		m.hist[p.PMID] = h
	}
	for id := range m.hist {
		if !live[id] {
			delete(m.hist, id)
		}
	}
	for id := range m.logs {
		if !live[id] {
			delete(m.logs, id)
		}
	}
	m.rebuild()
}

func (m *Model) addLog(e logEntry) {
	b := m.logs[e.pmid]
	if b == nil {
		b = &logBuf{}
		m.logs[e.pmid] = b
	}
	b.lines = append(b.lines, e)
	if len(b.lines) > 2*logKeep {
		b.lines = slices.Clone(b.lines[len(b.lines)-logKeep:])
	}
}

// seedSelected asks for the last lines of the log files of the selected instances not yet
// seeded.
func (m *Model) seedSelected() tea.Cmd {
	var cmds []tea.Cmd
	for _, p := range m.selectedProcs() {
		b := m.logs[p.PMID]
		if b == nil {
			b = &logBuf{}
			m.logs[p.PMID] = b
		}
		if b.seeded {
			continue
		}
		b.seeded = true
		cmds = append(cmds, seed(p, m.seq))
	}
	return tea.Batch(cmds...)
}

// applySeed puts the lines read from the files before the live ones (dropping the live lines
// received before the files were read: the files hold them).
func (m *Model) applySeed(msg seedMsg) {
	b := m.logs[msg.pmid]
	if b == nil {
		return // deleted meanwhile
	}
	var live []logEntry
	for _, l := range b.lines {
		if l.seq >= msg.after {
			live = append(live, l)
		}
	}
	n := int64(len(msg.lines))
	m.low -= n
	for i := range msg.lines {
		msg.lines[i].seq = m.low + int64(i)
	}
	b.lines = append(msg.lines, live...)
	if msg.err != nil {
		m.setFlash("logs: "+oneLine(msg.err.Error()), true)
	}
}

// rebuild recomputes the table rows from the processes, the filter, the sort and the
// collapsed apps, keeping the selection on the same app or instance.
func (m *Model) rebuild() {
	f := strings.ToLower(strings.TrimSpace(m.filter))
	groups := map[string][]api.Proc{}
	var names []string
	for _, p := range m.procs {
		if f != "" && !matches(p, f) {
			continue
		}
		if _, ok := groups[p.Name]; !ok {
			names = append(names, p.Name)
		}
		groups[p.Name] = append(groups[p.Name], p)
	}
	for _, n := range names {
		sort.SliceStable(groups[n], func(i, j int) bool { return m.less(groups[n][i:i+1], groups[n][j:j+1]) })
	}
	sort.SliceStable(names, func(i, j int) bool { return m.less(groups[names[i]], groups[names[j]]) })
	rows := m.rows[:0]
	for _, n := range names {
		g := groups[n]
		if len(g) > 1 {
			rows = append(rows, row{app: n, pmid: -1, procs: g})
			if m.collapsed[n] {
				continue
			}
		}
		for _, p := range g {
			rows = append(rows, row{app: n, pmid: p.PMID, procs: []api.Proc{p}})
		}
	}
	m.rows = rows
	m.cursor = m.findSel()
	m.clampTop()
}

func matches(p api.Proc, f string) bool {
	for _, s := range []string{p.Name, p.Namespace, p.Status, strconv.Itoa(p.PMID), strconv.Itoa(p.PID)} {
		if strings.Contains(strings.ToLower(s), f) {
			return true
		}
	}
	return false
}

// findSel returns the row of the selection, or the closest one.
func (m *Model) findSel() int {
	if len(m.rows) == 0 {
		return 0
	}
	for i, r := range m.rows {
		if r.app == m.selApp && r.pmid == m.selPMID {
			return i
		}
	}
	for i, r := range m.rows { // the instance's app collapsed, or the app's header gone
		if r.app == m.selApp {
			m.selPMID = r.pmid
			return i
		}
	}
	c := min(m.cursor, len(m.rows)-1)
	m.selApp, m.selPMID = m.rows[c].app, m.rows[c].pmid
	return c
}

// less orders two groups (or two instances, as groups of one) by the sort column.
func (m *Model) less(a, b []api.Proc) bool {
	ka, kb := m.key1(a), m.key1(b)
	if ka == kb {
		return a[0].PMID < b[0].PMID
	}
	if m.sortDesc {
		return ka > kb
	}
	return ka < kb
}

// key1 is the sort key of a group, as a string that compares right or as a zero-padded number.
func (m *Model) key1(g []api.Proc) string {
	var cpu float64
	var mem uint64
	restarts := 0
	var up time.Duration
	for _, p := range g {
		cpu += p.CPU
		mem += p.Memory
		restarts += p.Restarts
		if p.Status == "online" && !p.StartedAt.IsZero() {
			up = max(up, m.now.Sub(p.StartedAt))
		}
	}
	switch m.sortCol {
	case sortName:
		return g[0].Name
	case sortStatus:
		return statusRank(g[0].Status)
	case sortRestarts:
		return fmt.Sprintf("%012d", restarts)
	case sortUptime:
		return fmt.Sprintf("%020d", up)
	case sortCPU:
		return fmt.Sprintf("%015.1f", cpu)
	case sortMem:
		return fmt.Sprintf("%020d", mem)
	}
	return fmt.Sprintf("%012d", g[0].PMID)
}

func statusRank(s string) string {
	switch s {
	case "errored":
		return "0"
	case "waiting restart":
		return "1"
	case "launching", "stopping":
		return "2"
	case "stopped":
		return "3"
	}
	return "4" + s
}

func (m *Model) tableHeight() int {
	// title, table header, 2 sparkline lines, pane tabs, status line; the rest is shared.
	free := m.height - 6
	if free < 4 {
		return max(1, free/2)
	}
	h := free * 45 / 100
	return max(3, min(h, max(len(m.rows), 3)))
}

func (m *Model) clampTop() {
	h := m.tableHeight()
	if m.cursor < m.top {
		m.top = m.cursor
	}
	if m.cursor >= m.top+h {
		m.top = m.cursor - h + 1
	}
	m.top = max(0, min(m.top, len(m.rows)-h))
}

func (m *Model) move(d int) {
	if len(m.rows) == 0 {
		return
	}
	m.cursor = max(0, min(len(m.rows)-1, m.cursor+d))
	r := m.rows[m.cursor]
	if r.app != m.selApp || r.pmid != m.selPMID {
		m.scroll = 0
	}
	m.selApp, m.selPMID = r.app, r.pmid
	m.clampTop()
}

// selected returns the selected row.
func (m *Model) selected() (row, bool) {
	if m.cursor < 0 || m.cursor >= len(m.rows) {
		return row{}, false
	}
	return m.rows[m.cursor], true
}

// selectedProcs returns the instances the selection covers (all of an app for its header).
func (m *Model) selectedProcs() []api.Proc {
	r, ok := m.selected()
	if !ok {
		return nil
	}
	return r.procs
}

// target is the API target of the selection: the app name for a header row (or an app with a
// single instance), the pm_id for an instance of a multi-instance app.
func (m *Model) target() (target, label string, ok bool) {
	r, ok := m.selected()
	if !ok {
		return "", "", false
	}
	if r.isApp() {
		return r.app, "app " + r.app, true
	}
	p := r.procs[0]
	return strconv.Itoa(p.PMID), fmt.Sprintf("%s[%d]", p.Name, p.PMID), true
}
