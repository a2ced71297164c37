package monit

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/corralhq/corral/internal/api"
)

// actionTimeout bounds one action (a reload of many instances takes a while).
const actionTimeout = 5 * time.Minute

// action is a change asked of the daemon, waiting for its confirmation.
type action struct {
	verb   string // "restart", "reload", ...
	target string // the API target
	label  string // what the user sees ("api[2]", "app api")
	arg    string // the signal or the scale spec
	run    func(ctx context.Context, b Backend) ([]string, error)
}

func (a *action) prompt() string {
	switch a.verb {
	case "scale":
		return fmt.Sprintf("Scale %s to %s instances?", a.label, a.arg)
	case "signal":
		return fmt.Sprintf("Send %s to %s?", a.arg, a.label)
	case "flush":
		return fmt.Sprintf("Empty the log files of %s?", a.label)
	}
	return fmt.Sprintf("%s %s?", strings.ToUpper(a.verb[:1])+a.verb[1:], a.label)
}

// newAction builds the action verb on the selection; arg is the signal name for "signal".
func (m *Model) newAction(verb, arg string) (*action, string) {
	target, label, ok := m.target()
	if !ok {
		return nil, "no process selected"
	}
	r, _ := m.selected()
	a := &action{verb: verb, target: target, label: label, arg: arg}
	ts := []string{target}
	if verb == "start" {
		running := 0
		for _, p := range r.procs {
			if p.Status == "online" || p.Status == "launching" {
				running++
			}
		}
		if running == len(r.procs) {
			return nil, label + " is already running (r restarts it)"
		}
	}
	switch verb {
	case "restart", "start":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, notes, err := b.Restart(ctx, ts, api.RestartOptions{})
			return notes, err
		}
	case "reload":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, notes, err := b.Reload(ctx, ts, api.RestartOptions{})
			return notes, err
		}
	case "stop":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, err := b.Stop(ctx, ts)
			return nil, err
		}
	case "delete":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, err := b.Delete(ctx, ts)
			return nil, err
		}
	case "flush":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			return nil, b.Flush(ctx, ts)
		}
	case "signal":
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, err := b.Signal(ctx, arg, ts)
			return nil, err
		}
	case "scale+", "scale-":
		// Scaling acts on the app of the selection, whatever row.
		a.verb, a.target, a.label = "scale", r.app, "app "+r.app
		n := 0
		for _, p := range m.procs {
			if p.Name == r.app {
				n++
			}
		}
		spec := "+1"
		if verb == "scale-" {
			spec = "-1"
			if n <= 1 {
				return nil, r.app + " has one instance: delete it instead"
			}
			n--
		} else {
			n++
		}
		a.arg = fmt.Sprint(n)
		app := r.app
		a.run = func(ctx context.Context, b Backend) ([]string, error) {
			_, err := b.Scale(ctx, app, spec)
			return nil, err
		}
	default:
		return nil, "unknown action " + verb
	}
	return a, ""
}

// ask puts an action up for confirmation.
func (m *Model) ask(verb, arg string) {
	a, why := m.newAction(verb, arg)
	if a == nil {
		m.setFlash(why, true)
		return
	}
	m.confirm = a
}

// runAction runs a confirmed action on a Cmd goroutine.
func (m *Model) runAction(a *action) tea.Cmd {
	m.setFlash(fmt.Sprintf("%s %s…", a.verb, a.label), false)
	if a.verb == "flush" {
		for _, p := range m.selectedProcs() {
			if b := m.logs[p.PMID]; b != nil {
				b.lines = nil
			}
		}
	}
	parent, b := m.ctx, m.b
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(parent, actionTimeout)
		defer cancel()
		notes, err := a.run(ctx, b)
		return actionDoneMsg{what: a.verb + " " + a.label, notes: notes, err: err}
	}
}

// command is an entry of the command palette.
type command struct {
	title string
	keys  string
	run   func(m *Model) tea.Cmd
}

