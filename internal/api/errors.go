package api

import (
	"errors"
	"fmt"
)

// ErrUnknownTarget is wrapped by every error that reports a target (id, name,
// namespace) that matches no process. The CLI tests for it with errors.Is.
var ErrUnknownTarget = errors.New("process or namespace not found")

// ErrForbidden is returned by the server (and surfaced by the Client) when the
// peer of the control socket is neither the daemon's user nor root.
var ErrForbidden = errors.New("permission denied: the corral daemon belongs to another user")

// Error codes carried in the "code" field of an error response.
const (
	CodeUnknownTarget = "unknown_target"
	CodeBadRequest    = "bad_request"
	CodeForbidden     = "forbidden"
	CodeInternal      = "internal"
	CodeNotFound      = "not_found"
)

// ErrorBody is the JSON body of an error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// RemoteError is an error reported by the daemon, as seen by the Client. Its
// message is the daemon's error text; errors.Is matches ErrUnknownTarget and
// ErrForbidden according to Code.
type RemoteError struct {
	Code    string
	Message string
}

// Error returns the daemon's message.
func (e *RemoteError) Error() string { return e.Message }

// Is reports whether the remote error corresponds to target.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnknownTarget:
		return e.Code == CodeUnknownTarget
	case ErrForbidden:
		return e.Code == CodeForbidden
	}
	return false
}

// UnknownTargetError returns an error wrapping ErrUnknownTarget that names target.
func UnknownTargetError(target string) error {
	return fmt.Errorf("%w: %s", ErrUnknownTarget, target)
}

// codeOf classifies an error returned by a Backend.
func codeOf(err error) string {
	switch {
	case errors.Is(err, ErrUnknownTarget):
		return CodeUnknownTarget
	case errors.Is(err, ErrForbidden):
		return CodeForbidden
	}
	return CodeInternal
}
