package logs

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeLog records each Write a destination receives.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (l *writeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, string(p))
	return len(p), nil
}

func (l *writeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes...)
}

// Each Write reaches each destination as one write of whole lines (what keeps stdout and stderr
// lines whole in a combined log), also when it completes a partial line, with and without a date
// prefix; the bytes are the lines as written.
func TestLineWriterOneWritePerCall(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, date := range []string{"", "HH:mm"} {
		var a, b writeLog
		w := NewLineWriter(LineOptions{DateFormat: date, Clock: func() time.Time { return now }}, &a, &b)
		big := strings.Repeat("0123456789\n", 10000)
		for _, chunk := range []string{"a\nb\nc", "d\ne\n", big, "f\ng"} {
			w.Write([]byte(chunk))
		}
		w.Close()
		p := ""
		if date != "" {
			p = "12:00: "
		}
		want := []string{p + "a\n" + p + "b\n", p + "cd\n" + p + "e\n", strings.ReplaceAll(big, "\n", "\n"+p), p + "f\n", p + "g\n"}
		want[2] = p + strings.TrimSuffix(want[2], p)
		for _, got := range [][]string{a.get(), b.get()} {
			if len(got) != len(want) {
				t.Fatalf("date %q: %d writes, want %d", date, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("date %q: write %d is %.60q..., want %.60q...", date, i, got[i], want[i])
				}
			}
		}
	}
}

// A writer keeps no large buffer once a flood is over: an idle process's pipes must not pin the
// 64 KiB chunks they once carried (formatted lines and partial lines both).
func TestLineWriterReleasesLargeBuffers(t *testing.T) {
	for _, o := range []LineOptions{{}, {DateFormat: "HH:mm:ss"}, {JSON: true}} {
		w := NewLineWriter(o, &writeLog{})
		w.Write(bytes.Repeat([]byte(strings.Repeat("x", 99)+"\n"), 2000))
		w.Write(bytes.Repeat([]byte("y"), 20000)) // a long partial line
		w.Write([]byte("\nshort\n"))
		w.mu.Lock()
		out, partial := w.out.Cap(), cap(w.partial)
		w.mu.Unlock()
		if out > smallOut || partial > smallOut {
			t.Errorf("options %+v: %d bytes of formatting buffer and %d of partial line kept, want <= %d", o, out, partial, smallOut)
		}
		w.Close()
	}
}

// With WatchBlocks, Watch sees the complete lines of a Write at once; lines completed across
// Writes, and the last line at Close, are seen alone. Together they are every line.
func TestLineWriterWatchBlocks(t *testing.T) {
	var seen []string
	w := NewLineWriter(LineOptions{WatchBlocks: true, Watch: func(b []byte) { seen = append(seen, string(b)) }}, &writeLog{})
	w.Write([]byte("one\ntwo\nthr"))
	w.Write([]byte("ee\nfour\n"))
	w.Write([]byte("five"))
	w.Close()
	want := []string{"one\ntwo", "three", "four", "five"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("Watch saw %q, want %q", seen, want)
	}
}

// The partial-line timer flushes a partial line only once that line has waited PartialDelay:
// a line cut between two Writes and completed by the second is never split, even when an
// earlier partial line armed the timer.
func TestLineWriterPartialDelayPerLine(t *testing.T) {
	const delay = 300 * time.Millisecond
	var l writeLog
	w := NewLineWriter(LineOptions{JSON: true, PartialDelay: delay}, &l)
	defer w.Close()
	w.Write([]byte("abc"))
	time.Sleep(delay / 2)       // not a synchronisation: the second line must start well after the first
	w.Write([]byte("def\nxyz")) // "abcdef" done; "xyz" starts now, with the timer already armed
	second := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for len(l.get()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the partial line was never flushed: %q", l.get())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if waited := time.Since(second); waited < delay {
		t.Fatalf("the partial line was flushed after %v, before its own delay of %v", waited, delay)
	}
	got := l.get()
	if !strings.Contains(got[0], `"message":"abcdef"`) || !strings.Contains(got[1], `"message":"xyz"`) {
		t.Fatalf("lines %q", got)
	}
}

// Subscribers come and go while a writer floods (the subscriber count is read without the
// broadcaster's lock): every line a subscription receives is whole, and the file gets every line.
func TestLineWriterSubscribersComeAndGoDuringFlood(t *testing.T) {
	var dst writeLog
	w := NewLineWriter(LineOptions{App: "a"}, &dst)
	chunk := []byte(strings.Repeat(strings.Repeat("x", 99)+"\n", 100))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 500 {
			w.Write(chunk)
		}
	}()
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		ch, cancel := w.Subscribe()
		select {
		case l := <-ch:
			if len(l.Text) != 99 {
				t.Fatalf("a subscriber got a %d-byte line", len(l.Text))
			}
		case <-done:
			stop = true
		}
		cancel()
	}
	w.Close()
	n := 0
	for _, s := range dst.get() {
		n += strings.Count(s, "\n")
	}
	if n != 500*100 {
		t.Fatalf("%d lines written, want %d", n, 500*100)
	}
}
