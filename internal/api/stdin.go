package api

import (
	"context"
	"errors"
	"net/http"
)

// MethodSend writes a line to an instance's standard input (PM2's send and attach): POST
// /v1/send with a SendRequest answers {}.
const MethodSend = "send"

// SendRequest is the body of POST /v1/send.
type SendRequest struct {
	Target string `json:"target"` // one instance: its pm_id (or a name with one instance)
	Line   string `json:"line"`   // written followed by a newline
}

// StdinWriter is implemented by a Backend that can write to its instances' standard input.
type StdinWriter interface {
	SendLine(ctx context.Context, target, line string) error
}

func (h *handler) send(w http.ResponseWriter, r *http.Request) error {
	var req SendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	sw, ok := h.b.(StdinWriter)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: "this daemon cannot write to standard input", Code: CodeNotFound})
		return nil
	}
	if err := sw.SendLine(r.Context(), req.Target, req.Line); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// SendLine implements StdinWriter over the control socket.
func (c *Client) SendLine(ctx context.Context, target, line string) error {
	if target == "" {
		return errors.New("send: no process given")
	}
	var resp struct{}
	return c.call(ctx, MethodSend, SendRequest{Target: target, Line: line}, &resp)
}
