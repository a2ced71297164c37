// Command loadgen sends HTTP requests to one URL at a steady rate and counts what failed, for
// benchmarks of reloads and restarts. It talks only to the URL it is given; the bench scripts give it
// 127.0.0.1.
//
// Steady load (open loop: request i starts at i/rate seconds, whatever the answers do):
//
//	loadgen -url http://127.0.0.1:8080/ -rate 500 -duration 20s [-close] [-timeout 2s] [-conns 8]
//
// prints one summary line of key=value pairs (after "# <count>x <error>" sample lines):
//
//	sent=10000 ok=9998 non200=0 timeouts=0 errors=2 dropped=0 failures=2 p50_ms=0.4 p99_ms=1.9
//	err_refused=0 err_reset=2 err_eof=0 err_other=0 longest_outage_ms=3.1 outage_at_s=12.40
//	outages=0 outage_total_ms=0.0 pids=4 achieved_rps=500.0 send_lag_max_ms=0.8 cpu_pct=6.1
//
// (one line). SIGINT or SIGTERM ends the sending early; the answers still outstanding are waited for
// and counted. failures = non200 + timeouts + errors + dropped (dropped: not sent because -max-inflight
// requests were already outstanding); errors are split into err_refused (connection refused),
// err_reset (connection reset or broken pipe), err_eof (connection closed before an answer) and
// err_other. With -close every request goes on a new connection (Connection: close); otherwise
// connections are kept alive. Go's client silently retries a GET that failed on a reused keep-alive
// connection before any answer; -method POST turns that off.
//
// Outage: the send window runs from the first send to the last (or to SIGINT). Take the times at
// which requests completed with a 200, add both ends of the window, sort: longest_outage_ms is the
// longest interval between two neighbours, that is the longest time during which no request
// succeeded; outage_at_s is when it began (seconds after the first send). outages and
// outage_total_ms count and sum the intervals of at least -outage-min (default 100ms). At 500 req/s a
// healthy server's longest interval is a few milliseconds; a request that times out after -timeout
// ends no interval, so a port that stops answering shows as an outage of at least that long.
// pids is the number of distinct X-Worker-Pid headers among the 200s. achieved_rps is sent / send
// window, send_lag_max_ms how late the sender was at worst and cpu_pct loadgen's own CPU time (user +
// system, % of one core) over the run: if the first is short of -rate or the others are high, the
// machine, not the server, was the limit. -timeline FILE writes one line per second of completions:
// "second ok non200 timeouts errors".
//
// Burst mode, for connections handed to a worker that dies before accepting them:
//
//	loadgen -burst 16 -mark 400ms -url URL -close -timeout 3s
//
// sends 16 requests at once, waits for every answer and prints the counters above plus
// pending_at_mark (requests without an answer -mark after the burst), pending_ok (of those, how many
// got a 200 later) and pending_failed.
//
// Wait mode, for crash-to-serving times:
//
//	loadgen -wait-ok -url URL [-not-pid PID] [-interval 5ms] [-deadline 60s]
//
// sends a request every interval until one answers 200 (and, with -not-pid, its X-Worker-Pid header is
// not PID), then prints "ok_unix_ns=<time of that answer> waited_ms=<since loadgen started>". It exits 1
// at the deadline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	url         string
	conns       int
	method      string
	rate        int
	duration    time.Duration
	close       bool
	timeout     time.Duration
	maxInflight int
	waitOK      bool
	notPID      string
	interval    time.Duration
	deadline    time.Duration
	outageMin   time.Duration
	timeline    string
	burst       int
	mark        time.Duration
}

