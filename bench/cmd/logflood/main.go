// Command logflood floods its standard output (and optionally standard error) with numbered lines
// of a fixed length, and checks log files for them, for the log benchmark (bench/logs.sh).
//
// Write N lines (line i carries sequence number i; every K-th goes to stderr with -err-every K):
//
//	logflood write -n 1000000 [-size 100] [-err-every 0] [-buf 65536] [-stamp FILE] [-done FILE] [-hold]
//
// Each line is exactly -size bytes, newline included: "#o 0000000042 xxxx...x\n" ("#e" on stderr).
// Output is buffered (-buf bytes per stream, cut anywhere, as a logging library's buffer is), so
// the writer is not the bottleneck: -stamp FILE receives the wall time (Unix ns) just before the
// first byte, -done FILE the time after the last write and the writer's own lines/s. With -hold the
// process then waits for SIGTERM or SIGINT (a supervised app that stays online), else it exits 0.
//
// Wait until the line with sequence number LAST is in a file (polling its end every ms):
//
//	logflood wait -file F -last 999999 -since STAMPFILE [-timeout 60s]
//
// (F may be a glob pattern: any matching file will do) prints "ms=<ms since the stamp>". Check files (read in the order given, e.g. rotated ones first):
//
//	logflood check -n 1000000 [-err-every 0] [-stream out|err|all] [-size 100] FILE...
//
// prints "lines=<n> want=<n> missing=<n> dup=<n> torn=<n> reordered=<n> foreign=<n>" and exits 1
// unless every wanted line is there exactly once, whole, in order per stream. Text before the "#"
// marker (a date prefix) is allowed; a JSON log line is read for the lines of its "message". torn counts lines
// whose marker or filler is broken (bytes of two lines mixed, a line cut short); foreign lines
// without a marker at all (the daemon's own notes).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: logflood write|wait|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = write(os.Args[2:])
	case "wait":
		err = wait(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logflood:", err)
		os.Exit(1)
	}
}

const seqDigits = 10

// line formats line seq of stream s ('o' or 'e') into b (len(b) == size).
func line(b []byte, s byte, seq int) {
	b[0], b[1], b[2] = '#', s, ' '
	v := seq
	for i := 3 + seqDigits - 1; i >= 3; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	b[3+seqDigits] = ' '
	for i := 4 + seqDigits; i < len(b)-1; i++ {
		b[i] = 'x'
	}
	b[len(b)-1] = '\n'
}

func isErr(seq, every int) bool { return every > 0 && seq%every == every-1 }

