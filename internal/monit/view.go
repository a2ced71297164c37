package monit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/events"
	"github.com/corralhq/corral/internal/lstable"
)

// Styles use the 16 basic colours (and bold, faint, reverse), which every terminal and SSH
// client shows.
var (
	stTitle    = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("4"))
	stHeader   = lipgloss.NewStyle().Bold(true).Underline(true)
	stSel      = lipgloss.NewStyle().Reverse(true)
	stApp      = lipgloss.NewStyle().Bold(true)
	stFaint    = lipgloss.NewStyle().Faint(true)
	stGreen    = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	stRed      = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
	stYellow   = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	stCyan     = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
	stMagenta  = lipgloss.NewStyle().Foreground(lipgloss.Color("5"))
	stTab      = lipgloss.NewStyle().Bold(true).Reverse(true)
	stKey      = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("6"))
	stPrompt   = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("0")).Background(lipgloss.Color("3"))
	stFlashErr = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("15")).Background(lipgloss.Color("1"))
	stFlash    = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
)

// fit truncates s to w cells and pads it with spaces to exactly w.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	if n := ansi.StringWidth(s); n < w {
		s += strings.Repeat(" ", w-n)
	}
	return s
}

// cell truncates plain s to w cells and aligns it (right when right is set).
func cell(s string, w int, right bool) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	pad := strings.Repeat(" ", w-ansi.StringWidth(s))
	if right {
		return pad + s
	}
	return s + pad
}

