package cli

import (
	"io"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/lstable"
	"github.com/corralhq/corral/internal/secretenv"
)

// The `ls` table and its helpers live in internal/lstable, which the daemon uses too (it renders
// `ls` for the early fast path, internal/fastls); these are the names the commands here use.

func humanDuration(d time.Duration) string                   { return lstable.HumanDuration(d) }
func humanBytes(n uint64) string                             { return lstable.HumanBytes(n) }
func humanCPU(c float64) string                              { return lstable.HumanCPU(c) }
func uptime(p api.Proc, now time.Time) string                { return lstable.Uptime(p, now) }
func writeList(w io.Writer, procs []api.Proc, now time.Time) { lstable.WriteList(w, procs, now) }

// table renders rows in a box like PM2's tables (lstable.Table). The first row is the header
// when header is true.
type table struct {
	t      lstable.Table
	header bool
}

func (t *table) add(cells ...string) { t.t.Add(cells...) }

func (t *table) write(w io.Writer) {
	t.t.Header = t.header
	t.t.Write(w)
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
