package logs

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
)

// threadCPU returns the calling thread's CPU time (user + system) in ns.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// floodChunk is what a log pump hands a LineWriter under a flood: 64 KiB of 100-byte lines, the
// last one cut.
func floodChunk() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 64<<10; i++ {
		fmt.Fprintf(&b, "#o %010d %s\n", i, bytes.Repeat([]byte("x"), 85))
	}
	return b.Bytes()[:64<<10]
}

// BenchmarkLineWriterFlood measures the per-line cost of a LineWriter under a flood, with the
// options the daemon uses (a Watch callback, a partial-line delay) and without and with a date
// prefix, JSON lines and one subscriber; ns/line is the figure to read.
func BenchmarkLineWriterFlood(b *testing.B) {
	chunk := floodChunk()
	lines := bytes.Count(chunk, []byte("\n"))
	watch := func(line []byte) {
		_ = bytes.Contains(line, []byte("EADDRINUSE")) || bytes.Contains(line, []byte("ddress already in use"))
	}
	for _, c := range []struct {
		name string
		o    LineOptions
		sub  bool
	}{
		{"plain", LineOptions{}, false},
		{"daemon", LineOptions{Watch: watch, WatchBlocks: true}, false},
		{"daemon-perline-watch", LineOptions{Watch: watch}, false},
		{"date", LineOptions{Watch: watch, WatchBlocks: true, DateFormat: "YYYY-MM-DDTHH:mm:ss"}, false},
		{"json", LineOptions{Watch: watch, WatchBlocks: true, JSON: true}, false},
		{"subscriber", LineOptions{Watch: watch, WatchBlocks: true}, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.o.App, c.o.PartialDelay = "flood", DefaultPartialDelay
			w := NewLineWriter(c.o, io.Discard, io.Discard)
			defer w.Close()
			if c.sub {
				ch, cancel := w.Subscribe()
				defer cancel()
				go func() {
					for range ch {
					}
				}()
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			// CPU time of this thread too: wall time on a shared machine is noise.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU()
			for b.Loop() {
				w.Write(chunk)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
			b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N*lines), "cpu-ns/line")
		})
	}
}
