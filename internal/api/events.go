package api

import (
	"context"
	"net/http"

	"github.com/corralhq/corral/internal/events"
)

// MethodEvents is the event feed: POST /v1/events with an EventsRequest answers an NDJSON
// stream of events.Event, the recorded ones first, then (with Follow) every new one.
const MethodEvents = "events"

// EventsRequest selects part of the event feed.
type EventsRequest struct {
	// Since skips the events with a sequence number up to it (0: from the oldest kept).
	Since uint64 `json:"since,omitempty"`
	// Backlog is how many recorded events to send first, newest kept (0: none, -1: all kept).
	Backlog int `json:"backlog"`
	// Follow keeps the stream open for new events until the client goes away.
	Follow bool `json:"follow,omitempty"`
	// Apps keeps only the events of these app names (empty: every event).
	Apps []string `json:"apps,omitempty"`
}

// EventSource is implemented by a Backend that keeps an event feed (the daemon does). It is
// separate from Backend so that backends without a feed (test fakes) need not implement it.
type EventSource interface {
	// Events returns the recorded events req selects, then, with req.Follow, the new ones
	// until ctx is done. The channel is closed at the end (or when the reader falls too far
	// behind: the feed never waits for a slow reader).
	Events(ctx context.Context, req EventsRequest) (<-chan events.Event, error)
}

// FilterEvents returns whether e passes req's app filter.
func FilterEvents(req EventsRequest, e events.Event) bool {
	if len(req.Apps) == 0 {
		return true
	}
	for _, a := range req.Apps {
		if e.App == a {
			return true
		}
	}
	return false
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) error {
	var req EventsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	src, ok := h.b.(EventSource)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: "this daemon keeps no event feed", Code: CodeNotFound})
		return nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch, err := src.Events(ctx, req)
	if err != nil {
		return err
	}
	writeStream(ctx, w, ch, nil)
	return nil
}

// Events implements EventSource over the control socket. The returned channel is closed when ctx
// is done, the daemon ends the stream, or the connection breaks.
func (c *Client) Events(ctx context.Context, req EventsRequest) (<-chan events.Event, error) {
	body, err := c.post(ctx, MethodEvents, req)
	if err != nil {
		return nil, err
	}
	return readStream[events.Event](ctx, body, 64, 16<<20), nil
}