func write(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	n := fs.Int("n", 1000000, "lines to write")
	size := fs.Int("size", 100, "bytes per line, newline included")
	every := fs.Int("err-every", 0, "every K-th line goes to stderr (0: none)")
	bufSize := fs.Int("buf", 64<<10, "bytes buffered per stream")
	stamp := fs.String("stamp", "", "file receiving the start time (Unix ns)")
	done := fs.String("done", "", "file receiving the end time (Unix ns) and lines/s")
	hold := fs.Bool("hold", false, "wait for SIGTERM after the last line")
	_ = fs.Parse(args)
	if *size < 4+seqDigits+1 {
		return fmt.Errorf("-size %d: at least %d", *size, 4+seqDigits+1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	out := bufio.NewWriterSize(os.Stdout, *bufSize)
	errw := bufio.NewWriterSize(os.Stderr, *bufSize)
	b := make([]byte, *size)
	start := time.Now()
	if *stamp != "" {
		if err := os.WriteFile(*stamp, []byte(strconv.FormatInt(start.UnixNano(), 10)+"\n"), 0o644); err != nil {
			return err
		}
	}
	for i := 0; i < *n; i++ {
		if isErr(i, *every) {
			line(b, 'e', i)
			if _, err := errw.Write(b); err != nil {
				return err
			}
			continue
		}
		line(b, 'o', i)
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if err := errw.Flush(); err != nil {
		return err
	}
	end := time.Now()
	if *done != "" {
		rate := float64(*n) / end.Sub(start).Seconds()
		if err := os.WriteFile(*done, fmt.Appendf(nil, "%d %.0f\n", end.UnixNano(), rate), 0o644); err != nil {
			return err
		}
	}
	if *hold {
		<-sigs
	}
	return nil
}

// marker finds the line's "#o " or "#e " marker; it returns its index or -1.
func marker(l []byte) int {
	for i := 0; i+2 < len(l); i++ {
		if l[i] == '#' && (l[i+1] == 'o' || l[i+1] == 'e') && l[i+2] == ' ' {
			return i
		}
	}
	return -1
}

// parse returns the stream and sequence number of a log line (without its newline), ok=false for
// a torn one; found=false when it has no marker at all.
func parse(l []byte, size int) (s byte, seq int, ok, found bool) {
	i := marker(l)
	if i < 0 {
		return 0, 0, false, false
	}
	body := l[i:]
	if len(body) != size-1 || body[3+seqDigits] != ' ' {
		return 0, 0, false, true
	}
	for _, c := range body[4+seqDigits:] {
		if c != 'x' {
			return 0, 0, false, true
		}
	}
	v, err := strconv.Atoi(string(body[3 : 3+seqDigits]))
	if err != nil {
		return 0, 0, false, true
	}
	return body[1], v, true, true
}

// logical returns the log lines a line of a file holds: itself, or for a JSON log line the lines of
// its "message" (PM2 writes a whole chunk of output, newlines and all, as one message).
func logical(l []byte) [][]byte {
	if len(l) == 0 || l[0] != '{' {
		return [][]byte{l}
	}
	var j struct{ Message string }
	if json.Unmarshal(l, &j) != nil {
		return [][]byte{l}
	}
	return bytes.Split(bytes.TrimSuffix([]byte(j.Message), []byte("\n")), []byte("\n"))
}

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	n := fs.Int("n", 1000000, "lines written")
	size := fs.Int("size", 100, "bytes per line, newline included")
	every := fs.Int("err-every", 0, "every K-th line went to stderr")
	stream := fs.String("stream", "out", "which lines the files should hold: out, err or all")
	_ = fs.Parse(args)
	want := func(seq int) bool {
		switch *stream {
		case "err":
			return isErr(seq, *every)
		case "all":
			return true
		}
		return !isErr(seq, *every)
	}
	seen := make([]uint8, *n)
	last := map[byte]int{'o': -1, 'e': -1}
	var lines, torn, reordered, foreign, dup, extra int
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		for {
			l, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				torn++
				for err == bufio.ErrBufferFull {
					_, err = r.ReadSlice('\n')
				}
				continue
			}
			if len(l) == 0 && err == io.EOF {
				break
			}
			if err != nil && err != io.EOF {
				f.Close()
				return err
			}
			for _, l := range logical(bytes.TrimSuffix(l, []byte("\n"))) {
				lines++
				s, seq, ok, found := parse(l, *size)
				switch {
				case !found:
					foreign++
				case !ok:
					torn++
				case seq >= *n || !want(seq) || (s == 'e') != isErr(seq, *every):
					extra++
				default:
					if seen[seq] > 0 {
						dup++
					}
					seen[seq]++
					if seq < last[s] {
						reordered++
					}
					last[s] = seq
				}
			}
			if err == io.EOF {
				break
			}
		}
		f.Close()
	}
	wanted, missing := 0, 0
	for seq := 0; seq < *n; seq++ {
		if want(seq) {
			wanted++
			if seen[seq] == 0 {
				missing++
			}
		}
	}
	fmt.Printf("lines=%d want=%d missing=%d dup=%d torn=%d reordered=%d foreign=%d extra=%d\n",
		lines, wanted, missing, dup, torn, reordered, foreign, extra)
	if missing+dup+torn+reordered+extra > 0 {
		return fmt.Errorf("check failed")
	}
	return nil
}

func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	file := fs.String("file", "", "log file (a glob pattern: any match)")
	lastSeq := fs.Int("last", 0, "sequence number of the last line")
	since := fs.String("since", "", "file with the start time (Unix ns)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	_ = fs.Parse(args)
	var want []byte
	want = fmt.Appendf(want, " %0*d ", seqDigits, *lastSeq)
	deadline := time.Now().Add(*timeout)
	var found time.Time
	tail := make([]byte, 64<<10)
	for {
		paths, _ := filepath.Glob(*file)
		for _, path := range paths {
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			if st, err := f.Stat(); err == nil && st.Size() > 0 {
				off := max(st.Size()-int64(len(tail)), 0)
				n, _ := f.ReadAt(tail, off)
				if bytes.Contains(tail[:n], want) {
					found = time.Now()
				}
			}
			f.Close()
		}
		if !found.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("line %d not in %s after %v", *lastSeq, *file, *timeout)
		}
		time.Sleep(time.Millisecond)
	}
	b, err := os.ReadFile(*since)
	if err != nil {
		return err
	}
	ns, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", *since, err)
	}
	fmt.Printf("ms=%.1f\n", float64(found.UnixNano()-ns)/1e6)
	return nil
}
