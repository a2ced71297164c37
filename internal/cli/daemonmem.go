package cli

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/corralhq/corral/internal/pagetrim"
)

// daemonGCPercent is the daemon's GOGC unless $GOGC sets one. Go's default, 100, lets the heap
// grow to twice what is live before a collection: a daemon with 100 apps (about 17 MB live, most
// of it the log pumps' buffers) then sits at 30-40 MB after a burst of restarts or `jlist`s. At 50
// it stays within 1.5x; the daemon allocates little between collections, so the extra collections
// cost little CPU.
const daemonGCPercent = 50

// defaultMemProfileRate is Go's runtime.MemProfileRate unless something set another.
const defaultMemProfileRate = 512 * 1024

// tuneDaemonGC sets the daemon's GC percentage (daemonGCPercent) unless $GOGC chose one, and turns
// off the runtime's heap profiling sampler (unless a debug build chose a rate, cmd/corral's
// pprof_debug.go): nothing reads the daemon's heap profile, and each sample (one per ~512 KB
// allocated) walks the allocating goroutine's stack through the binary's function tables, which
// with 64 KiB fault-around mapped megabytes of pages that the page trim (pagetrim) had dropped.
func tuneDaemonGC(log *slog.Logger) {
	if runtime.MemProfileRate == defaultMemProfileRate {
		runtime.MemProfileRate = 0
	}
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(daemonGCPercent)
	log.Debug("GC percent", "gogc", daemonGCPercent)
}

// trimStartupPages drops the binary's pages that only start-up touched from the daemon's RSS
// (internal/pagetrim): the command tree, package initialisers and whatever else ran before the
// daemon was ready. What it runs from now on faults back in. A collection first: start-up's
// garbage goes (and its free pages go back to the system), and the pages the collector itself
// touches (the type data of start-up's objects) are trimmed after it, not before.
func trimStartupPages(log *slog.Logger) {
	debug.FreeOSMemory()
	st, err := pagetrim.Trim()
	if err != nil {
		log.Warn("trim start-up pages", "err", err)
		return
	}
	log.Debug("trimmed start-up pages", "mappings", st.Mappings, "bytes", st.Bytes)
}
