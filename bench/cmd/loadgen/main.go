// Command loadgen sends HTTP requests to one URL at a steady rate and counts what failed, for
// benchmarks of reloads and restarts. It talks only to the URL it is given; the bench scripts give it
// 127.0.0.1.
//
// Steady load (open loop: request i starts at i/rate seconds, whatever the answers do):
//
//	loadgen -url http://127.0.0.1:8080/ -rate 500 -duration 20s [-close] [-timeout 2s]
//
// prints one summary line of key=value pairs:
//
//	sent=10000 ok=9998 non200=0 timeouts=0 errors=2 dropped=0 failures=2 p50_ms=0.4 p99_ms=1.9
//
// SIGINT or SIGTERM ends the sending early; the answers still outstanding are waited for and counted.
// failures = non200 + timeouts + errors + dropped (dropped: not sent because -max-inflight
// requests were already outstanding). With -close every request goes on a new connection
// (Connection: close); otherwise connections are kept alive. Go's client silently retries a GET that
// failed on a reused keep-alive connection before any answer; -method POST turns that off.
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
	flag.BoolVar(&c.waitOK, "wait-ok", false, "wait mode: poll until one request answers 200")
	flag.StringVar(&c.notPID, "not-pid", "", "wait mode: ignore answers whose X-Worker-Pid is this")
	flag.DurationVar(&c.interval, "interval", 5*time.Millisecond, "wait mode: time between requests")
	flag.DurationVar(&c.deadline, "deadline", 60*time.Second, "wait mode: give up after this long")
	flag.Parse()
	if c.url == "" {
		return errors.New("-url is required")
	}
	if c.rate < 1 || c.duration <= 0 || c.timeout <= 0 || c.maxInflight < 1 || c.interval <= 0 || c.deadline <= 0 {
		return errors.New("-rate, -duration, -timeout, -max-inflight, -interval and -deadline must be positive")
	}
	client := &http.Client{
		Timeout: c.timeout,
		Transport: &http.Transport{
			DisableKeepAlives:   c.close,
			MaxIdleConns:        c.maxInflight,
			MaxIdleConnsPerHost: c.maxInflight,
			DialContext:         (&net.Dialer{Timeout: c.timeout}).DialContext,
		},
	}
	defer client.CloseIdleConnections()
	if c.waitOK {
		return waitOK(client, c)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println(steady(ctx, client, c))
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
	sent, ok, non200, timeouts, errs, dropped int
	latencies                                 []time.Duration
	samples                                   map[string]int
}

func (s *summary) add(o outcome, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o {
	case ok:
		s.ok++
		s.latencies = append(s.latencies, d)
	case non200:
		s.non200++
	case timeout:
		s.timeouts++
	default:
		s.errs++
	}
	if err != nil && len(s.samples) < 8 {
		s.samples[err.Error()]++
	}
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
	fmt.Fprintf(&b, "sent=%d ok=%d non200=%d timeouts=%d errors=%d dropped=%d failures=%d p50_ms=%s p99_ms=%s",
		s.sent, s.ok, s.non200, s.timeouts, s.errs, s.dropped, s.non200+s.timeouts+s.errs+s.dropped, pct(0.50), pct(0.99))
	return b.String()
}

// steady sends c.rate requests a second for c.duration (or until ctx is done), open loop, and waits for
// the answers.
func steady(ctx context.Context, client *http.Client, c config) *summary {
	s := &summary{samples: map[string]int{}}
	slots := make(chan struct{}, c.maxInflight)
	var wg sync.WaitGroup
	start := time.Now()
	every := time.Second / time.Duration(c.rate)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * every)
		if at.Sub(start) >= c.duration {
			break
		}
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
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
			o, _, err := do(client, c)
			s.add(o, time.Since(t0), err)
		}()
	}
	wg.Wait()
	return s
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
