package monit

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/api/apitest"
	"github.com/corralhq/corral/internal/appspec"
	"github.com/corralhq/corral/internal/events"
)

// fakeBackend is apitest.Fake with the dashboard's streams, which the tests feed directly as
// messages (Update), so these are never read.
type fakeBackend struct {
	*apitest.Fake
	logsOpened *int
}

// Logs is every process's lines, as the daemon's Logs with no target.
func (f fakeBackend) Logs(context.Context, []string) (<-chan api.LogLine, error) {
	*f.logsOpened++
	return make(chan api.LogLine), nil
}

func (fakeBackend) Watch(context.Context, api.WatchRequest) (<-chan api.WatchFrame, error) {
	return make(chan api.WatchFrame), nil
}
func (fakeBackend) History(context.Context, api.HistoryRequest) ([]api.ProcHistory, error) {
	return nil, nil
}
func (fakeBackend) Events(context.Context, api.EventsRequest) (<-chan events.Event, error) {
	return make(chan events.Event), nil
}

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func testProcs() []api.Proc {
	mk := func(id int, name, status string, pid int, cpu float64, mem uint64) api.Proc {
		mode := "fork"
		if name == "web" {
			mode = "cluster"
		}
		return api.Proc{PMID: id, Name: name, Namespace: "default", Status: status, PID: pid, CPU: cpu, Memory: mem,
			StartedAt: t0.Add(-90 * time.Second), App: appspec.App{Name: name, ExecMode: mode, Script: "/srv/" + name + ".js"},
			OutLog: "/nonexistent/" + name + "-out.log", ErrLog: "/nonexistent/" + name + "-err.log"}
	}
	return []api.Proc{
		mk(0, "api", "online", 101, 3.5, 50<<20),
		mk(1, "web", "online", 102, 20, 40<<20),
		mk(2, "web", "online", 103, 1, 90<<20),
		mk(3, "worker-with-a-very-long-name", "errored", 0, 0, 0),
	}
}

// connected returns a model of size w×h that received one frame of procs.
func connected(t *testing.T, w, h int) (*Model, *apitest.Fake) {
	t.Helper()
	fake := &apitest.Fake{}
	m := New(fakeBackend{fake, new(int)}, "test")
	m.Init()
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(connectedMsg{c: &conn{gen: m.gen, cancel: func() {}}})
	m.Update(frameMsg{gen: m.gen, f: api.WatchFrame{Time: t0, Procs: testProcs()}})
	return m, fake
}

func press(m *Model, keys ...string) tea.Cmd {
	var last tea.Cmd
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			msg = tea.KeyMsg{Type: tea.KeyEsc}
		case "tab":
			msg = tea.KeyMsg{Type: tea.KeyTab}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		_, last = m.Update(msg)
	}
	return last
}

func checkSize(t *testing.T, view string, w, h int) {
	t.Helper()
	lines := strings.Split(view, "\n")
	if len(lines) != h {
		t.Errorf("view has %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n != w {
			t.Errorf("line %d is %d cells wide, want %d: %q", i, n, w, ansi.Strip(l))
		}
	}
}

// At 80×24 every column is there, apps with several instances are grouped, and the view is
// exactly the terminal's size (nothing wraps, nothing scrolls).
func TestViewFitsAnd80x24(t *testing.T) {
	m, _ := connected(t, 80, 24)
	v := m.View()
	checkSize(t, v, 80, 24)
	plain := ansi.Strip(v)
	for _, want := range []string{"NAMESPACE", "MODE", "PID", "STATUS", "UPTIME", "CPU", "MEM", "▾ web ×2", "cluster", "errored", "1m", "50.0mb", "3 apps"} {
		if !strings.Contains(plain, want) {
			t.Errorf("%q missing:\n%s", want, plain)
		}
	}
	for _, size := range [][2]int{{60, 16}, {200, 60}, {30, 10}} {
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		checkSize(t, m.View(), size[0], size[1])
		press(m, "?")
		checkSize(t, m.View(), size[0], size[1])
		press(m, "x") // closes the help
	}
}

// An action asks first; "n" cancels it, "y" runs it on the selected instance.
func TestActionsAskForConfirmation(t *testing.T) {
	m, fake := connected(t, 80, 24)
	fake.Start(context.Background(), []appspec.App{{Name: "api", Script: "/srv/api.js"}}, api.StartOptions{})
	press(m, "r")
	if m.confirm == nil || !strings.Contains(ansi.Strip(m.View()), "Restart api[0]?") {
		t.Fatalf("no confirmation:\n%s", ansi.Strip(m.View()))
	}
	press(m, "n")
	if m.confirm != nil {
		t.Fatal("n did not cancel")
	}
	press(m, "r")
	cmd := press(m, "y")
	if cmd == nil {
		t.Fatal("y ran nothing")
	}
	msg := cmd()
	if done, ok := msg.(actionDoneMsg); !ok || done.err != nil {
		t.Fatalf("action: %#v", msg)
	}
	if calls := fake.Calls(); !slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "restart [0]") }) {
		t.Fatalf("calls %q: want a restart of pm_id 0", calls)
	}
	// On an app's header row, an action targets the app by name; scale acts on the app.
	press(m, "down") // web's header
	press(m, "x")
	if m.confirm == nil || m.confirm.target != "web" || m.confirm.prompt() != "Stop app web?" {
		t.Fatalf("stop on the header row: %+v", m.confirm)
	}
	press(m, "esc")
	press(m, "down", "+")
	if m.confirm == nil || m.confirm.verb != "scale" || m.confirm.arg != "3" || m.confirm.target != "web" {
		t.Fatalf("scale +1 on web[1]: %+v", m.confirm)
	}
	press(m, "n")
	// start on a running process says so instead of restarting it.
	press(m, "s")
	if m.confirm != nil || !strings.Contains(m.flash, "already running") {
		t.Fatalf("start on a running process: confirm %+v flash %q", m.confirm, m.flash)
	}
}

