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
	// Field names the request field at fault ("apps[0].script", "targets", "spec") when Code is
	// bad_request.
	Field string `json:"field,omitempty"`
}

// FieldError is a client mistake in one field of a request: the server answers it with HTTP 400,
// code bad_request, naming Field. Its message is Err's.
type FieldError struct {
	Field string // "apps[0].script", "targets", "spec", ...
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// BadField returns err as the client's mistake in field (see FieldError).
func BadField(field string, err error) error { return &FieldError{Field: field, Err: err} }

// RemoteError is an error reported by the daemon, as seen by the Client. Its
// message is the daemon's error text; errors.Is matches ErrUnknownTarget and
// ErrForbidden according to Code.
type RemoteError struct {
	Code    string
	Message string
	Field   string // the request field at fault, for bad_request
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