func actionCommand(title, keys, verb string) command {
	return command{title: title, keys: keys, run: func(m *Model) tea.Cmd {
		if verb == "signal" {
			m.openSignal()
			return nil
		}
		m.ask(verb, "")
		return nil
	}}
}

// commands is the palette's list.
func commands() []command {
	cs := []command{
		actionCommand("restart", "r", "restart"),
		actionCommand("reload (zero downtime)", "R", "reload"),
		actionCommand("stop", "x", "stop"),
		actionCommand("start", "s", "start"),
		actionCommand("delete", "d", "delete"),
		actionCommand("scale +1", "+", "scale+"),
		actionCommand("scale -1", "-", "scale-"),
		actionCommand("send a signal", "K", "signal"),
		actionCommand("flush logs", "f", "flush"),
		{title: "filter", keys: "/", run: func(m *Model) tea.Cmd { return m.openFilter() }},
	}
	for i, n := range sortNames {
		cs = append(cs, command{title: "sort by " + n, keys: "o", run: func(m *Model) tea.Cmd {
			m.sortCol = i
			m.rebuild()
			return nil
		}})
	}
	for i, n := range paneNames {
		cs = append(cs, command{title: "show " + strings.ToLower(n), keys: "tab", run: func(m *Model) tea.Cmd {
			m.pane, m.scroll = i, 0
			return nil
		}})
	}
	for i, n := range streamNames {
		cs = append(cs, command{title: "logs: " + n, keys: "l", run: func(m *Model) tea.Cmd {
			m.pane, m.stream, m.scroll = paneLogs, i, 0
			return nil
		}})
	}
	cs = append(cs,
		command{title: "events: selected app only / all", keys: "a", run: func(m *Model) tea.Cmd {
			m.appEvents = !m.appEvents
			return nil
		}},
		command{title: "help", keys: "?", run: func(m *Model) tea.Cmd { m.help = true; return nil }},
		command{title: "quit", keys: "q", run: func(m *Model) tea.Cmd { return m.quit() }},
	)
	return cs
}

