package logs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxLine is the longest line a LineWriter holds back while waiting for its newline;
// a longer run of bytes without one is written as a line of its own.
const DefaultMaxLine = 64 << 10

// DefaultSubscriberBuffer is how many lines a subscriber's channel holds before further lines
// are dropped for that subscriber.
const DefaultSubscriberBuffer = 256

// Line is one line of a process's output, as delivered to subscribers.
type Line struct {
	App    string    // app name
	ID     int       // process id in the process list (pm_id)
	Stream string    // "out" or "err"
	Text   string    // the line without its newline and without any prefix
	Time   time.Time // when the line was read
}

// LineOptions configures a LineWriter.
type LineOptions struct {
	App    string // app name, for JSON lines and subscribers
	ID     int    // pm_id, for JSON lines and subscribers
	Stream string // "out" or "err"; empty means "out"

	// DateFormat, if set, prefixes each line with the time in this dayjs format followed by
	// ": " (PM2's log_date_format). With JSON it formats the timestamp field instead.
	DateFormat string
	// JSON writes each line as a JSON object (PM2's log_type "json"):
	// {"message":..., "timestamp":..., "type":"out"|"err", "process_id":N, "app_name":...}.
	// The timestamp is RFC 3339 in UTC with milliseconds unless DateFormat is set.
	JSON bool

	// Broadcaster receives every line. Share one between writers to follow several processes
	// through one subscription; nil gives the writer its own, closed by Close.
	Broadcaster *Broadcaster
	// MaxLine bounds a line held back while waiting for its newline; 0 means DefaultMaxLine.
	MaxLine int
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Watch, if set, sees every complete line (without its newline) before it is written, on the
	// writer's goroutine. It must not keep line, and must be quick.
	Watch func(line []byte)
	// WatchBlocks lets Watch see several complete lines at once, separated by newlines (without
	// the last one's): one call per Write instead of one per line, for a Watch that searches for
	// a text without a newline in it.
	WatchBlocks bool
	// OnError, if set, receives errors from writing to the destinations.
	OnError func(error)
	// PartialDelay, when positive, bounds how long a partial line (output without its newline
	// yet: a prompt, a progress bar) waits: after it the bytes are written as they are (see
	// FlushPartial), as PM2 writes output when it comes. 0 holds them until their newline.
	PartialDelay time.Duration
}

// DefaultPartialDelay is the PartialDelay the daemon gives its log writers.
const DefaultPartialDelay = 200 * time.Millisecond

// LineWriter splits a byte stream (a process's stdout or stderr) into lines, writes each line
// with its prefix to its destinations and publishes it to subscribers. It is safe for
// concurrent use.
//
// Write never fails because a destination failed (that goes to OnError): it is meant to sit at
// the end of a pipe, where a failed write would stop the copying and block the process.
type LineWriter struct {
	o     LineOptions
	dsts  []io.Writer
	bc    *Broadcaster
	ownBC bool
	date  dateFormat

	mu      sync.Mutex
	partial []byte
	out     bytes.Buffer // formatted lines waiting for flushOut; large buffers go back to outPool
	closed  bool
	// stampAt is the time the cached prefix (text) or timestamp (JSON) was formatted for: every
	// line of one Write shares the Write's time, so the date is formatted once per Write.
	stampAt time.Time
	stamp   []byte
	// jsonRest is a JSON line after its message (timestamp and the fixed fields), for jsonRestAt.
	jsonRestAt time.Time
	jsonRest   []byte
	// midLine is set when the destinations end with a flushed partial line: the rest of that
	// line follows without a prefix.
	midLine bool
	timer   *time.Timer // the PartialDelay timer, armed while a partial line waits
	// partialAt is when the current partial line began: the timer flushes it only once it is
	// PartialDelay old (a line completed by the next Write is never cut).
	partialAt time.Time
	tap       func(line string) // SetTap
}

// SetTap makes w call tap with each line's text (without its newline), on the writer's goroutine
// and under its lock: tap must be quick and must not call w. nil removes it.
func (w *LineWriter) SetTap(tap func(line string)) {
	w.mu.Lock()
	w.tap = tap
	w.mu.Unlock()
}