func run() error {
	var c config
	flag.StringVar(&c.url, "url", "", "URL to request (required)")
	flag.StringVar(&c.method, "method", http.MethodGet, "HTTP method")
	flag.IntVar(&c.rate, "rate", 200, "requests per second")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send")
	flag.BoolVar(&c.close, "close", false, "one connection per request (Connection: close)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Second, "per-request timeout")
	flag.IntVar(&c.maxInflight, "max-inflight", 1000, "most requests outstanding at once; more are dropped")
	flag.IntVar(&c.conns, "conns", 0, "most connections open at once (keep-alive: requests share them); 0: no limit")
	flag.BoolVar(&c.waitOK, "wait-ok", false, "wait mode: poll until one request answers 200")
	flag.StringVar(&c.notPID, "not-pid", "", "wait mode: ignore answers whose X-Worker-Pid is this")
	flag.DurationVar(&c.interval, "interval", 5*time.Millisecond, "wait mode: time between requests")
	flag.DurationVar(&c.deadline, "deadline", 60*time.Second, "wait mode: give up after this long")
	flag.DurationVar(&c.outageMin, "outage-min", 100*time.Millisecond, "count gaps between successes at least this long as outages")
	flag.StringVar(&c.timeline, "timeline", "", "write per-second completion counts to this file")
	flag.IntVar(&c.burst, "burst", 0, "burst mode: send this many requests at once, then wait for them")
	flag.DurationVar(&c.mark, "mark", 400*time.Millisecond, "burst mode: count the requests still unanswered this long after the burst")
	flag.Parse()
	if c.url == "" {
		return errors.New("-url is required")
	}
	if c.rate < 1 || c.duration <= 0 || c.timeout <= 0 || c.maxInflight < 1 || c.interval <= 0 || c.deadline <= 0 ||
		c.outageMin <= 0 || c.mark <= 0 || c.burst < 0 {
		return errors.New("-rate, -duration, -timeout, -max-inflight, -interval, -deadline, -outage-min and -mark must be positive")
	}
	client := &http.Client{
		Timeout: c.timeout,
		Transport: &http.Transport{
			DisableKeepAlives:   c.close,
			MaxIdleConns:        c.maxInflight,
			MaxIdleConnsPerHost: c.maxInflight,
			MaxConnsPerHost:     c.conns,
			DialContext:         (&net.Dialer{Timeout: c.timeout}).DialContext,
		},
	}
	defer client.CloseIdleConnections()
	if c.waitOK {
		return waitOK(client, c)
	}
	if c.burst > 0 {
		fmt.Println(burst(client, c))
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := steady(ctx, client, c)
	if c.timeline != "" {
		if err := os.WriteFile(c.timeline, []byte(s.timeline()), 0o644); err != nil {
			return fmt.Errorf("write timeline: %w", err)
		}
	}
	fmt.Println(s)
	return nil
}

// outcome is the result of one request.
type outcome int

const (
	ok outcome = iota
	non200
	timeout
	failed
)

// do sends one request and classifies the answer; for ok answers it also returns X-Worker-Pid.
func do(client *http.Client, c config) (outcome, string, error) {
	req, err := http.NewRequest(c.method, c.url, nil)
	if err != nil {
		return failed, "", fmt.Errorf("build request for %s: %w", c.url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return timeout, "", err
		}
		return failed, "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return failed, "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return non200, "", fmt.Errorf("status %s", resp.Status)
	}
	return ok, resp.Header.Get("X-Worker-Pid"), nil
}

// summary counts the outcomes of a steady run.
type summary struct {
	mu                                        sync.Mutex
	outageMin                                 time.Duration
	start                                     time.Time
	window                                    time.Duration // first send to last send
	sendLag                                   time.Duration // worst lateness of a send
	cpu                                       time.Duration // loadgen's own user+system time
	sent, ok, non200, timeouts, errs, dropped int
	refused, reset, eof                       int
	latencies                                 []time.Duration
	okAt                                      []time.Duration // completion of each 200, since start
	pids                                      map[string]bool
	perSecond                                 map[int]*[4]int // completion second -> ok, non200, timeouts, errors
	samples                                   map[string]int
}

func newSummary(outageMin time.Duration) *summary {
	return &summary{outageMin: outageMin, start: time.Now(), pids: map[string]bool{}, perSecond: map[int]*[4]int{}, samples: map[string]int{}}
}

func (s *summary) add(o outcome, d time.Duration, pid string, err error) {
	at := time.Since(s.start)
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := int(at / time.Second)
	if s.perSecond[sec] == nil {
		s.perSecond[sec] = new([4]int)
	}
	s.perSecond[sec][o]++
	switch o {
	case ok:
		s.ok++
		s.latencies = append(s.latencies, d)
		s.okAt = append(s.okAt, at)
		s.pids[pid] = true
	case non200:
		s.non200++
	case timeout:
		s.timeouts++
	default:
		s.errs++
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			s.refused++
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			s.reset++
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			s.eof++
		}
	}
	if err != nil && len(s.samples) < 8 {
		s.samples[err.Error()]++
	}
}

// outage returns the longest interval without a 200 in the send window (see the package comment),
// when it began, and the count and sum of the intervals of at least s.outageMin. The caller holds s.mu.
func (s *summary) outage() (longest, at time.Duration, n int, total time.Duration) {
	t := make([]time.Duration, 0, len(s.okAt)+2)
	t = append(t, 0, s.window)
	t = append(t, s.okAt...)
	slices.Sort(t)
	for i := 1; i < len(t); i++ {
		gap := t[i] - t[i-1]
		if gap > longest {
			longest, at = gap, t[i-1]
		}
		if gap >= s.outageMin {
			n++
			total += gap
		}
	}
	return longest, at, n, total
}

// timeline renders the per-second completion counts.
func (s *summary) timeline() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := -1
	for sec := range s.perSecond {
		last = max(last, sec)
	}
	var b strings.Builder
	b.WriteString("# second ok non200 timeouts errors (by completion time)\n")
	for sec := 0; sec <= last; sec++ {
		c := s.perSecond[sec]
		if c == nil {
			c = new([4]int)
		}
		fmt.Fprintf(&b, "%d %d %d %d %d\n", sec, c[ok], c[non200], c[timeout], c[failed])
	}
	return b.String()
}

