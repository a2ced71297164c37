// Command crashprobe measures crash recovery from the outside, for bench/crash.sh: how long after a
// SIGKILL of one instance of a multi-instance HTTP app its replacement answers a request itself,
// while steady background traffic checks that the other instances serve every request meanwhile.
//
//	crashprobe -url http://127.0.0.1:8080/ -instances 4 -rounds 40 [-rate 200] [-probe-every 1ms]
//	           [-gap 400ms] [-timeout 2s] [-deadline 10s] [-ppid PID]
//
// It talks only to the URL it is given (bench/crash.sh gives it 127.0.0.1). Each answer names its
// process in the X-Worker-Pid header (examples/node/app.js, bench/listen-app.js, bench/cmd/goworker).
//
//  1. Discovery: requests (one TCP connection each) until -instances distinct pids have answered.
//  2. Rounds: the victim is the next of those pids in turn; crashprobe sends it SIGKILL itself and
//     takes the time just before the kill(2) call (kill_ns). It then opens one new connection every
//     -probe-every (open loop: a probe does not wait for the previous one) until a 200 comes from a
//     pid that is not among the known instances: the replacement (at most -probes probes are under way
//     at once: a tick with that many outstanding sends none, so that a server that stalls is not
//     flooded). recovery_ms = the time that answer's
//     headers arrived - kill_ns: "back to full capacity" (every instance serving again, the new one
//     included). The replacement takes the victim's place in the known set, and the next round starts
//     -gap after the recovery (keep -gap x -instances above the tool's min_uptime, PM2's default 1 s,
//     or every kill counts as an unstable restart).
//  3. All along, background traffic: -rate requests/s (open loop, Connection: close, GET), from the
//     first discovery request to the end of the last round.
//
// Every request — background and probes — counts. A failure (an error, a timeout, a non-200) is
// "in flight at a kill" when the request was sent before a kill and ended after it: a request the
// victim had already accepted when it was killed is lost whatever the supervisor does. Any other
// failure (sent after a kill, or with no kill during its life) is one the supervisor could have
// avoided: the target is 0 of those.
//
// With -ppid, a victim must be a child of that pid (the daemon or primary: never kill a stranger
// whose pid was reused). Output: one line per round,
//
//	round=3 victim=1234 replacement=1240 kill_unix_ns=... recovery_ms=21.4 probes=22
//
// then one summary line of key=value pairs: rounds, recovered, recovery_ms_median/_min/_max/_p90,
// sent, ok, failed, failed_inflight, failed_other, err_refused, err_reset, err_eof, err_timeout,
// err_other, non200. It exits 1 if a round did not recover within -deadline.
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
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crashprobe:", err)
		os.Exit(1)
	}
}

type config struct {
	url        string
	instances  int
	rounds     int
	rate       int
	probeEvery time.Duration
	gap        time.Duration
	timeout    time.Duration
	deadline   time.Duration
	ppid       int
	probes     int
}

// result is the end of one request.
type result struct {
	sent, done time.Time
	pid        int
	status     int
	err        error
}

// prober sends requests and keeps every result.
type prober struct {
	c      config
	client *http.Client
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []result
	// watch, when set, receives every 200's result (the round loop looks for the replacement).
	watch chan result
}

