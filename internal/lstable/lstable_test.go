package lstable

import (
	"bytes"
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
