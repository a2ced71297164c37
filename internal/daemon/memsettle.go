package daemon

import (
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/corralhq/corral/internal/pagetrim"
)

// Memory settling (issue 13), run by the sampler goroutine once per tick when Config.TrimMemory
// is set (the daemon; not a library user, whose process is not ours to tune). Two things keep the
// daemon's RSS above what it needs once a burst of work is over:
//
//   - Heap pages that the burst used and that are free again: Go's background scavenger returns
//     them to the system only gradually (it aims at ~10% over the heap goal, at ~1% of one CPU),
//     so 3 s after `start` of 100 apps about 4 MB of free heap are still resident. When at least
//     settleFreeMin (and a quarter of the live heap) is free and resident, the settler returns it
//     at once (debug.FreeOSMemory: a collection, then every free page), at most once per
//     settleReleaseGap and only on a quiet tick: no collection ran since the previous tick, so a
//     burst of work (which makes collections) is over and is not slowed by this one.
//   - Pages of the binary that a collection read: the collector's stack scans read the function
//     tables (pclntab) of every frame of every goroutine and its heap scan the type data of
//     objects; with the kernel's 64 KiB fault-around, a collection maps 3-4 MB of the binary's
//     read-only data that the idle daemon does not otherwise touch (Go forces one every two
//     minutes). It is about the same with 100 processes as with none: what counts is how many
//     distinct functions are on the goroutines' stacks (each costs a few scattered 64 KiB blocks:
//     its entry, its pcsp and pcdata tables, its pointer maps), and the per-process goroutines
//     all run the same few. On the first tick after a collection (quiet or not: the pages are
//     only needed while it runs) the settler drops them again (internal/pagetrim: clean
//     page-cache pages, shared, back through a minor fault when touched), at most once per
//     settleTrimGap, so that a collection's pages stay mapped for at most about a tick. It
//     trims too on a quiet tick when the binary's resident pages (pagetrim.FileRSS, a counter
//     read from /proc/self/statm) have grown by settleFileGrowth over what they were one tick
//     after the last trim (the working set of the ticks): occasional work, such as the keeper
//     link's state sweep (encoding/json over the whole table), maps 1-2 MB that nothing needs
//     until it runs again. What the daemon keeps running (this loop, the
//     log pumps, the API) faults its pages back in: what stays resident is its working set.
//
// The settler's state is owned by the sampler goroutine.
type memSettler struct {
	samples     []metrics.Sample
	prevGC      uint64 // collections counted at the previous tick
	trimGC      uint64 // ... at the last trim
	lastRelease time.Time
	lastTrim    time.Time
	// fileRSS reads the binary's resident pages (pagetrim.FileRSS; a test's fake); fileBase is
	// what they were at the first tick after the last trim (the working set), 0 until then.
	fileRSS  func() (int64, error)
	fileBase int64
}

const (
	settleFreeMin    = 1 << 20
	settleReleaseGap = 2 * time.Second
	settleTrimGap    = 900 * time.Millisecond // about every tick: a trim costs ~0.35 ms of CPU
	// settleFileGrowth is how far the binary's resident pages may grow over the working set
	// before a quiet tick trims them, collection or not: work now and then (the keeper link's
	// state sweep marshals the table: encoding/json, its type data) maps 1-2 MB that the next
	// seconds do not need.
	settleFileGrowth = 512 << 10
)

// newMemSettler starts with no gap to wait: the daemon's first collections (start-up's garbage,
// pagetrim's at ready) are followed by a trim on the first quiet tick.
func newMemSettler() *memSettler {
	s := &memSettler{samples: []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/free:bytes"},    // free, resident (not yet released)
		{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet swept objects
	}, fileRSS: pagetrim.FileRSS}
	metrics.Read(s.samples)
	s.prevGC = value(s.samples[0])
	s.trimGC = s.prevGC
	return s
}

func value(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// tick releases free heap and trims the binary's pages as described above. It reports what it
// did, for the daemon's debug log.
func (s *memSettler) tick(now time.Time) (released, trimmed bool, err error) {
	metrics.Read(s.samples)
	gc, free, objects := value(s.samples[0]), value(s.samples[1]), value(s.samples[2])
	quiet := gc == s.prevGC
	s.prevGC = gc
	if quiet && free >= settleFreeMin && free >= objects/4 && now.Sub(s.lastRelease) >= settleReleaseGap {
		debug.FreeOSMemory()
		s.lastRelease = now
		released = true
		s.prevGC++ // the collection FreeOSMemory ran is ours: the next tick is still quiet
		gc++
	}
	grew := false
	if file, ferr := s.fileRSS(); ferr == nil {
		if s.fileBase == 0 {
			s.fileBase = file
		}
		grew = quiet && file > s.fileBase+settleFileGrowth
	}
	// The release's own collection is trimmed after at once.
	if (gc != s.trimGC || grew) && (released || now.Sub(s.lastTrim) >= settleTrimGap) {
		s.trimGC = gc
		s.lastTrim = now
		s.fileBase = 0 // measured again at the next tick, once the working set is back
		_, err = pagetrim.Trim()
		trimmed = err == nil
	}
	return released, trimmed, err
}