// Keys typed faster than the terminal is read arrive as one message; each still counts.
func TestKeysInOneMessage(t *testing.T) {
	m, _ := connected(t, 80, 24)
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("jjr")})
	if m.confirm == nil || m.confirm.label != "web[1]" {
		t.Fatalf("jjr: confirm %+v, want a restart of web[1]", m.confirm)
	}
}

// "/" filters the table; esc clears it; "o" and "O" sort.
func TestFilterAndSort(t *testing.T) {
	m, _ := connected(t, 100, 30)
	press(m, "/")
	press(m, "w", "o", "r")
	if len(m.rows) != 1 || m.rows[0].app != "worker-with-a-very-long-name" {
		t.Fatalf("filter wor: rows %+v", m.rows)
	}
	press(m, "enter")
	if m.filter != "wor" || m.inputMode != modeNone {
		t.Fatalf("enter: filter %q mode %d", m.filter, m.inputMode)
	}
	press(m, "esc")
	if m.filter != "" || len(m.rows) != 5 {
		t.Fatalf("esc: filter %q rows %d", m.filter, len(m.rows))
	}
	for m.sortCol != sortMem {
		press(m, "o")
	}
	press(m, "O") // largest first
	var order []string
	for _, r := range m.rows {
		order = append(order, r.app+":"+strconv.Itoa(r.pmid))
	}
	want := "web:-1 web:2 web:1 api:0 worker-with-a-very-long-name:3"
	if strings.Join(order, " ") != want {
		t.Fatalf("sorted by memory, descending: %s, want %s", strings.Join(order, " "), want)
	}
}

// The log pane opens with the lines read from the files, then adds the live ones; a stream
// choice filters them; lines the files already had are not shown twice.
func TestLogPaneSeedsThenFollows(t *testing.T) {
	m, _ := connected(t, 80, 24)
	before := m.seq
	m.Update(logsMsg{gen: m.gen, lines: []api.LogLine{{PMID: 0, Name: "api", Stream: "out", Text: "also in the file"}}})
	m.Update(seedMsg{pmid: 0, after: before + 1, lines: []logEntry{
		{pmid: 0, stream: "out", text: "old out"}, {pmid: 0, stream: "err", text: "old err"}, {pmid: 0, stream: "out", text: "also in the file"},
	}})
	m.Update(logsMsg{gen: m.gen, lines: []api.LogLine{{PMID: 0, Name: "api", Stream: "out", Text: "live line"}, {PMID: 1, Name: "web", Stream: "out", Text: "not api"}}})
	v := ansi.Strip(m.View())
	if strings.Count(v, "also in the file") != 1 || strings.Contains(v, "not api") {
		t.Fatalf("log pane:\n%s", v)
	}
	if i, j, k := strings.Index(v, "old out"), strings.Index(v, "old err"), strings.Index(v, "live line"); i < 0 || j < i || k < j {
		t.Fatalf("log pane order:\n%s", v)
	}
	press(m, "l") // stdout only
	if v := ansi.Strip(m.View()); strings.Contains(v, "old err") || !strings.Contains(v, "live line") {
		t.Fatalf("stdout only:\n%s", v)
	}
}

// When the streams end, the dashboard says the daemon went away and reconnects.
func TestDaemonGoneAndBack(t *testing.T) {
	m, _ := connected(t, 80, 24)
	gen := m.gen
	_, cmd := m.Update(streamEndMsg{gen: gen, what: "watch"})
	if cmd == nil || !strings.Contains(ansi.Strip(m.View()), "the daemon went away") {
		t.Fatalf("after the stream ended:\n%s", ansi.Strip(m.View()))
	}
	checkSize(t, m.View(), 80, 24)
	// A message of the old connection is ignored.
	m.Update(frameMsg{gen: gen, f: api.WatchFrame{Time: t0}})
	if len(m.procs) != 4 {
		t.Fatal("a frame of the closed connection was applied")
	}
	_, cmd = m.Update(reconnectMsg{gen: m.gen})
	if cmd == nil {
		t.Fatal("no reconnection")
	}
	m.Update(connectedMsg{c: &conn{gen: m.gen, cancel: func() {}}})
	m.Update(frameMsg{gen: m.gen, f: api.WatchFrame{Time: t0, Procs: testProcs()[:1]}})
	if v := ansi.Strip(m.View()); strings.Contains(v, "went away") || !strings.Contains(v, "api") {
		t.Fatalf("after reconnecting:\n%s", v)
	}
}

