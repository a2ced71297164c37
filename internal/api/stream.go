package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// The streaming methods (logs, events, watch) answer newline-delimited JSON: one value a line,
// flushed as soon as nothing more is waiting, until the backend's channel closes or the client
// goes away.

// writeStream answers with the values ch delivers, each passed to prepare first when it is not
// nil. A client that goes away ends it quietly: there is nobody left to tell.
func writeStream[T any](ctx context.Context, w http.ResponseWriter, ch <-chan T, prepare func(*T)) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-ch:
			if !ok {
				return
			}
			if prepare != nil {
				prepare(&v)
			}
			if enc.Encode(v) != nil {
				return
			}
			if len(ch) == 0 && rc.Flush() != nil {
				return
			}
		}
	}
}

// readStream decodes an NDJSON body into a channel with room for buffer values, closed when ctx
// is done, the body ends or the connection breaks. A line longer than maxLine bytes ends the
// stream; a line that does not decode is skipped.
func readStream[T any](ctx context.Context, body io.ReadCloser, buffer, maxLine int) <-chan T {
	ch := make(chan T, buffer)
	go func() {
		defer close(ch)
		defer body.Close()
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			var v T
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				continue
			}
			select {
			case ch <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