func run() error {
	var c config
	flag.StringVar(&c.url, "url", "", "URL to request (required)")
	flag.IntVar(&c.instances, "instances", 2, "instances of the app")
	flag.IntVar(&c.rounds, "rounds", 20, "kills")
	flag.IntVar(&c.rate, "rate", 200, "background requests per second (0: none)")
	flag.DurationVar(&c.probeEvery, "probe-every", time.Millisecond, "after a kill, one new connection this often until the replacement answers")
	flag.DurationVar(&c.gap, "gap", 400*time.Millisecond, "pause between a recovery and the next kill")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Second, "per-request timeout")
	flag.DurationVar(&c.deadline, "deadline", 10*time.Second, "give up on a round after this long")
	flag.IntVar(&c.ppid, "ppid", 0, "a victim must be a child of this pid (0: no check)")
	flag.IntVar(&c.probes, "probes", 8, "most probes under way at once")
	flag.Parse()
	if c.url == "" || c.instances < 1 || c.rounds < 0 || c.rate < 0 || c.probeEvery <= 0 || c.probes < 1 {
		return errors.New("want -url, -instances >= 1, -rounds >= 0, -rate >= 0, -probe-every > 0, -probes >= 1")
	}
	p := &prober{c: c, client: &http.Client{
		Timeout: c.timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true, // one TCP connection per request: each goes through accept
			DialContext:       (&net.Dialer{Timeout: c.timeout}).DialContext,
			MaxIdleConns:      -1,
		},
	}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bgCtx, bgStop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	if c.rate > 0 {
		bg.Add(1)
		go func() { defer bg.Done(); p.background(bgCtx) }()
	}
	known, err := p.discover(ctx)
	var recoveries []float64
	failedRound := false
	if err == nil {
		var kills []time.Time
		for i := 0; i < c.rounds && ctx.Err() == nil; i++ {
			victim := known[i%len(known)]
			if c.ppid > 0 && parentOf(victim) != c.ppid {
				err = fmt.Errorf("round %d: pid %d is not a child of %d", i+1, victim, c.ppid)
				break
			}
			rec, replacement, probes, killAt, rerr := p.round(ctx, victim, known)
			kills = append(kills, killAt)
			p.setKills(kills)
			if rerr != nil {
				fmt.Printf("round=%d victim=%d replacement=none kill_unix_ns=%d recovery_ms=n/a probes=%d error=%q\n",
					i+1, victim, killAt.UnixNano(), probes, rerr.Error())
				failedRound = true
				break
			}
			known[slices.Index(known, victim)] = replacement
			ms := float64(rec) / float64(time.Millisecond)
			recoveries = append(recoveries, ms)
			fmt.Printf("round=%d victim=%d replacement=%d kill_unix_ns=%d recovery_ms=%.2f probes=%d\n",
				i+1, victim, replacement, killAt.UnixNano(), ms, probes)
			select {
			case <-time.After(c.gap):
			case <-ctx.Done():
			}
		}
	}
	bgStop()
	bg.Wait()
	p.wg.Wait()
	p.summary(recoveries)
	if err != nil {
		return err
	}
	if failedRound {
		return errors.New("a round did not recover")
	}
	return nil
}

// parentOf returns pid's parent pid from /proc, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// send makes one request on its own goroutine and records it; a non-nil busy counts it while it
// is under way.
func (p *prober) send(busy *atomic.Int32) {
	p.wg.Add(1)
	if busy != nil {
		busy.Add(1)
	}
	go func() {
		defer p.wg.Done()
		if busy != nil {
			defer busy.Add(-1)
		}
		r := result{sent: time.Now()}
		resp, err := p.client.Get(p.c.url)
		if err == nil {
			r.status = resp.StatusCode
			r.pid, _ = strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		r.err = err
		r.done = time.Now()
		p.mu.Lock()
		p.results = append(p.results, r)
		w := p.watch
		p.mu.Unlock()
		if w != nil && err == nil && r.status == http.StatusOK {
			select {
			case w <- r:
			default:
			}
		}
	}()
}

// background sends c.rate requests per second until ctx ends.
func (p *prober) background(ctx context.Context) {
	start := time.Now()
	every := time.Second / time.Duration(p.c.rate)
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * every)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		p.send(nil)
	}
}

