package container

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/logs"
)

// `corral runtime --json` prints a line exactly as a log file with log_type json holds it: PM2's
// fields and order, toISOString's timestamp, nothing HTML-escaped; stdout for "out", stderr for "err".
func TestPrintLineJSONIsTheLogFileLine(t *testing.T) {
	now := time.Date(2026, 11, 3, 9, 4, 5, 0, time.FixedZone("CET", 3600))
	const text = `<b>"tom" & jerry</b> é`
	for _, stream := range []string{"out", "err"} {
		var file bytes.Buffer
		w := logs.NewLineWriter(logs.LineOptions{App: "web&co", ID: 4, Stream: stream, JSON: true,
			Clock: func() time.Time { return now }}, &file)
		io.WriteString(w, text+"\n")
		w.Close()

		var stdout, stderr bytes.Buffer
		printLine(Options{JSON: true, Stdout: &stdout, Stderr: &stderr},
			api.LogLine{PMID: 4, Name: "web&co", Stream: stream, Text: text, Time: now})
		got, other := stdout.String(), stderr.String()
		if stream == "err" {
			got, other = other, got
		}
		if got != file.String() || other != "" {
			t.Errorf("%s: runtime printed %q (and %q on the other stream), the log file holds %q", stream, got, other, file.String())
		}
		if !strings.Contains(got, `"message":"<b>\"tom\" & jerry</b> é","timestamp":"2026-11-03T08:04:05.000Z"`) {
			t.Errorf("%s: not PM2's line: %s", stream, got)
		}
	}
}
