package api

import (
	"context"
	"net/http"
)

// MethodUnwatch turns file watching off for good for the apps the targets name, without
// restarting them (PM2's `stop --watch`): POST /v1/unwatch with a TargetsRequest answers a
// ProcsResponse.
const MethodUnwatch = "unwatch"

// Unwatcher is implemented by a Backend that can turn an app's watch off in place.
type Unwatcher interface {
	Unwatch(ctx context.Context, targets []string) ([]Proc, error)
}

func (h *handler) unwatch(w http.ResponseWriter, r *http.Request) error {
	var req TargetsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	u, ok := h.b.(Unwatcher)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: "this daemon cannot turn watching off in place", Code: CodeNotFound})
		return nil
	}
	procs, err := u.Unwatch(r.Context(), req.Targets)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ProcsResponse{Procs: procs})
	return nil
}

// Unwatch implements Unwatcher over the control socket.
func (c *Client) Unwatch(ctx context.Context, targets []string) ([]Proc, error) {
	var resp ProcsResponse
	if err := c.call(ctx, MethodUnwatch, TargetsRequest{Targets: targets}, &resp); err != nil {
		return nil, err
	}
	return resp.Procs, nil
}