// A log stream the daemon ended (a reader that fell behind is dropped) is opened again while the
// watch stream goes on; the third time in a connection counts as the daemon gone.
func TestLogStreamReopened(t *testing.T) {
	m, _ := connected(t, 80, 24)
	m.conn.ctx = context.Background()
	for i := 0; i < 3; i++ {
		_, cmd := m.Update(streamEndMsg{gen: m.gen, what: "logs"})
		if m.down != "" || cmd == nil {
			t.Fatalf("round %d: down %q", i, m.down)
		}
		msg, ok := cmd().(reopenedMsg)
		if !ok || msg.err != nil || msg.logs == nil {
			t.Fatalf("round %d: reopen gave %#v", i, msg)
		}
		m.Update(msg)
	}
	if n := *m.b.(fakeBackend).logsOpened; n != 3 {
		t.Fatalf("%d log streams opened again, want 3", n)
	}
	m.Update(streamEndMsg{gen: m.gen, what: "logs"})
	if m.down == "" {
		t.Fatal("a fourth end of the log stream is not taken for the daemon gone")
	}
}

// Frames extend the history the sparklines draw; an app's header sums its instances.
func TestSparklinesFromFrames(t *testing.T) {
	m, _ := connected(t, 80, 24)
	for i := 1; i <= 5; i++ {
		ps := testProcs()
		ps[1].CPU = float64(i * 10)
		m.Update(frameMsg{gen: m.gen, f: api.WatchFrame{Time: t0.Add(time.Duration(i) * time.Second), Procs: ps}})
	}
	if n := len(m.hist[1]); n != 6 {
		t.Fatalf("web[1] has %d samples, want 6", n)
	}
	press(m, "down") // web's header
	s := m.series()
	if len(s) != 6 || s[5].cpu != 51 {
		t.Fatalf("web's summed series %+v", s)
	}
	if got := spark([]float64{0, 50, 100}, 5, 0, 100); got != "  ▁▅█" {
		t.Fatalf("spark = %q", got)
	}
	if got := spark([]float64{0, 100, 0, 0}, 2, 0, 100); got != "█▁" {
		t.Fatalf("bucketed spark = %q", got)
	}
}

// The palette finds commands by words and runs them.
func TestPalette(t *testing.T) {
	m, _ := connected(t, 80, 24)
	press(m, ":")
	press(m, "s", "c", "a")
	if len(m.palette) != 2 || m.palette[0].title != "scale +1" {
		t.Fatalf("palette for sca: %+v", m.palette)
	}
	press(m, "esc")
	press(m, ":")
	for _, r := range "sort by memory" {
		press(m, string(r))
	}
	press(m, "enter")
	if m.sortCol != sortMem || m.inputMode != modeNone {
		t.Fatalf("sort by memory from the palette: col %d mode %d", m.sortCol, m.inputMode)
	}
}

// The log pane follows the newest line; pgup scrolls back, F follows again; a new line does not
// move a scrolled pane's view to the bottom.
func TestLogPaneScrolls(t *testing.T) {
	m, _ := connected(t, 80, 24)
	var lines []api.LogLine
	for i := 0; i < 300; i++ {
		lines = append(lines, api.LogLine{PMID: 0, Stream: "out", Text: "line " + strconv.Itoa(i) + "."})
	}
	m.Update(logsMsg{gen: m.gen, lines: lines})
	v := ansi.Strip(m.View())
	if !strings.Contains(v, "line 299.") || strings.Contains(v, "line 200.") || !strings.Contains(v, "following") {
		t.Fatalf("following:\n%s", v)
	}
	press(m, "b") // pgup
	v = ansi.Strip(m.View())
	if strings.Contains(v, "line 299.") || !strings.Contains(v, "scrolled") {
		t.Fatalf("after pgup:\n%s", v)
	}
	before := ansi.Strip(strings.Join(m.paneLines(m.paneHeight()), "\n"))
	m.Update(logsMsg{gen: m.gen, lines: []api.LogLine{{PMID: 0, Stream: "out", Text: "line 300."}, {PMID: 1, Stream: "out", Text: "web's"}}})
	if after := ansi.Strip(strings.Join(m.paneLines(m.paneHeight()), "\n")); after != before {
		t.Fatalf("a new line moved the scrolled pane:\n%s\nwas:\n%s", after, before)
	}
	for i := 0; i < 50; i++ {
		press(m, "b")
	}
	if v := ansi.Strip(m.View()); !strings.Contains(v, "line 0.") {
		t.Fatalf("scrolled to the top:\n%s", v)
	}
	press(m, "F")
	if v := ansi.Strip(m.View()); !strings.Contains(v, "line 300.") || !strings.Contains(v, "following") {
		t.Fatalf("F:\n%s", v)
	}
}