// paletteMatches returns the commands whose title contains the words of q, in order.
func paletteMatches(q string) []command {
	var out []command
	words := strings.Fields(strings.ToLower(q))
next:
	for _, c := range commands() {
		t := strings.ToLower(c.title)
		for _, w := range words {
			if !strings.Contains(t, w) {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

func (m *Model) quit() tea.Cmd {
	m.quitting = true
	m.closeConn()
	m.stop()
	return tea.Quit
}

func (m *Model) openFilter() tea.Cmd {
	m.inputMode = modeFilter
	m.input.Prompt = "/"
	m.input.Placeholder = "name, namespace, status, id"
	m.input.SetValue(m.filter)
	m.input.CursorEnd()
	return m.input.Focus()
}

func (m *Model) openSignal() tea.Cmd {
	if _, _, ok := m.target(); !ok {
		m.setFlash("no process selected", true)
		return nil
	}
	m.inputMode = modeSignal
	m.input.Prompt = "signal: "
	m.input.Placeholder = "SIGUSR2"
	m.input.SetValue("")
	return m.input.Focus()
}

func (m *Model) openPalette() tea.Cmd {
	m.inputMode = modePalette
	m.input.Prompt = ": "
	m.input.Placeholder = "type to search commands"
	m.input.SetValue("")
	m.palette = paletteMatches("")
	m.palIdx = 0
	return m.input.Focus()
}

func (m *Model) closeInput() {
	m.inputMode = modeNone
	m.input.Blur()
}

// key handles a key press.
func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 && !k.Paste && m.inputMode == modeNone {
		// Keys typed faster than the terminal is read arrive as one message: one at a time.
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			_, cmd := m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: k.Alt})
			cmds = append(cmds, cmd)
		}
		return m, tea.Sequence(cmds...)
	}
	s := k.String()
	if s == "ctrl+c" {
		return m, m.quit()
	}
	if m.help {
		m.help = false
		if s == "q" {
			return m, m.quit()
		}
		return m, nil
	}
	if m.confirm != nil {
		a := m.confirm
		m.confirm = nil
		if s == "y" || s == "Y" || s == "enter" {
			return m, m.runAction(a)
		}
		m.setFlash("cancelled", false)
		return m, nil
	}
	switch m.inputMode {
	case modeFilter:
		switch s {
		case "esc":
			m.filter = ""
			m.closeInput()
		case "enter":
			m.closeInput()
		default:
			var cmd tea.Cmd
			m.input, cmd = m.input.Update(k)
			m.filter = m.input.Value()
			m.rebuild()
			return m, cmd
		}
		m.rebuild()
		return m, nil
	case modeSignal:
		switch s {
		case "esc":
			m.closeInput()
		case "enter":
			sig := strings.TrimSpace(m.input.Value())
			m.closeInput()
			if sig == "" {
				sig = "SIGUSR2"
			}
			a, why := m.newAction("signal", strings.ToUpper(sig))
			if a == nil {
				m.setFlash(why, true)
				return m, nil
			}
			return m, m.runAction(a) // typing the signal was the confirmation
		default:
			var cmd tea.Cmd
			m.input, cmd = m.input.Update(k)
			return m, cmd
		}
		return m, nil
	case modePalette:
		switch s {
		case "esc":
			m.closeInput()
		case "up", "ctrl+k", "ctrl+p":
			m.palIdx = max(0, m.palIdx-1)
		case "down", "ctrl+j", "ctrl+n", "tab":
			m.palIdx = min(len(m.palette)-1, m.palIdx+1)
		case "enter":
			m.closeInput()
			if m.palIdx >= 0 && m.palIdx < len(m.palette) {
				return m, m.palette[m.palIdx].run(m)
			}
		default:
			var cmd tea.Cmd
			m.input, cmd = m.input.Update(k)
			m.palette = paletteMatches(m.input.Value())
			m.palIdx = 0
			return m, cmd
		}
		return m, nil
	}

	switch s {
	case "q", "esc":
		if s == "esc" && m.filter != "" {
			m.filter = ""
			m.rebuild()
			return m, nil
		}
		if s == "esc" {
			return m, nil
		}
		return m, m.quit()
	case "?", "h", "f1":
		m.help = true
	case ":", "ctrl+p":
		return m, m.openPalette()
	case "/":
		return m, m.openFilter()
	case "up", "k":
		m.move(-1)
	case "down", "j":
		m.move(1)
	case "home", "g":
		m.move(-len(m.rows))
	case "end", "G":
		m.move(len(m.rows))
	case " ", "enter":
		if r, ok := m.selected(); ok && r.isApp() {
			m.collapsed[r.app] = !m.collapsed[r.app]
			m.rebuild()
		}
	case "tab":
		m.pane, m.scroll = (m.pane+1)%numPanes, 0
	case "shift+tab":
		m.pane, m.scroll = (m.pane+numPanes-1)%numPanes, 0
	case "l":
		m.pane, m.stream, m.scroll = paneLogs, (m.stream+1)%len(streamNames), 0
	case "a":
		m.appEvents = !m.appEvents
		m.scroll = 0
	case "o":
		m.sortCol = (m.sortCol + 1) % numSorts
		m.rebuild()
	case "O":
		m.sortDesc = !m.sortDesc
		m.rebuild()
	case "pgup", "ctrl+u", "b":
		m.scroll += max(1, m.paneHeight()-1)
	case "pgdown", "ctrl+d":
		m.scroll = max(0, m.scroll-max(1, m.paneHeight()-1))
	case "shift+up", "[":
		m.scroll++
	case "shift+down", "]":
		m.scroll = max(0, m.scroll-1)
	case "F":
		m.scroll = 0
	case "r":
		m.ask("restart", "")
	case "R":
		m.ask("reload", "")
	case "x":
		m.ask("stop", "")
	case "s":
		m.ask("start", "")
	case "d", "delete":
		m.ask("delete", "")
	case "+", "=":
		m.ask("scale+", "")
	case "-", "_":
		m.ask("scale-", "")
	case "f":
		m.ask("flush", "")
	case "K":
		return m, m.openSignal()
	}
	return m, m.seedSelected()
}
