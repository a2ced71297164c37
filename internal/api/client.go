package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/appspec"
)

// Client talks to a daemon over its control socket. It implements Backend,
// so the CLI is written against the interface.
type Client struct {
	socket string
	hc     *http.Client
	pong   pongCache // the last Ping's answer (fastlist.go)
}

var _ Backend = (*Client)(nil)

// NewClient returns a Client for the Unix socket at path. No connection is
// made until the first call. A connection whose listener runs as another user
// (neither the caller's uid nor root) is dropped before anything is sent, with
// an *UntrustedPeerError.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialTrusted(ctx, socket)
		},
		MaxIdleConns:      4,
		DisableKeepAlives: false,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket returns the path of the control socket.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// post sends req to /v1/<method> and returns the response body, which the
// caller must close. A non-2xx response is turned into a *RemoteError.
func (c *Client) post(ctx context.Context, method string, req any) (io.ReadCloser, error) {
	resp, err := c.do(ctx, method, req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// do is post returning the whole response (its body to be closed by the caller).
func (c *Client) do(ctx context.Context, method string, req any) (*http.Response, error) {
	if req == nil {
		req = struct{}{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", method, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://corral/v1/"+method, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("talk to daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == "" {
		return nil, &RemoteError{Code: CodeInternal, Message: fmt.Sprintf("%s: daemon answered HTTP %d: %s", method, resp.StatusCode, strings.TrimSpace(string(data)))}
	}
	return nil, &RemoteError{Code: eb.Code, Message: eb.Error, Field: eb.Field}
}

// call posts req and decodes the JSON answer into resp (if non-nil).
func (c *Client) call(ctx context.Context, method string, req, resp any) error {
	body, err := c.post(ctx, method, req)
	if err != nil {
		return err
	}
	defer body.Close()
	if resp == nil {
		_, _ = io.Copy(io.Discard, body)
		return nil
	}
	if err := json.NewDecoder(body).Decode(resp); err != nil {
		return fmt.Errorf("decode %s response: %w", method, err)
	}
	return nil
}

func (c *Client) procs(ctx context.Context, method string, req any) ([]Proc, error) {
	var resp ProcsResponse
	if err := c.call(ctx, method, req, &resp); err != nil {
		return nil, err
	}
	return resp.Procs, nil
}

// Ping checks that the daemon answers and returns its process id.
func (c *Client) Ping(ctx context.Context) (PingResponse, error) {
	var resp PingResponse
	err := c.call(ctx, MethodPing, nil, &resp)
	if err == nil {
		c.pong.p.Store(&resp)
	}
	return resp, err
}

// Start implements Backend.
func (c *Client) Start(ctx context.Context, apps []appspec.App, opts StartOptions) ([]Proc, error) {
	return c.procs(ctx, MethodStart, StartRequest{Apps: apps, Force: opts.Force, Lean: opts.Lean})
}

// Stop implements Backend.
func (c *Client) Stop(ctx context.Context, targets []string) ([]Proc, error) {
	return c.procs(ctx, MethodStop, TargetsRequest{Targets: targets})
}

// Restart implements Backend.
func (c *Client) Restart(ctx context.Context, targets []string, opts RestartOptions) ([]Proc, []string, error) {
	return c.restart(ctx, MethodRestart, targets, opts)
}

// Reload implements Backend.
func (c *Client) Reload(ctx context.Context, targets []string, opts RestartOptions) ([]Proc, []string, error) {
	return c.restart(ctx, MethodReload, targets, opts)
}

func (c *Client) restart(ctx context.Context, method string, targets []string, opts RestartOptions) ([]Proc, []string, error) {
	var resp ProcsResponse
	req := RestartRequest{Targets: targets, UpdateEnv: opts.UpdateEnv, Env: opts.Env, AppEnv: opts.AppEnv, Overrides: opts.Overrides}
	if err := c.call(ctx, method, req, &resp); err != nil {
		return nil, nil, err
	}
	return resp.Procs, resp.Notes, nil
}

// Delete implements Backend.
func (c *Client) Delete(ctx context.Context, targets []string) ([]Proc, error) {
	return c.procs(ctx, MethodDelete, TargetsRequest{Targets: targets})
}

// Scale implements Backend.
func (c *Client) Scale(ctx context.Context, name string, spec string) ([]Proc, error) {
	return c.procs(ctx, MethodScale, ScaleRequest{Name: name, Spec: spec})
}

// List implements Backend.
func (c *Client) List(ctx context.Context) ([]Proc, error) {
	return c.procs(ctx, MethodList, nil)
}

// Signal implements Backend.
func (c *Client) Signal(ctx context.Context, sig string, targets []string) ([]Proc, error) {
	return c.procs(ctx, MethodSignal, SignalRequest{Signal: sig, Targets: targets})
}

// Reset implements Backend.
func (c *Client) Reset(ctx context.Context, targets []string) ([]Proc, error) {
	return c.procs(ctx, MethodReset, TargetsRequest{Targets: targets})
}

// Flush implements Backend.
func (c *Client) Flush(ctx context.Context, targets []string) error {
	return c.call(ctx, MethodFlush, TargetsRequest{Targets: targets}, nil)
}

// ReloadLogs implements Backend.
func (c *Client) ReloadLogs(ctx context.Context) error {
	return c.call(ctx, MethodReloadLogs, nil, nil)
}

// Apps implements Backend.
func (c *Client) Apps(ctx context.Context) ([]appspec.App, error) {
	var resp AppsResponse
	if err := c.call(ctx, MethodApps, nil, &resp); err != nil {
		return nil, err
	}
	return resp.Apps, nil
}

// Shutdown implements Backend.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, MethodShutdown, nil, nil)
}

// Logs implements Backend. The returned channel is closed when ctx is done,
// the daemon ends the stream, or the connection breaks.
func (c *Client) Logs(ctx context.Context, targets []string) (<-chan LogLine, error) {
	body, err := c.post(ctx, MethodLogs, TargetsRequest{Targets: targets})
	if err != nil {
		return nil, err
	}
	return readStream[LogLine](ctx, body, 64, 16<<20), nil
}

// IsUnreachable reports whether err means that no daemon listens on the
// socket (the socket file is missing or nobody accepts on it).
func IsUnreachable(err error) bool {
	var re *RemoteError
	if errors.As(err, &re) {
		return false
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	// A dial that timed out found a listener that did not take the connection in time (its
	// backlog full, or a machine too loaded to run the connect): someone is there.
	return !op.Timeout() && !errors.Is(err, context.DeadlineExceeded)
}