// View implements tea.Model: exactly height lines of exactly width cells, so that bubbletea's
// line diff repaints only what changed (no flicker).
func (m *Model) View() string {
	if m.quitting {
		return ""
	}
	w, h := m.width, m.height
	if w < 20 || h < 8 {
		return fit("corral monit: the terminal is too small", w)
	}
	var lines []string
	switch {
	case m.help:
		lines = m.helpLines()
	case m.down != "" || m.waiting:
		lines = m.downLines()
	default:
		lines = m.mainLines()
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	lines = lines[:h]
	for i := range lines {
		lines[i] = fit(lines[i], w)
	}
	return strings.Join(lines, "\n")
}

func (m *Model) titleLine() string {
	online := 0
	apps := map[string]bool{}
	for _, p := range m.procs {
		apps[p.Name] = true
		if p.Status == "online" {
			online++
		}
	}
	left := fmt.Sprintf(" corral monit  %d apps · %d processes · %d online", len(apps), len(m.procs), online)
	order := "↑"
	if m.sortDesc {
		order = "↓"
	}
	right := fmt.Sprintf("sort %s%s ", sortNames[m.sortCol], order)
	if m.filter != "" {
		right = fmt.Sprintf("filter %q  %s", m.filter, right)
	}
	right += m.now.Local().Format("15:04:05") + " "
	gap := m.width - ansi.StringWidth(left) - ansi.StringWidth(right)
	if gap < 1 {
		return stTitle.Render(fit(left, m.width))
	}
	return stTitle.Render(left + strings.Repeat(" ", gap) + right)
}

func (m *Model) downLines() []string {
	lines := []string{m.titleLine(), ""}
	if m.down == "" {
		return append(lines, "  connecting to the corral daemon…")
	}
	return append(lines,
		"  "+stFlashErr.Render(" "+m.down+" "),
		"",
		"  Retrying every 2 seconds. Start it with `corral ping` or `corral resurrect`.",
		"  "+stKey.Render("q")+" quits.")
}

// columns are the table's column widths for the terminal width.
type columns struct {
	name, ns, mode, pid, status, restarts, uptime, cpu, mem int
}

func (m *Model) columns() columns {
	c := columns{ns: 9, mode: 7, pid: 7, status: 9, restarts: 3, uptime: 6, cpu: 5, mem: 7}
	fixed := func() int {
		return 2 + 3 + 1 + c.ns + c.mode + c.pid + c.status + c.restarts + c.uptime + c.cpu + c.mem + 10
	}
	c.name = m.width - fixed()
	if c.name < 10 { // narrow: drop the namespace, then shrink
		c.ns = 0
		c.name = m.width - fixed() + 1
	}
	if c.name < 8 {
		c.mode = 0
		c.name = m.width - fixed() + 1
	}
	c.name = max(c.name, 4)
	return c
}

func (m *Model) headerLine(c columns) string {
	parts := []string{"  ", cell("ID", 3, true), " ", cell("NAME", c.name, false)}
	if c.ns > 0 {
		parts = append(parts, " ", cell("NAMESPACE", c.ns, false))
	}
	if c.mode > 0 {
		parts = append(parts, " ", cell("MODE", c.mode, false))
	}
	parts = append(parts, " ", cell("PID", c.pid, true), " ", cell("STATUS", c.status, false), " ",
		cell("↺", c.restarts, true), " ", cell("UPTIME", c.uptime, true), " ", cell("CPU", c.cpu, true), " ", cell("MEM", c.mem, true))
	return stHeader.Render(fit(strings.Join(parts, ""), m.width))
}

func statusStyle(s string) lipgloss.Style {
	switch s {
	case "online":
		return stGreen
	case "errored":
		return stRed
	case "stopped":
		return stFaint
	}
	return stYellow
}

func shortStatus(s string) string {
	if s == "waiting restart" {
		return "waiting"
	}
	return s
}

func (m *Model) rowLine(r row, c columns, sel bool) string {
	style := func(st lipgloss.Style, s string) string {
		if sel {
			return s
		}
		return st.Render(s)
	}
	var id, name, ns, mode, pid, status, restarts, up, cpu, mem string
	var stStatus lipgloss.Style
	p0 := r.procs[0]
	ns = p0.Namespace
	if ns == "" {
		ns = "default"
	}
	mode = modeName(p0)
	if r.isApp() {
		online, rs := 0, 0
		var cpuSum float64
		var memSum uint64
		for _, p := range r.procs {
			if p.Status == "online" {
				online++
			}
			rs += p.Restarts
			cpuSum += p.CPU
			memSum += p.Memory
		}
		arrow := "▾ "
		if m.collapsed[r.app] {
			arrow = "▸ "
		}
		name = arrow + r.app + " ×" + strconv.Itoa(len(r.procs))
		status = fmt.Sprintf("%d/%d up", online, len(r.procs))
		stStatus = stGreen
		if online < len(r.procs) {
			stStatus = stYellow
		}
		if online == 0 {
			stStatus = stRed
		}
		restarts, cpu, mem = strconv.Itoa(rs), lstable.HumanCPU(cpuSum), lstable.HumanBytes(memSum)
	} else {
		p := p0
		id = strconv.Itoa(p.PMID)
		name = p.Name
		if len(m.rowsOf(r.app)) > 1 {
			name = "  " + p.Name
		}
		if p.PID > 0 {
			pid = strconv.Itoa(p.PID)
		}
		status, stStatus = shortStatus(p.Status), statusStyle(p.Status)
		restarts = strconv.Itoa(p.Restarts)
		up = "0"
		if p.Status == "online" && !p.StartedAt.IsZero() {
			up = lstable.HumanDuration(m.now.Sub(p.StartedAt))
		}
		cpu, mem = lstable.HumanCPU(p.CPU), lstable.HumanBytes(p.Memory)
	}
	nameCell := cell(name, c.name, false)
	if r.isApp() {
		nameCell = style(stApp, nameCell)
	}
	parts := []string{"  ", cell(id, 3, true), " ", nameCell}
	if c.ns > 0 {
		parts = append(parts, " ", style(stFaint, cell(ns, c.ns, false)))
	}
	if c.mode > 0 {
		parts = append(parts, " ", cell(mode, c.mode, false))
	}
	rsStyle := lipgloss.NewStyle()
	if n, _ := strconv.Atoi(restarts); n > 0 {
		rsStyle = stYellow
	}
	parts = append(parts, " ", cell(pid, c.pid, true), " ", style(stStatus, cell(status, c.status, false)), " ",
		style(rsStyle, cell(restarts, c.restarts, true)), " ", cell(up, c.uptime, true), " ", cell(cpu, c.cpu, true), " ", cell(mem, c.mem, true))
	line := strings.Join(parts, "")
	if sel {
		line = "▌" + line[1:]
		return stSel.Render(fit(line, m.width))
	}
	return line
}

// rowsOf returns the table rows of app (header included).
func (m *Model) rowsOf(app string) []row {
	var out []row
	for _, r := range m.rows {
		if r.app == app {
			out = append(out, r)
		}
	}
	return out
}

func (m *Model) paneHeight() int {
	return max(1, m.height-6-m.tableHeight())
}

func (m *Model) mainLines() []string {
	c := m.columns()
	lines := []string{m.titleLine(), m.headerLine(c)}
	th := m.tableHeight()
	if len(m.rows) == 0 {
		msg := "  no processes — start one with `corral start app.js`"
		if m.filter != "" {
			msg = fmt.Sprintf("  nothing matches %q (esc clears the filter)", m.filter)
		}
		lines = append(lines, stFaint.Render(msg))
	}
	for i := m.top; i < len(m.rows) && i < m.top+th; i++ {
		lines = append(lines, m.rowLine(m.rows[i], c, i == m.cursor))
	}
	for len(lines) < 2+th {
		lines = append(lines, "")
	}
	lines = append(lines, m.sparkLines()...)
	lines = append(lines, m.tabLine())
	lines = append(lines, m.paneLines(m.paneHeight())...)
	for len(lines) < m.height-1 {
		lines = append(lines, "")
	}
	lines = lines[:m.height-1]
	return append(lines, m.statusLine())
}

// series returns the selection's samples (summed over an app's instances, by position from
// the newest).
func (m *Model) series() []sample {
	procs := m.selectedProcs()
	var out []sample
	for _, p := range procs {
		h := m.hist[p.PMID]
		if len(h) > len(out) {
			out = append(make([]sample, len(h)-len(out)), out...)
		}
		off := len(out) - len(h)
		for i, s := range h {
			out[off+i].t = s.t
			out[off+i].cpu += s.cpu
			out[off+i].mem += s.mem
		}
	}
	return out
}

func (m *Model) sparkLines() []string {
	s := m.series()
	label := ""
	if _, l, ok := m.target(); ok {
		label = l
	}
	w := m.width - 34
	cpus := make([]float64, len(s))
	mems := make([]float64, len(s))
	var cpuMax, memMax float64
	memMin := math.Inf(1)
	for i, x := range s {
		cpus[i], mems[i] = x.cpu, float64(x.mem)
		cpuMax, memMax = max(cpuMax, x.cpu), max(memMax, float64(x.mem))
		memMin = min(memMin, float64(x.mem))
	}
	var cpuNow float64
	var memNow uint64
	if n := len(s); n > 0 {
		cpuNow, memNow = s[n-1].cpu, s[n-1].mem
	}
	span := ""
	if n := len(s); n > 1 {
		span = lstable.HumanDuration(time.Duration(s[n-1].t-s[0].t) * time.Second)
	}
	memLo, memHi := 0.0, memMax
	if memMax > 0 { // the variation shows; a flat line sits below the top
		memLo, memHi = memMin*0.6, memMax*1.1
	}
	cpuLine := fmt.Sprintf(" %s %s %s", stCyan.Render("CPU"), stCyan.Render(spark(cpus, w, 0, max(cpuMax, 10))),
		cell(lstable.HumanCPU(cpuNow), 7, true)+stFaint.Render(cell(" max "+lstable.HumanCPU(cpuMax), 17, false)))
	memLine := fmt.Sprintf(" %s %s %s", stMagenta.Render("MEM"), stMagenta.Render(spark(mems, w, memLo, memHi)),
		cell(lstable.HumanBytes(memNow), 7, true)+stFaint.Render(cell(" "+span+" "+label, 17, false)))
	return []string{cpuLine, memLine}
}

var sparkChars = []rune(" ▁▂▃▄▅▆▇█")

// spark renders vs (oldest first) in w cells, scaled between lo and hi; more values than cells
// are bucketed (the bucket's maximum), fewer are right-aligned.
func spark(vs []float64, w int, lo, hi float64) string {
	if w <= 0 {
		return ""
	}
	cells := make([]float64, 0, w)
	if len(vs) > w {
		for i := 0; i < w; i++ {
			a, b := i*len(vs)/w, (i+1)*len(vs)/w
			v := vs[a]
			for _, x := range vs[a:b] {
				v = max(v, x)
			}
			cells = append(cells, v)
		}
	} else {
		cells = vs
	}
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", w-len(cells)))
	for _, v := range cells {
		i := 1
		if hi > lo {
			i = 1 + int(math.Round((v-lo)/(hi-lo)*float64(len(sparkChars)-2)))
		}
		b.WriteRune(sparkChars[max(1, min(len(sparkChars)-1, i))])
	}
	return b.String()
}

func (m *Model) tabLine() string {
	var parts []string
	for i, n := range paneNames {
		if i == m.pane {
			parts = append(parts, stTab.Render(" "+n+" "))
		} else {
			parts = append(parts, stFaint.Render(" "+n+" "))
		}
	}
	_, label, _ := m.target()
	info := ""
	switch m.pane {
	case paneLogs:
		info = label + " · " + streamNames[m.stream]
	case paneEvents:
		info = "all apps"
		if m.appEvents {
			if r, ok := m.selected(); ok {
				info = "app " + r.app
			}
		}
	case paneDetails:
		info = label
	}
	if m.pane != paneDetails {
		if m.scroll > 0 {
			info += stYellow.Render(fmt.Sprintf(" · scrolled %d up (F follows)", m.scroll))
		} else {
			info += stGreen.Render(" · following")
		}
	}
	return strings.Join(parts, "") + "  " + info
}

// window returns the h lines of ls that the pane's scroll shows.
func (m *Model) window(ls []string, h int) []string {
	maxScroll := max(0, len(ls)-h)
	if m.scroll > maxScroll {
		m.scroll = maxScroll
	}
	end := len(ls) - m.scroll
	return ls[max(0, end-h):end]
}

func (m *Model) paneLines(h int) []string {
	if m.inputMode == modePalette {
		return m.paletteLines(h)
	}
	// Only the lines the window can show are formatted: the buffers hold thousands.
	need := h + m.scroll
	switch m.pane {
	case paneEvents:
		return m.window(m.eventLines(need), h)
	case paneDetails:
		return m.detailLines()
	}
	return m.window(m.logLines(need), h)
}

// logLines returns the last need lines of the selection's logs (all of them when fewer), in the
// chosen streams, formatted.
func (m *Model) logLines(need int) []string {
	procs := m.selectedProcs()
	if len(procs) == 0 {
		return nil
	}
	var bufs [][]logEntry
	for _, p := range procs {
		if b := m.logs[p.PMID]; b != nil {
			bufs = append(bufs, b.lines)
		}
	}
	var shown []logEntry
	for _, l := range mergeLogs(bufs) {
		if (m.stream == streamOut && l.stream == "err") || (m.stream == streamErr && l.stream != "err") {
			continue
		}
		shown = append(shown, l)
	}
	shown = shown[max(0, len(shown)-need):]
	multi := len(procs) > 1
	out := make([]string, 0, len(shown))
	for _, l := range shown {
		text := strings.ReplaceAll(l.text, "\t", "    ")
		text = ansi.Strip(text)
		prefix := ""
		if multi {
			prefix = stFaint.Render(fmt.Sprintf("%d│", l.pmid))
		}
		if l.stream == "err" {
			out = append(out, " "+prefix+stRed.Render(text))
		} else {
			out = append(out, " "+prefix+text)
		}
	}
	if len(out) == 0 {
		return []string{stFaint.Render(" (no log lines yet)")}
	}
	return out
}

// mergeLogs merges per-instance buffers (each in seq order) by seq.
func mergeLogs(bufs [][]logEntry) []logEntry {
	if len(bufs) == 1 {
		return bufs[0]
	}
	var out []logEntry
	idx := make([]int, len(bufs))
	for {
		best := -1
		for i, b := range bufs {
			if idx[i] < len(b) && (best < 0 || b[idx[i]].seq < bufs[best][idx[best]].seq) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, bufs[best][idx[best]])
		idx[best]++
	}
}

// eventLines returns the lines of the last events, at least need of them when there are enough.
func (m *Model) eventLines(need int) []string {
	app := ""
	if m.appEvents {
		if r, ok := m.selected(); ok {
			app = r.app
		}
	}
	var rev [][]string // newest first
	n := 0
	for i := len(m.evs) - 1; i >= 0 && n < need; i-- {
		if e := m.evs[i]; app == "" || e.App == app {
			ls := formatEvent(e)
			rev = append(rev, ls)
			n += len(ls)
		}
	}
	var out []string
	for i := len(rev) - 1; i >= 0; i-- {
		out = append(out, rev[i]...)
	}
	if len(out) == 0 {
		return []string{stFaint.Render(" (no events yet)")}
	}
	return out
}

// formatEvent renders an event on one line (plus its stderr lines), coloured by what happened.
func formatEvent(e events.Event) []string {
	who := e.App
	if e.PMID != nil {
		who = fmt.Sprintf("%s[%d]", e.App, *e.PMID)
	}
	if who == "" {
		who = "daemon"
	}
	var what []string
	st := lipgloss.NewStyle()
	switch e.Type {
	case events.Status:
		from := e.From
		if from == "" {
			from = "new"
		}
		what = append(what, from+" → "+e.To)
		st = statusStyle(e.To)
	case events.Exit:
		if e.Signal != "" {
			what = append(what, "signal "+e.Signal)
		} else if e.Code != nil {
			what = append(what, fmt.Sprintf("code %d", *e.Code))
		}
		what = append(what, "after "+lstable.HumanDuration(time.Duration(e.Uptime)*time.Millisecond))
		st = stYellow
		if e.Code != nil && *e.Code != 0 && e.Reason != "stopped" {
			st = stRed
		}
	case events.Restart:
		st = stYellow
	case events.SpawnFailed:
		st = stRed
	case events.Reload, events.App:
		st = stCyan
	}
	if e.PID > 0 {
		what = append([]string{fmt.Sprintf("pid %d", e.PID)}, what...)
	}
	if e.Reason != "" {
		what = append(what, "("+e.Reason+")")
	}
	if e.Message != "" {
		what = append(what, e.Message)
	}
	line := " " + stFaint.Render(e.Time.Local().Format("15:04:05")) + " " + who + " " + st.Render(string(e.Type)) + " " + strings.Join(what, " ")
	out := []string{line}
	for _, l := range e.Stderr {
		out = append(out, "     "+stRed.Render("│ "+ansi.Strip(l)))
	}
	return out
}

func (m *Model) detailLines() []string {
	procs := m.selectedProcs()
	if len(procs) == 0 {
		return nil
	}
	p := procs[0]
	r, _ := m.selected()
	kv := func(k, v string) string {
		return " " + stFaint.Render(cell(k, 13, false)) + " " + v
	}
	script := p.ExecPath
	if script == "" {
		script = p.App.Script
	}
	interp := orNA(p.Interpreter)
	if len(p.App.InterpreterArgs) > 0 {
		interp += " " + strings.Join(p.App.InterpreterArgs, " ")
	}
	lastExit := "-"
	if p.ExitSignal != "" {
		lastExit = "signal " + p.ExitSignal
	} else if p.Restarts > 0 || p.Status == "stopped" || p.Status == "errored" {
		lastExit = "code " + strconv.Itoa(p.ExitCode)
	}
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	var out []string
	if r.isApp() {
		out = append(out, kv("app", fmt.Sprintf("%s · %d instances (pm_id %s)", r.app, len(procs), pmids(procs))))
	} else {
		out = append(out, kv("process", fmt.Sprintf("%s[%d] · instance %d · pid %s", p.Name, p.PMID, p.Instance, orNA(pidStr(p.PID)))))
	}
	out = append(out,
		kv("script", script),
		kv("args", orNA(strings.Join(p.App.Args, " "))),
		kv("interpreter", interp),
		kv("cwd", orNA(p.Cwd)),
		kv("exec mode", modeName(p)+" · namespace "+ns),
		kv("restarts", fmt.Sprintf("%d (unstable %d)", p.Restarts, p.UnstableRestarts)),
		kv("last exit", lastExit),
		kv("created", fmtTime(p.CreatedAt)),
		kv("out log", orNA(p.OutLog)),
		kv("err log", orNA(p.ErrLog)),
	)
	if p.CombinedLog != "" {
		out = append(out, kv("combined log", p.CombinedLog))
	}
	out = append(out, kv("pid file", orNA(p.PidFile)))
	if len(p.App.Listen) > 0 {
		out = append(out, kv("listen", strings.Join(p.App.Listen, ", ")))
	}
	if len(p.App.Watch) > 0 {
		out = append(out, kv("watch", strings.Join(p.App.Watch, ", ")))
	}
	if p.App.MaxMemoryRestart > 0 {
		out = append(out, kv("max memory", lstable.HumanBytes(uint64(p.App.MaxMemoryRestart))))
	}
	if p.App.CronRestart != "" {
		out = append(out, kv("cron restart", p.App.CronRestart))
	}
	for _, n := range p.Notes {
		out = append(out, kv("note", stYellow.Render(n)))
	}
	if m.scroll > 0 {
		out = out[min(m.scroll, max(0, len(out)-1)):]
	}
	return out
}

func pmids(ps []api.Proc) string {
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p.PMID))
	}
	return strings.Join(s, ",")
}

