package api

import (
	"context"
	"net/http"
	"time"
)

// MethodWatch is the live process list: POST /v1/watch with a WatchRequest answers an NDJSON
// stream of WatchFrame, one at once, then one per sample tick and one soon after each change
// (a status change, an exit, a restart), until the client goes away. It is the one subscription
// the dashboards (`corral monit`, the web view) read the table, CPU and memory from.
const MethodWatch = "watch"

// WatchRequest tunes the watch stream.
type WatchRequest struct {
	// IntervalMS is the longest gap between two frames in milliseconds (0: the daemon's sample
	// interval, one second; at least 100).
	IntervalMS int `json:"interval_ms,omitempty"`
	// Env keeps each process's environment in the frames (the dashboards do not show it; without
	// Env, frames carry none and stay small).
	Env bool `json:"env,omitempty"`
}

// WatchFrame is one snapshot of every instance.
type WatchFrame struct {
	Time  time.Time `json:"time"`
	Procs []Proc    `json:"procs"`
}

// WatchSource is implemented by a Backend that pushes list snapshots (the daemon does). A
// backend without it is watched by listing it at each interval (see the handler).
type WatchSource interface {
	// Watch sends a frame at once, then one per interval and soon after each change, until ctx
	// is done; then the channel is closed.
	Watch(ctx context.Context, req WatchRequest) (<-chan WatchFrame, error)
}

// WatchInterval returns req's interval, defaulted and clamped.
func WatchInterval(req WatchRequest) time.Duration {
	d := time.Duration(req.IntervalMS) * time.Millisecond
	if d <= 0 {
		return time.Second
	}
	return max(d, 100*time.Millisecond)
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) error {
	var req WatchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var ch <-chan WatchFrame
	if src, ok := h.b.(WatchSource); ok {
		var err error
		if ch, err = src.Watch(ctx, req); err != nil {
			return err
		}
	} else {
		if _, err := h.b.List(ctx); err != nil {
			return err
		}
		ch = pollList(ctx, h.b, WatchInterval(req))
	}
	writeStream(ctx, w, ch, func(f *WatchFrame) {
		if f.Procs == nil {
			f.Procs = []Proc{}
		}
		if !req.Env {
			for i := range f.Procs {
				f.Procs[i].Env = nil
			}
		}
	})
	return nil
}

// pollList lists b every interval (a frame at once) until ctx is done or a List fails.
func pollList(ctx context.Context, b Backend, interval time.Duration) <-chan WatchFrame {
	ch := make(chan WatchFrame, 1)
	go func() {
		defer close(ch)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			procs, err := b.List(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- WatchFrame{Time: time.Now(), Procs: procs}:
			case <-ctx.Done():
				return
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// Watch implements WatchSource over the control socket. The channel is closed when ctx is done,
// the daemon ends the stream, or the connection breaks (the daemon went away).
func (c *Client) Watch(ctx context.Context, req WatchRequest) (<-chan WatchFrame, error) {
	body, err := c.post(ctx, MethodWatch, req)
	if err != nil {
		return nil, err
	}
	return readStream[WatchFrame](ctx, body, 4, 64<<20), nil
}