// NewLineWriter returns a LineWriter writing to dsts (none is valid: lines then only go to
// subscribers, as for disabled logs).
func NewLineWriter(o LineOptions, dsts ...io.Writer) *LineWriter {
	if o.Stream == "" {
		o.Stream = "out"
	}
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	w := &LineWriter{o: o, dsts: dsts, bc: o.Broadcaster}
	if w.bc == nil {
		w.bc = NewBroadcaster(DefaultSubscriberBuffer)
		w.ownBC = true
	}
	if o.DateFormat != "" {
		w.date = compileDateFormat(o.DateFormat)
	}
	return w
}

// Write consumes p. Complete lines are written and published at once; a trailing partial line
// waits for the rest of it (or for Close). It returns len(p), or os.ErrClosed after Close.
//
// The lines of one Write reach each destination in a single write of whole lines. Text lines
// without a prefix are written as they are in p, without a copy, and with no per-line work
// unless someone needs each line (a subscriber, a tap, a per-line Watch).
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("write %s log of %s: %w", w.o.Stream, w.o.App, os.ErrClosed)
	}
	now := w.o.Clock()
	data := p
	if len(w.partial) > 0 {
		// The first newline completes the line waiting for it.
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			w.holdPartial(data, now)
			w.flushOut()
			w.armPartialTimer()
			return len(p), nil
		}
		w.partial = append(w.partial, data[:i]...)
		w.emit(w.partial, now)
		w.dropPartial()
		data = data[i+1:]
	}
	if cut := bytes.LastIndexByte(data, '\n') + 1; cut > 0 {
		w.block(data[:cut], now)
		data = data[cut:]
	}
	if len(data) > 0 {
		w.holdPartial(data, now)
	}
	w.flushOut()
	w.armPartialTimer()
	return len(p), nil
}

// block handles a run of complete lines (block ends with a newline).
func (w *LineWriter) block(block []byte, now time.Time) {
	watch := w.o.Watch
	if watch != nil && w.o.WatchBlocks {
		watch(block[:len(block)-1])
		watch = nil
	}
	text := !w.o.JSON && len(w.dsts) > 0
	direct := text && w.date == nil // the lines are written as they are
	if !direct || watch != nil || w.tap != nil || w.bc.listening() {
		if !direct && len(w.dsts) > 0 {
			w.reserve(len(block) + len(block)/4)
		}
		for rest := block; len(rest) > 0; {
			i := bytes.IndexByte(rest, '\n')
			line := rest[:i]
			rest = rest[i+1:]
			if watch != nil {
				watch(line)
			}
			if !direct && len(w.dsts) > 0 {
				w.format(line, now)
			}
			w.bc.publish(w.o, line, now)
			if w.tap != nil {
				w.tap(string(line))
			}
		}
	}
	if direct {
		// Unless a completed partial line is already waiting in w.out, write the caller's bytes.
		if w.out.Len() > 0 {
			w.reserve(len(block))
			w.out.Write(block)
		} else {
			w.writeDsts(block)
		}
		w.midLine = false
	}
}

// holdPartial keeps data (no newline in it) as the start of a line; a line reaching MaxLine is
// emitted in MaxLine pieces.
func (w *LineWriter) holdPartial(data []byte, now time.Time) {
	w.partial = append(w.partial, data...)
	if len(w.partial) < w.o.MaxLine {
		return
	}
	rest := w.partial
	for len(rest) >= w.o.MaxLine {
		w.emit(rest[:w.o.MaxLine], now)
		rest = rest[w.o.MaxLine:]
	}
	w.partial = append(w.partial[:0], rest...)
}

// dropPartial empties the partial line, letting a large buffer go.
func (w *LineWriter) dropPartial() {
	w.partialAt = time.Time{} // the next partial line waits its own delay
	if cap(w.partial) > smallOut {
		w.partial = nil
		return
	}
	w.partial = w.partial[:0]
}

// armPartialTimer arms the PartialDelay timer for a new partial line. The caller holds w.mu.
func (w *LineWriter) armPartialTimer() {
	if len(w.partial) == 0 || w.o.PartialDelay <= 0 {
		w.partialAt = time.Time{}
		return
	}
	if w.partialAt.IsZero() {
		w.partialAt = time.Now()
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.o.PartialDelay, w.partialDue)
	}
}

// partialDue runs on the PartialDelay timer: it flushes the partial line if it has waited
// PartialDelay, else waits for the rest of the current one's delay.
func (w *LineWriter) partialDue() {
	w.mu.Lock()
	if w.timer == nil || w.closed {
		w.mu.Unlock()
		return
	}
	if !w.partialAt.IsZero() {
		if left := w.o.PartialDelay - time.Since(w.partialAt); left > 0 {
			w.timer.Reset(left)
			w.mu.Unlock()
			return
		}
	}
	w.mu.Unlock()
	w.FlushPartial()
}

