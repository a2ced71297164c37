package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// safeBuffer is a bytes.Buffer safe for concurrent use.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLineWriterPartialLines(t *testing.T) {
	var out safeBuffer
	w := NewLineWriter(LineOptions{App: "web"}, &out)
	for _, chunk := range []string{"ab", "c\nde", "f\n\ng", "h", "\r\nlast"} {
		if n, err := io.WriteString(w, chunk); err != nil || n != len(chunk) {
			t.Fatalf("write %q: %d %v", chunk, n, err)
		}
	}
	if got, want := out.String(), "abc\ndef\n\ngh\r\n"; got != want {
		t.Fatalf("before close: %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "abc\ndef\n\ngh\r\nlast\n"; got != want {
		t.Fatalf("after close: %q, want %q", got, want)
	}
	if _, err := io.WriteString(w, "x\n"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestLineWriterMaxLine(t *testing.T) {
	var out safeBuffer
	w := NewLineWriter(LineOptions{MaxLine: 4}, &out)
	io.WriteString(w, "abcdefghij")
	io.WriteString(w, "k\n")
	if got, want := out.String(), "abcd\nefgh\nijk\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLineWriterDatePrefix(t *testing.T) {
	now := time.Date(2024, 3, 5, 14, 7, 9, 0, time.FixedZone("CET", 3600))
	var out, all safeBuffer
	w := NewLineWriter(LineOptions{DateFormat: "YYYY-MM-DD HH:mm:ss Z", Clock: func() time.Time { return now }}, &out, &all)
	io.WriteString(w, "one\ntwo\n")
	want := "2024-03-05 14:07:09 +01:00: one\n2024-03-05 14:07:09 +01:00: two\n"
	if out.String() != want || all.String() != want {
		t.Errorf("got %q and %q, want %q in both", out.String(), all.String(), want)
	}
}

func TestLineWriterJSON(t *testing.T) {
	now := time.Date(2024, 3, 5, 14, 7, 9, 123e6, time.FixedZone("CET", 3600))
	clock := func() time.Time { return now }
	var out safeBuffer
	w := NewLineWriter(LineOptions{App: "api <v2>", ID: 3, Stream: "err", JSON: true, Clock: clock}, &out)
	io.WriteString(w, "boom \"quoted\"\nsecond\n")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d JSON lines: %q", len(lines), out.String())
	}
	want := `{"message":"boom \"quoted\"","timestamp":"2024-03-05T13:07:09.123Z","type":"err","process_id":3,"app_name":"api <v2>"}`
	if lines[0] != want {
		t.Errorf("got  %s\nwant %s", lines[0], want)
	}
	var v struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &v); err != nil || v.Message != "second" {
		t.Errorf("second line %q: %v", lines[1], err)
	}

	out = safeBuffer{}
	w = NewLineWriter(LineOptions{App: "a", JSON: true, DateFormat: "YYYY-MM-DD HH:mm", Clock: clock}, &out)
	io.WriteString(w, "x\n")
	if !strings.Contains(out.String(), `"timestamp":"2024-03-05 14:07","type":"out"`) {
		t.Errorf("JSON with log_date_format: %s", out.String())
	}
}

// WriteJSON is the one PM2 JSON line encoder: PM2's field order, toISOString's timestamp in UTC with
// milliseconds (also on a whole second), no HTML escaping, one Write per line.
func TestWriteJSON(t *testing.T) {
	l := Line{App: "a&b", ID: 7, Stream: "out", Text: `<script>alert("x")</script> & é`,
		Time: time.Date(2024, 3, 5, 14, 7, 9, 0, time.FixedZone("CET", 3600))}
	var w writeCounter
	if err := WriteJSON(&w, l, ""); err != nil {
		t.Fatal(err)
	}
	want := `{"message":"<script>alert(\"x\")</script> & é","timestamp":"2024-03-05T13:07:09.000Z","type":"out","process_id":7,"app_name":"a&b"}` + "\n"
	if got := w.buf.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if w.writes != 1 {
		t.Errorf("%d writes for one line, want 1", w.writes)
	}
	w = writeCounter{}
	WriteJSON(&w, l, "05/03 14:07")
	if !strings.Contains(w.buf.String(), `"timestamp":"05/03 14:07"`) {
		t.Errorf("given timestamp not used: %s", w.buf.String())
	}
}