func pidStr(pid int) string {
	if pid <= 0 {
		return ""
	}
	return strconv.Itoa(pid)
}

func (m *Model) paletteLines(h int) []string {
	out := []string{" " + m.input.View()}
	start := 0
	if m.palIdx >= h-1 {
		start = m.palIdx - (h - 2)
	}
	for i := start; i < len(m.palette) && len(out) < h; i++ {
		c := m.palette[i]
		line := fmt.Sprintf("   %s %s", cell(c.title, 34, false), stFaint.Render(c.keys))
		if i == m.palIdx {
			line = stSel.Render(fit(fmt.Sprintf(" ▶ %s %s", cell(c.title, 34, false), c.keys), m.width))
		}
		out = append(out, line)
	}
	if len(m.palette) == 0 {
		out = append(out, stFaint.Render("   no command matches"))
	}
	return out
}

func (m *Model) statusLine() string {
	switch {
	case m.confirm != nil:
		return stPrompt.Render(" "+m.confirm.prompt()+" ") + " " + stKey.Render("y") + " yes  " + stKey.Render("n") + " no"
	case m.inputMode == modeFilter || m.inputMode == modeSignal:
		hint := "  enter applies · esc cancels"
		return m.input.View() + stFaint.Render(hint)
	case m.inputMode == modePalette:
		return stFaint.Render(" ↑↓ choose · enter runs · esc closes")
	case m.flash != "":
		if m.flashErr {
			return stFlashErr.Render(" " + m.flash + " ")
		}
		return stFlash.Render(" " + m.flash)
	}
	keys := []string{"?", "help", ":", "commands", "/", "filter", "r", "restart", "R", "reload", "x", "stop", "s", "start", "tab", "pane", "q", "quit"}
	var b strings.Builder
	for i := 0; i < len(keys); i += 2 {
		b.WriteString(" " + stKey.Render(keys[i]) + " " + keys[i+1])
	}
	return b.String()
}