// FlushPartial writes out the partial line waiting for its newline, if any, as it is: in a text
// log without a newline (the rest of the line, when it comes, continues it without a second date
// prefix), in a JSON log as a message of its own. Subscribers receive it as a line.
func (w *LineWriter) FlushPartial() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.partialAt = time.Time{}
	if w.closed || len(w.partial) == 0 {
		return
	}
	now := w.o.Clock()
	if w.o.JSON || len(w.dsts) == 0 {
		w.emit(w.partial, now)
	} else {
		w.formatPrefix(now)
		w.out.Write(w.partial)
		w.midLine = true
		w.bc.publish(w.o, w.partial, now)
	}
	w.dropPartial()
	w.flushOut()
}

// emit formats one line into w.out and publishes it.
func (w *LineWriter) emit(line []byte, now time.Time) {
	if w.o.Watch != nil {
		w.o.Watch(line)
	}
	if len(w.dsts) > 0 {
		w.format(line, now)
	}
	w.bc.publish(w.o, line, now)
	if w.tap != nil {
		w.tap(string(line))
	}
}

// JSONTimestamp is the layout of a JSON line's timestamp when no date format is set: UTC with
// milliseconds, as JavaScript's Date.prototype.toISOString writes it (and PM2 with it).
const JSONTimestamp = "2006-01-02T15:04:05.000Z07:00"

// jsonLine is the JSON form of a line, with PM2's field names and order.
type jsonLine struct {
	Message   string `json:"message"`
	Timestamp string `json:"timestamp,omitempty"`
	Type      string `json:"type"`
	ProcessID int    `json:"process_id"`
	AppName   string `json:"app_name"`
}

// WriteJSON writes l to w as one line of PM2's JSON log format (log_type "json" in log files,
// `corral runtime --json` on stdout and stderr), newline included, in a single Write:
//
//	{"message":"...","timestamp":"...","type":"out","process_id":0,"app_name":"web"}
//
// The timestamp is timestamp when it is not empty, else l.Time formatted with JSONTimestamp; a line
// with neither (read back from a file, where the time is not known) has no "timestamp" key.
// As with JavaScript's JSON.stringify, <, > and & are not escaped.
func WriteJSON(w io.Writer, l Line, timestamp string) error {
	if timestamp == "" && !l.Time.IsZero() {
		timestamp = l.Time.UTC().Format(JSONTimestamp)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonLine{Message: l.Text, Timestamp: timestamp, Type: l.Stream, ProcessID: l.ID, AppName: l.App})
}

func (w *LineWriter) format(line []byte, now time.Time) {
	if w.o.JSON {
		// The timestamp and the fields after it are the same for every line of a Write.
		ts := w.timestamp(now)
		if w.jsonRest == nil || !w.jsonRestAt.Equal(now) {
			w.jsonRest = appendJSONTail(appendJSONStamp(w.jsonRest[:0], ts), w.o.Stream, w.o.ID, w.o.App)
			w.jsonRestAt = now
		}
		w.out.Write(append(appendJSONHead(w.out.AvailableBuffer(), line), w.jsonRest...))
		return
	}
	w.formatPrefix(now)
	w.out.Write(line)
	w.out.WriteByte('\n')
	w.midLine = false
}

// timestamp returns the JSON timestamp of a line written at now (cached for one time).
func (w *LineWriter) timestamp(now time.Time) []byte {
	if w.stampAt.Equal(now) && w.stamp != nil {
		return w.stamp
	}
	if w.date != nil {
		w.stamp = w.date.appendTo(w.stamp[:0], now)
	} else {
		w.stamp = now.UTC().AppendFormat(w.stamp[:0], JSONTimestamp)
	}
	w.stampAt = now
	return w.stamp
}

// formatPrefix writes a text line's date prefix, unless the line continues a flushed partial one.
func (w *LineWriter) formatPrefix(now time.Time) {
	if w.date != nil && !w.midLine {
		if !w.stampAt.Equal(now) || w.stamp == nil {
			w.stamp = append(w.date.appendTo(w.stamp[:0], now), ": "...)
			w.stampAt = now
		}
		w.out.Write(w.stamp)
	}
}