// writeCounter is a buffer that counts the writes it receives.
type writeCounter struct {
	buf    bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return w.buf.Write(p) }

func TestLineWriterSubscribe(t *testing.T) {
	w := NewLineWriter(LineOptions{App: "web", ID: 2, Stream: "err"}) // no destinations
	fast, cancelFast := w.Subscribe()
	defer cancelFast()
	slow, cancelSlow := w.Subscribe()

	// The slow subscriber never reads; the writer must not block on it.
	const n = DefaultSubscriberBuffer * 3
	for i := range n {
		io.WriteString(w, "tick\n")
		l := <-fast
		if l.App != "web" || l.ID != 2 || l.Stream != "err" || l.Text != "tick" || l.Time.IsZero() {
			t.Fatalf("line %d: %+v", i, l)
		}
	}
	if got := len(slow); got != DefaultSubscriberBuffer {
		t.Errorf("slow subscriber holds %d lines, want its buffer (%d) full", got, DefaultSubscriberBuffer)
	}
	cancelSlow()
	cancelSlow() // harmless twice
	for range slow {
	}

	w.Close()
	if _, ok := <-fast; ok {
		t.Error("subscription still open after the writer closed")
	}
	ch, _ := w.Subscribe()
	if _, ok := <-ch; ok {
		t.Error("subscription after close is open")
	}
}

func TestSharedBroadcaster(t *testing.T) {
	bc := NewBroadcaster(8)
	out := NewLineWriter(LineOptions{App: "a", Stream: "out", Broadcaster: bc})
	errw := NewLineWriter(LineOptions{App: "a", Stream: "err", Broadcaster: bc})
	ch, cancel := bc.Subscribe()
	defer cancel()
	io.WriteString(out, "o\n")
	io.WriteString(errw, "e\n")
	out.Close() // does not close a shared broadcaster
	got := []Line{<-ch, <-ch}
	if got[0].Stream != "out" || got[0].Text != "o" || got[1].Stream != "err" || got[1].Text != "e" {
		t.Errorf("got %+v", got)
	}
	io.WriteString(errw, "still\n")
	if l := <-ch; l.Text != "still" {
		t.Errorf("got %+v after closing the other writer", l)
	}
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLineWriterDestinationErrors(t *testing.T) {
	var errs []error
	var out safeBuffer
	w := NewLineWriter(LineOptions{App: "web", OnError: func(err error) { errs = append(errs, err) }}, failWriter{}, &out)
	n, err := io.WriteString(w, "a\nb\n")
	if err != nil || n != 4 {
		t.Fatalf("write: %d %v", n, err)
	}
	if out.String() != "a\nb\n" {
		t.Errorf("the healthy destination got %q", out.String())
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "disk on fire") || !strings.Contains(errs[0].Error(), "web") {
		t.Errorf("OnError got %v", errs)
	}
}

// A partial line is written as it is after PartialDelay (PM2 writes output when it comes); the
// rest of the line continues it without a second date prefix. In JSON logs it is a message.
func TestLineWriterPartialDelay(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var out bytes.Buffer
	dst := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	})
	read := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	w := NewLineWriter(LineOptions{DateFormat: "HH:mm", PartialDelay: 20 * time.Millisecond, Clock: func() time.Time { return now }}, dst)
	w.Write([]byte("first\n50%"))
	if got := read(); got != "12:00: first\n" {
		t.Fatalf("before the delay: %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for read() != "12:00: first\n12:00: 50%" {
		if time.Now().After(deadline) {
			t.Fatalf("the partial line was not written: %q", read())
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Write([]byte(" 100%\nnext\n"))
	if got := read(); got != "12:00: first\n12:00: 50% 100%\n12:00: next\n" {
		t.Fatalf("after the rest: %q", got)
	}
	w.Close()

	var js bytes.Buffer
	w = NewLineWriter(LineOptions{App: "a", JSON: true, Clock: func() time.Time { return now }}, &js)
	w.Write([]byte("prompt> "))
	w.FlushPartial()
	w.Write([]byte("yes\n"))
	w.Close()
	if got := js.String(); got != `{"message":"prompt> ","timestamp":"2026-11-30T12:00:00.000Z","type":"out","process_id":0,"app_name":"a"}`+"\n"+
		`{"message":"yes","timestamp":"2026-11-30T12:00:00.000Z","type":"out","process_id":0,"app_name":"a"}`+"\n" {
		t.Fatalf("json: %q", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