// discover sends requests until c.instances distinct pids have answered, and returns them.
func (p *prober) discover(ctx context.Context) ([]int, error) {
	w := make(chan result, 1024)
	p.mu.Lock()
	p.watch = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.watch = nil
		p.mu.Unlock()
	}()
	var pids []int
	var busy atomic.Int32
	end := time.After(p.c.deadline)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for len(pids) < p.c.instances {
		select {
		case r := <-w:
			if r.pid > 0 && !slices.Contains(pids, r.pid) {
				pids = append(pids, r.pid)
			}
		case <-tick.C:
			if busy.Load() < int32(p.c.probes) {
				p.send(&busy)
			}
		case <-end:
			return nil, fmt.Errorf("discovery: %d of %d instances answered within %s (pids %v)", len(pids), p.c.instances, p.c.deadline, pids)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pids, nil
}

// round kills victim and probes until a pid outside known answers.
func (p *prober) round(ctx context.Context, victim int, known []int) (rec time.Duration, replacement, probes int, killAt time.Time, err error) {
	w := make(chan result, 1024)
	p.mu.Lock()
	p.watch = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.watch = nil
		p.mu.Unlock()
	}()
	killAt = time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		return 0, 0, 0, killAt, fmt.Errorf("kill %d: %w", victim, err)
	}
	tick := time.NewTicker(p.c.probeEvery)
	defer tick.Stop()
	end := time.After(p.c.deadline)
	var busy atomic.Int32
	p.send(&busy)
	probes = 1
	for {
		select {
		case r := <-w:
			if r.pid > 0 && r.pid != victim && !slices.Contains(known, r.pid) && r.sent.After(killAt) {
				return r.done.Sub(killAt), r.pid, probes, killAt, nil
			}
		case <-tick.C:
			if busy.Load() >= int32(p.c.probes) {
				continue
			}
			p.send(&busy)
			probes++
		case <-end:
			return 0, 0, probes, killAt, fmt.Errorf("no answer from a replacement within %s", p.c.deadline)
		case <-ctx.Done():
			return 0, 0, probes, killAt, ctx.Err()
		}
	}
}

// kills, set by the round loop, are the kill times so far (for the failure split).
var killsMu sync.Mutex
var killTimes []time.Time

func (p *prober) setKills(k []time.Time) {
	killsMu.Lock()
	killTimes = slices.Clone(k)
	killsMu.Unlock()
}

// summary prints the summary line.
func (p *prober) summary(rec []float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	killsMu.Lock()
	kills := killTimes
	killsMu.Unlock()
	var ok, failed, inflight, refused, reset, eof, timeout, other, non200 int
	for _, r := range p.results {
		if r.err == nil && r.status == http.StatusOK {
			ok++
			continue
		}
		failed++
		if slices.ContainsFunc(kills, func(k time.Time) bool { return r.sent.Before(k) && r.done.After(k) }) {
			inflight++
		}
		switch {
		case r.err == nil:
			non200++
		case errors.Is(r.err, syscall.ECONNREFUSED):
			refused++
		case errors.Is(r.err, syscall.ECONNRESET) || errors.Is(r.err, syscall.EPIPE):
			reset++
		case errors.Is(r.err, io.EOF) || errors.Is(r.err, io.ErrUnexpectedEOF):
			eof++
		case isTimeout(r.err):
			timeout++
		default:
			other++
			fmt.Fprintln(os.Stderr, "crashprobe: failure:", r.err)
		}
	}
	sorted := slices.Clone(rec)
	slices.Sort(sorted)
	q := func(f float64) string {
		if len(sorted) == 0 {
			return "n/a"
		}
		i := int(f * float64(len(sorted)-1))
		return strconv.FormatFloat(sorted[i], 'f', 2, 64)
	}
	median := "n/a"
	if n := len(sorted); n > 0 {
		m := sorted[n/2]
		if n%2 == 0 {
			m = (sorted[n/2-1] + sorted[n/2]) / 2
		}
		median = strconv.FormatFloat(m, 'f', 2, 64)
	}
	fmt.Printf("rounds=%d recovered=%d recovery_ms_median=%s recovery_ms_min=%s recovery_ms_p90=%s recovery_ms_max=%s "+
		"sent=%d ok=%d failed=%d failed_inflight=%d failed_other=%d err_refused=%d err_reset=%d err_eof=%d err_timeout=%d err_other=%d non200=%d\n",
		len(kills), len(rec), median, q(0), q(0.9), q(1), len(p.results), ok, failed, inflight, failed-inflight,
		refused, reset, eof, timeout, other, non200)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
