package api

import (
	"context"
	"net/http"
)

// MethodWeb controls the web dashboard the daemon serves (internal/web): POST /v1/web with a
// WebRequest answers a WebResponse.
const MethodWeb = "web"

// WebRequest asks the daemon to serve its web dashboard, to report on it, or to stop it.
type WebRequest struct {
	// Action is "start" (serve, or report the dashboard already served), "status" or "stop".
	Action string `json:"action"`
	// Host and Port are where to listen ("start"; Host empty: 127.0.0.1, Port 0: the default).
	// A running dashboard on another address is moved there.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// PortSet says that Port was given (so --port 0, any free port, differs from the default).
	PortSet bool `json:"port_set,omitempty"`
	// AllowRemote permits a Host that is not a loopback address.
	AllowRemote bool `json:"allow_remote,omitempty"`
	// NewToken replaces the access token (every open page must then use the new URL).
	NewToken bool `json:"new_token,omitempty"`
}

// WebResponse describes the dashboard.
type WebResponse struct {
	Running bool   `json:"running"`
	URL     string `json:"url,omitempty"`  // the address with the access token, to open once
	Addr    string `json:"addr,omitempty"` // host:port it listens on
	// Persisted says that the setting is saved in the corral home: the next daemon serves the
	// dashboard again, on the same address and with the same token.
	Persisted bool `json:"persisted,omitempty"`
	// Warnings are remarks for the user (a non-loopback address).
	Warnings []string `json:"warnings,omitempty"`
}

// WebSource is implemented by a Backend that can serve the web dashboard (the daemon does).
type WebSource interface {
	Web(ctx context.Context, req WebRequest) (WebResponse, error)
}

func (h *handler) web(w http.ResponseWriter, r *http.Request) error {
	var req WebRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	src, ok := h.b.(WebSource)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, ErrorBody{Error: "this daemon has no web dashboard", Code: CodeNotFound})
		return nil
	}
	resp, err := src.Web(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// Web implements WebSource over the control socket.
func (c *Client) Web(ctx context.Context, req WebRequest) (WebResponse, error) {
	var resp WebResponse
	err := c.call(ctx, MethodWeb, req, &resp)
	return resp, err
}
