package daemon

import (
	"bytes"
	"strings"
	"sync"
)

// errTailLines is how many of a process's last stderr lines its exit event carries.
const errTailLines = 8

// errTailMax bounds one kept line (a minified stack trace is one long line).
const errTailMax = 400

// errTail keeps the last stderr lines of an instance's current process, for its exit event. It
// is an extra destination of the process's stderr LineWriter (one formatted line per Write,
// under the writer's lock); its own leaf lock is taken under the writer's or under m.mu, never
// the other way.
//
// The exit event reads it when the process has been reaped; lines still in the pipe then (the
// pump reads them a moment later) are not in the event, only in the log files.
type errTail struct {
	mu    sync.Mutex
	lines []string
}

func (t *errTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	body := bytes.TrimRight(p, "\n")
	// Only the last errTailLines lines can be kept: skip the others without splitting them (a
	// flood on stderr writes hundreds of lines per call).
	for i, n := len(body), 0; i > 0; n++ {
		j := bytes.LastIndexByte(body[:i], '\n')
		if j < 0 {
			break
		}
		if n == errTailLines-1 {
			body = body[j+1:]
			break
		}
		i = j
	}
	for _, l := range bytes.Split(body, []byte("\n")) {
		s := strings.TrimRight(string(l), "\r")
		if len(s) > errTailMax {
			s = s[:errTailMax] + "…"
		}
		t.lines = append(t.lines, s)
	}
	if len(t.lines) > errTailLines {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-errTailLines:]...)
	}
	return len(p), nil
}

// take returns the kept lines and forgets them.
func (t *errTail) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lines
	t.lines = nil
	return l
}
