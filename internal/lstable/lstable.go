// Package lstable renders `corral ls`: the table of instances and, after it, the warning that the
// daemon runs another version than the CLI. Both the CLI (internal/cli) and the daemon use it: the
// daemon renders the whole text for the CLI's early fast path (internal/fastls), so that the two
// paths print the same bytes.
package lstable

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/pm2json"
)

// HumanDuration renders an uptime as PM2 does: 5s, 3m, 2h, 4D.
func HumanDuration(d time.Duration) string {
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

// HumanBytes renders a size as PM2 does: 0b, 512b, 12.5kb, 52.7mb, 1.2gb.
func HumanBytes(n uint64) string {
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

// HumanCPU renders a CPU percentage with at most one decimal.
func HumanCPU(c float64) string {
	return strconv.FormatFloat(math.Round(c*10)/10, 'f', -1, 64) + "%"
}

// Uptime returns the human uptime of p at now, "0" unless it runs.
func Uptime(p api.Proc, now time.Time) string {
	if !Running(p) || p.StartedAt.IsZero() {
		return "0"
	}
	return HumanDuration(now.Sub(p.StartedAt))
}

// Running reports whether p has a process `ls` shows the pid, CPU and memory of.
func Running(p api.Proc) bool {
	return p.Status == "online" || p.Status == "launching" || p.Status == "stopping"
}

// ModeName is the short exec mode shown by `ls`: "listen" for an app whose instances share the
// sockets the daemon binds (--listen), which jlist reports as PM2's fork_mode (PM2 has no such
// mode; its tools know only fork_mode and cluster_mode) with the addresses in pm2_env.listen.
func ModeName(p api.Proc) string {
	if len(p.App.Listen) > 0 {
		return "listen"
	}
	if pm2json.ExecMode(p.App.ExecMode) == "cluster_mode" {
		return "cluster"
	}
	return "fork"
}

// Table renders rows in a box like PM2's tables. The first row is the header when Header is true.
type Table struct {
	Rows   [][]string
	Header bool
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

func width(s string) int { return utf8.RuneCountInString(s) } // as len([]rune(s))

// Write writes the box (nothing when there is no row) in one write.
func (t *Table) Write(w io.Writer) {
	if len(t.Rows) == 0 {
		return
	}
	n := 0
	for _, r := range t.Rows {
		n = max(n, len(r))
	}
	widths := make([]int, n)
	size := 0
	for _, r := range t.Rows {
		for i, c := range r {
			widths[i] = max(widths[i], width(c))
			size += len(c)
		}
	}
	lineLen := 0
	for _, wd := range widths {
		lineLen += 3*(wd+2) + 3 // box-drawing characters are 3 bytes
	}
	b := make([]byte, 0, size+(len(t.Rows)+3)*(lineLen+8))
	line := func(l, m, r string) {
		b = append(b, l...)
		for i, wd := range widths {
			if i > 0 {
				b = append(b, m...)
			}
			for range wd + 2 {
				b = append(b, "─"...)
			}
		}
		b = append(b, r...)
		b = append(b, '\n')
	}
	line("┌", "┬", "┐")
	for ri, r := range t.Rows {
		b = append(b, "│"...)
		for i := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b = append(b, ' ')
			b = append(b, c...)
			for range widths[i] - width(c) {
				b = append(b, ' ')
			}
			b = append(b, " │"...)
		}
		b = append(b, '\n')
		if ri == 0 && t.Header && len(t.Rows) > 1 {
			line("├", "┼", "┤")
		}
	}
	line("└", "┴", "┘")
	_, _ = w.Write(b)
}

// WriteList prints the `ls` table of procs, with uptimes at now.
func WriteList(w io.Writer, procs []api.Proc, now time.Time) {
	t := &Table{Header: true}
	t.Add("id", "name", "namespace", "mode", "pid", "uptime", "↺", "status", "cpu", "mem")
	for _, p := range procs {
		pid, cpu, mem := "0", "0%", "0b"
		if Running(p) {
			pid = strconv.Itoa(p.PID)
			cpu = HumanCPU(p.CPU)
			mem = HumanBytes(p.Memory)
		}
		ns := p.Namespace
		if ns == "" {
			ns = "default"
		}
		t.Add(strconv.Itoa(p.PMID), p.Name, ns, ModeName(p), pid, Uptime(p, now),
			strconv.Itoa(p.Restarts), p.Status, cpu, mem)
	}
	t.Write(w) // one write
}

// OutOfDate returns what `ls` prints after the table, as PM2's ls does, when the daemon runs
// another version than the CLI (after an upgrade of the binary on disk; `corral update` hands the
// apps over to the new one): "" when the daemon's is unknown or they are the same.
func OutOfDate(daemonVersion, cliVersion string) string {
	if daemonVersion == "" || daemonVersion == cliVersion {
		return ""
	}
	return ">>>> In-memory corral is out-of-date, do:\n>>>> $ corral update\nIn memory corral version: " +
		daemonVersion + "\nLocal corral version: " + cliVersion + "\n"
}
