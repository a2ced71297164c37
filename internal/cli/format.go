package cli

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/pm2json"
	"github.com/corralhq/corral/internal/secretenv"
)

// humanDuration renders an uptime as PM2 does: 5s, 3m, 2h, 4D.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d < 365*24*time.Hour:
		return fmt.Sprintf("%dD", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%dY", int(d/(365*24*time.Hour)))
}

// humanBytes renders a size as PM2 does: 0b, 512b, 12.5kb, 52.7mb, 1.2gb.
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "b"
	}
	units := []string{"kb", "mb", "gb", "tb", "pb"}
	f := float64(n)
	for _, u := range units {
		f /= 1024
		if f < 1024 || u == "pb" {
			return strconv.FormatFloat(f, 'f', 1, 64) + u
		}
	}
	return "?"
}

// humanCPU renders a CPU percentage with at most one decimal.
func humanCPU(c float64) string {
	return strconv.FormatFloat(math.Round(c*10)/10, 'f', -1, 64) + "%"
}

// uptime returns the human uptime of p at now, "0" unless it runs.
func uptime(p api.Proc, now time.Time) string {
	if !running(p) || p.StartedAt.IsZero() {
		return "0"
	}
	return humanDuration(now.Sub(p.StartedAt))
}

func running(p api.Proc) bool {
	return p.Status == "online" || p.Status == "launching" || p.Status == "stopping"
}

// modeName is the short exec mode shown by `ls`: "listen" for an app whose instances share the
// sockets the daemon binds (--listen), which jlist reports as PM2's fork_mode (PM2 has no such
// mode; its tools know only fork_mode and cluster_mode) with the addresses in pm2_env.listen.
func modeName(p api.Proc) string {
	if len(p.App.Listen) > 0 {
		return "listen"
	}
	if pm2json.ExecMode(p.App.ExecMode) == "cluster_mode" {
		return "cluster"
	}
	return "fork"
}

// table renders rows in a box like PM2's tables. The first row is the header
// when header is true.
type table struct {
	rows   [][]string
	header bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func width(s string) int { return len([]rune(s)) }

func (t *table) write(w io.Writer) {
	if len(t.rows) == 0 {
		return
	}
	n := 0
	for _, r := range t.rows {
		n = max(n, len(r))
	}
	widths := make([]int, n)
	for _, r := range t.rows {
		for i, c := range r {
			widths[i] = max(widths[i], width(c))
		}
	}
	line := func(l, m, r string) {
		var b strings.Builder
		b.WriteString(l)
		for i, wd := range widths {
			if i > 0 {
				b.WriteString(m)
			}
			b.WriteString(strings.Repeat("─", wd+2))
		}
		b.WriteString(r)
		fmt.Fprintln(w, b.String())
	}
	line("┌", "┬", "┐")
	for ri, r := range t.rows {
		var b strings.Builder
		b.WriteString("│")
		for i := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-width(c)) + " │")
		}
		fmt.Fprintln(w, b.String())
		if ri == 0 && t.header && len(t.rows) > 1 {
			line("├", "┼", "┤")
		}
	}
	line("└", "┴", "┘")
}

// writeList prints the `ls` table of procs.
func writeList(w io.Writer, procs []api.Proc, now time.Time) {
	t := &table{header: true}
	t.add("id", "name", "namespace", "mode", "pid", "uptime", "↺", "status", "cpu", "mem")
	for _, p := range procs {
		pid, cpu, mem := "0", "0%", "0b"
		if running(p) {
			pid = strconv.Itoa(p.PID)
			cpu = humanCPU(p.CPU)
			mem = humanBytes(p.Memory)
		}
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		t.add(strconv.Itoa(p.PMID), p.Name, ns, modeName(p), pid, uptime(p, now),
			strconv.Itoa(p.Restarts), p.Status, cpu, mem)
	}
	bw := bufio.NewWriterSize(w, 64<<10) // one write, not one per row
	t.write(bw)
	_ = bw.Flush()
}

// maskValue hides the value of a secret-looking variable (internal/secretenv: the one rule,
// shared with the web dashboard).
func maskValue(key, value string) string { return secretenv.Mask(key, value) }

func orNA(s string) string {
	if s == "" {
		return "N/A"
	}
	return s
}

func joinOrNA(s []string) string {
	if len(s) == 0 {
		return "N/A"
	}
	return strings.Join(s, " ")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return t.UTC().Format(time.RFC3339)
}
