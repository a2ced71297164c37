package api

import (
	"context"
	"net/http"
)

// MethodHistory returns recent CPU and memory samples: POST /v1/history with a HistoryRequest
// answers a HistoryResponse.
const MethodHistory = "history"

// HistoryRequest selects the instances and the time range of a history query.
type HistoryRequest struct {
	// Targets as for every other method; empty means every instance.
	Targets []string `json:"targets,omitempty"`
	// Since keeps only the samples taken after it (Unix seconds; 0: every sample kept).
	Since int64 `json:"since,omitempty"`
}

// Sample is one CPU/memory measurement of an instance's process tree.
type Sample struct {
	Time   int64   `json:"t"`   // Unix seconds
	CPU    float64 `json:"cpu"` // percent of one core, to a tenth
	Memory uint64  `json:"mem"` // resident bytes, to a KiB
}

// ProcHistory is the recent samples of one instance, oldest first.
type ProcHistory struct {
	PMID    int      `json:"pm_id"`
	Name    string   `json:"name"`
	Samples []Sample `json:"samples"`
}

// HistoryResponse answers MethodHistory.
type HistoryResponse struct {
	Procs []ProcHistory `json:"procs"`
}

// HistorySource is implemented by a Backend that keeps recent CPU and memory samples per
// instance (the daemon keeps five minutes at its sampling interval).
type HistorySource interface {
	History(ctx context.Context, req HistoryRequest) ([]ProcHistory, error)
}

func (h *handler) history(w http.ResponseWriter, r *http.Request) error {
	var req HistoryRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	src, ok := h.b.(HistorySource)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: "this daemon keeps no history", Code: CodeNotFound})
		return nil
	}
	procs, err := src.History(r.Context(), req)
	if err != nil {
		return err
	}
	if procs == nil {
		procs = []ProcHistory{}
	}
	writeJSON(w, http.StatusOK, HistoryResponse{Procs: procs})
	return nil
}

// History implements HistorySource over the control socket.
func (c *Client) History(ctx context.Context, req HistoryRequest) ([]ProcHistory, error) {
	var resp HistoryResponse
	if err := c.call(ctx, MethodHistory, req, &resp); err != nil {
		return nil, err
	}
	return resp.Procs, nil
}