// smallOut is the largest buffer (formatted lines, a partial line) a writer keeps between
// writes; larger ones are pooled (outPool) or dropped, so that a process that flooded once and
// then sits idle does not pin them.
const smallOut = 4 << 10

// outPool holds the large formatting buffers of writers under a flood.
var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

// reserve makes room for n more bytes in w.out, with a buffer from outPool when that is large.
func (w *LineWriter) reserve(n int) {
	if w.out.Available() >= n || w.out.Len()+n <= smallOut {
		return
	}
	bp := outPool.Get().(*[]byte)
	b := append((*bp)[:0], w.out.Bytes()...)
	if c := w.out.Cap(); c > smallOut && c <= 1<<20 {
		old := w.out.Bytes()[:0]
		*bp = old
		outPool.Put(bp)
	}
	w.out = *bytes.NewBuffer(b)
}

// flushOut writes the formatted lines to every destination in one write each.
func (w *LineWriter) flushOut() {
	if w.out.Len() == 0 {
		return
	}
	w.writeDsts(w.out.Bytes())
	if c := w.out.Cap(); c > smallOut {
		if c <= 1<<20 {
			b := w.out.Bytes()[:0]
			outPool.Put(&b)
		}
		w.out = bytes.Buffer{}
		return
	}
	w.out.Reset()
}

// writeDsts writes b to every destination.
func (w *LineWriter) writeDsts(b []byte) {
	for _, d := range w.dsts {
		if _, err := d.Write(b); err != nil && w.o.OnError != nil {
			w.o.OnError(fmt.Errorf("write %s log of %s: %w", w.o.Stream, w.o.App, err))
		}
	}
}

// Subscribe returns a channel receiving the lines written from now on, and a function that
// ends the subscription and closes the channel. A subscriber that falls behind by more than
// the channel's buffer loses lines; it never slows the writer. The channel is also closed
// when the writer's own broadcaster is closed by Close.
func (w *LineWriter) Subscribe() (<-chan Line, func()) { return w.bc.Subscribe() }

// Close writes out a pending partial line, and closes the writer's broadcaster if it made its
// own. It does not close the destinations. Closing twice is harmless.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if len(w.partial) > 0 {
		w.emit(w.partial, w.o.Clock())
		w.partial = nil
		w.flushOut()
	}
	if w.ownBC {
		w.bc.Close()
	}
	return nil
}

// Broadcaster fans lines out to subscribers through bounded channels. It is safe for
// concurrent use.
type Broadcaster struct {
	buf    int
	mu     sync.RWMutex
	subs   map[chan Line]struct{}
	closed bool
	n      atomic.Int32 // len(subs), read without mu by listening
}

// listening reports whether there is a subscriber (a hint: one may come or go at any time).
func (b *Broadcaster) listening() bool { return b.n.Load() > 0 }

// NewBroadcaster returns a Broadcaster whose subscriber channels hold buf lines
// (DefaultSubscriberBuffer if buf <= 0).
func NewBroadcaster(buf int) *Broadcaster {
	if buf <= 0 {
		buf = DefaultSubscriberBuffer
	}
	return &Broadcaster{buf: buf, subs: map[chan Line]struct{}{}}
}

// Subscribe returns a channel receiving every line published from now on, and a function that
// ends the subscription and closes the channel; calling it more than once is harmless. Lines
// that do not fit in the channel's buffer are dropped for this subscriber. After Close the
// channel is returned already closed.
func (b *Broadcaster) Subscribe() (<-chan Line, func()) {
	ch := make(chan Line, b.buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	b.n.Store(int32(len(b.subs)))
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if _, ok := b.subs[ch]; ok {
				delete(b.subs, ch)
				b.n.Store(int32(len(b.subs)))
				close(ch)
			}
		})
	}
}

// Publish delivers l to every subscriber that has room for it.
func (b *Broadcaster) Publish(l Line) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for ch := range b.subs {
		select {
		case ch <- l:
		default:
		}
	}
}

// publish is Publish for a raw line, converting it only when someone is listening.
func (b *Broadcaster) publish(o LineOptions, text []byte, now time.Time) {
	if !b.listening() {
		return
	}
	b.Publish(Line{App: o.App, ID: o.ID, Stream: o.Stream, Text: string(text), Time: now})
}

// Close closes every subscriber's channel; later subscriptions get a closed channel.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
	b.n.Store(0)
}
