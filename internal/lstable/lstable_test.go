package lstable

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
)

type plainWriter struct{ b bytes.Buffer }

func (w *plainWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// The daemon's rendering (into a bytes.Buffer) and the CLI's (through a bufio.Writer) are the
// same bytes; columns are as wide as their widest cell in runes (not bytes, not display cells: as before).
func TestWriteList(t *testing.T) {
	now := time.Now()
	procs := []api.Proc{
		{PMID: 0, Name: "café", Status: "online", PID: 42, CPU: 1.26, Memory: 3 << 20, StartedAt: now.Add(-90 * time.Second)},
		{PMID: 1, Name: "日本", Namespace: "ns", Status: "stopped", Restarts: 3},
		{PMID: 2, Name: "w", Status: "online", PID: 7, App: api.Proc{}.App},
	}
	procs[2].App.Listen = []string{":80"}
	var b bytes.Buffer
	WriteList(&b, procs, now)
	var w plainWriter
	WriteList(&w, procs, now)
	if b.String() != w.b.String() {
		t.Fatalf("bytes.Buffer:\n%s\nother writer:\n%s", b.String(), w.b.String())
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if width(l) != width(lines[0]) {
			t.Errorf("line %q is %d runes wide, the first %d", l, width(l), width(lines[0]))
		}
	}
	for _, want := range []string{"│ 0  │ café │ default   │ fork   │ 42  │ 1m     │ 0 │ online  │ 1.3% │ 3.0mb │", "│ 1  │ 日本   │ ns", "listen"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
	if OutOfDate("1", "1") != "" || OutOfDate("", "2") != "" || !strings.Contains(OutOfDate("1", "2"), "In memory corral version: 1\nLocal corral version: 2\n") {
		t.Error("OutOfDate")
	}
}

func BenchmarkWriteList100(b *testing.B) {
	now := time.Now()
	procs := make([]api.Proc, 100)
	for i := range procs {
		procs[i] = api.Proc{PMID: i, Name: "sleeper-" + strings.Repeat("x", i%7), Status: "online", PID: 10000 + i,
			CPU: 0.3, Memory: 1800 << 10, StartedAt: now.Add(-time.Duration(i) * time.Minute)}
	}
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		WriteList(&buf, procs, now)
	}
}

// refWrite is Table.Write as it was written first (fmt and strings, line by line): the reference
// for the byte-for-byte comparison below.
func refWrite(t *Table, w io.Writer) {
	if len(t.Rows) == 0 {
		return
	}
	n := 0
	for _, r := range t.Rows {
		n = max(n, len(r))
	}
	widths := make([]int, n)
	for _, r := range t.Rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
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
	for ri, r := range t.Rows {
		var b strings.Builder
		b.WriteString("│")
		for i := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " │")
		}
		fmt.Fprintln(w, b.String())
		if ri == 0 && t.Header && len(t.Rows) > 1 {
			line("├", "┼", "┤")
		}
	}
	line("└", "┴", "┘")
}

func TestTableMatchesReference(t *testing.T) {
	for _, tb := range []Table{
		{},
		{Header: true, Rows: [][]string{{"a", "bb"}}},
		{Header: true, Rows: [][]string{{"id", "name"}, {"0", "café"}, {"10", "日本語", "extra"}, {}}},
		{Rows: [][]string{{"key", "value"}, {"", ""}, {"\xff\xfe", "ok"}}},
	} {
		var got, want bytes.Buffer
		tb.Write(&got)
		refWrite(&tb, &want)
		if got.String() != want.String() {
			t.Errorf("Table.Write:\n%s\nreference:\n%s", got.String(), want.String())
		}
	}
}