// helpKeys is the help overlay's content.
var helpKeys = [][2]string{
	{"↑ ↓  j k", "select a process or app (g/G: first, last)"},
	{"space enter", "fold or unfold an app's instances"},
	{"/", "filter by name, namespace, status, id (esc clears)"},
	{"o  O", "sort by the next column · reverse the order"},
	{"tab", "lower pane: logs, events, details"},
	{"l", "logs: stdout+stderr, stdout, stderr"},
	{"a", "events: all apps or the selected app"},
	{"pgup pgdn [ ]", "scroll the pane · F follows again"},
	{"r  R", "restart · reload (zero downtime)"},
	{"x  s  d", "stop · start · delete"},
	{"+  -", "scale the app by one instance"},
	{"K", "send a signal (type its name)"},
	{"f", "flush (empty) the log files"},
	{": ctrl+p", "command palette"},
	{"q ctrl+c", "quit"},
}

func (m *Model) helpLines() []string {
	lines := []string{m.titleLine(), "", "  " + stApp.Render("Keys") + stFaint.Render("  (actions apply to the selected process, or to the whole app on its header row, and ask first)"), ""}
	for _, k := range helpKeys {
		lines = append(lines, "  "+stKey.Render(cell(k[0], 15, false))+" "+k[1])
	}
	lines = append(lines, "", stFaint.Render("  any key closes this help"))
	return lines
}

// Formatting helpers, as `corral ls` renders them.

func modeName(p api.Proc) string {
	if strings.HasPrefix(p.App.ExecMode, "cluster") {
		return "cluster"
	}
	return "fork"
}

func orNA(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