func (s *summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.latencies)
	pct := func(p float64) string {
		if len(s.latencies) == 0 {
			return "NaN"
		}
		i := int(p * float64(len(s.latencies)-1))
		return strconv.FormatFloat(float64(s.latencies[i])/float64(time.Millisecond), 'f', 2, 64)
	}
	var b strings.Builder
	for msg, n := range s.samples {
		fmt.Fprintf(&b, "# %dx %s\n", n, msg)
	}
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
	}
	fmt.Fprintf(&b, "sent=%d ok=%d non200=%d timeouts=%d errors=%d dropped=%d failures=%d p50_ms=%s p99_ms=%s",
		s.sent, s.ok, s.non200, s.timeouts, s.errs, s.dropped, s.non200+s.timeouts+s.errs+s.dropped, pct(0.50), pct(0.99))
	fmt.Fprintf(&b, " err_refused=%d err_reset=%d err_eof=%d err_other=%d", s.refused, s.reset, s.eof, s.errs-s.refused-s.reset-s.eof)
	longest, at, n, total := s.outage()
	rps := 0.0
	if s.window > 0 {
		rps = float64(s.sent) / s.window.Seconds()
	}
	wall := time.Since(s.start)
	fmt.Fprintf(&b, " longest_outage_ms=%s outage_at_s=%.2f outages=%d outage_total_ms=%s pids=%d achieved_rps=%.1f send_lag_max_ms=%s cpu_pct=%.1f",
		ms(longest), at.Seconds(), n, ms(total), len(s.pids), rps, ms(s.sendLag), 100*s.cpu.Seconds()/wall.Seconds())
	return b.String()
}

// cpuTime returns the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// steady sends c.rate requests a second for c.duration (or until ctx is done), open loop, and waits for
// the answers.
func steady(ctx context.Context, client *http.Client, c config) *summary {
	cpu0 := cpuTime()
	s := newSummary(c.outageMin)
	slots := make(chan struct{}, c.maxInflight)
	var wg sync.WaitGroup
	start := s.start
	every := time.Second / time.Duration(c.rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= c.duration {
			s.mu.Lock()
			s.window = time.Since(start)
			s.mu.Unlock()
			break
		}
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			s.mu.Lock()
			s.window = time.Since(start)
			s.mu.Unlock()
			break
		}
		if lag := time.Since(at); lag > s.sendLag {
			s.sendLag = lag // only this goroutine writes sendLag before wg.Wait
		}
		select {
		case slots <- struct{}{}:
		default:
			s.mu.Lock()
			s.sent++
			s.dropped++
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			t0 := time.Now()
			o, pid, err := do(client, c)
			s.add(o, time.Since(t0), pid, err)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	s.cpu = cpuTime() - cpu0
	s.mu.Unlock()
	return s
}

// burst sends c.burst requests at once and waits for all of them; the requests still unanswered
// c.mark after the burst are also counted apart (pending_*).
func burst(client *http.Client, c config) string {
	cpu0 := cpuTime()
	s := newSummary(c.outageMin)
	var mu sync.Mutex
	var pending, pendingOK int
	var wg sync.WaitGroup
	for range c.burst {
		s.sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			o, pid, err := do(client, c)
			s.add(o, time.Since(t0), pid, err)
			if time.Since(s.start) >= c.mark {
				mu.Lock()
				pending++
				if o == ok {
					pendingOK++
				}
				mu.Unlock()
			}
		}()
	}
	s.window = time.Since(s.start)
	wg.Wait()
	s.cpu = cpuTime() - cpu0
	return fmt.Sprintf("%s pending_at_mark=%d pending_ok=%d pending_failed=%d", s, pending, pendingOK, pending-pendingOK)
}

// waitOK polls c.url until an answer is 200 from a process other than c.notPID.
func waitOK(client *http.Client, c config) error {
	start := time.Now()
	deadline := start.Add(c.deadline)
	var last error
	for time.Now().Before(deadline) {
		o, pid, err := do(client, c)
		if o == ok && (c.notPID == "" || pid != c.notPID) {
			now := time.Now()
			fmt.Printf("ok_unix_ns=%d waited_ms=%.1f\n", now.UnixNano(), float64(now.Sub(start))/float64(time.Millisecond))
			return nil
		}
		switch {
		case err != nil:
			last = err
		case o == ok:
			last = fmt.Errorf("answered by the excluded pid %s", pid)
		}
		time.Sleep(c.interval)
	}
	return fmt.Errorf("no 200 from %s within %v (last error: %v)", c.url, c.deadline, last)
}
