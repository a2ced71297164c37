package daemon

import (
	"context"
	"time"

	"github.com/corralhq/corral/internal/api"
)

// watchSettle is how long Watch waits after an event before it sends the frame showing it, so
// that a burst of events (a restart is an exit, a status change and a start) makes one frame.
const watchSettle = 50 * time.Millisecond

// Watch implements api.WatchSource: a list snapshot at once, then one per interval and one
// shortly after each event of the feed, until ctx is done. Its goroutine owns the ticker and the
// event subscription; it takes m.mu only through List.
func (m *Manager) Watch(ctx context.Context, req api.WatchRequest) (<-chan api.WatchFrame, error) {
	interval := api.WatchInterval(req)
	_, sub := m.ev.Subscribe(0, 0)
	out := make(chan api.WatchFrame, 1)
	go func() {
		defer close(out)
		defer sub.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		settle := time.NewTimer(time.Hour)
		settle.Stop()
		evc := sub.C()
		send := func() bool {
			procs, err := m.List(ctx)
			if err != nil {
				return false
			}
			select {
			case out <- api.WatchFrame{Time: time.Now(), Procs: procs}:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if !send() {
			return
		}
		pending := false
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-evc:
				if !ok { // dropped for lagging: carry on with the ticks alone
					evc = nil
					continue
				}
				if !pending {
					pending = true
					settle.Reset(watchSettle)
				}
				continue
			case <-settle.C:
				pending = false
			case <-tick.C:
			}
			if !send() {
				return
			}
			tick.Reset(interval)
		}
	}()
	return out, nil
}
