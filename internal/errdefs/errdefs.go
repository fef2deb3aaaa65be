package errdefs

import (
	"errors"
	"fmt"
)

// Error classes. Parts wrap or return these (usually through *APIError) and
// callers match them with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrInvalid         = errors.New("invalid parameter")
	ErrTooLarge        = errors.New("too large")
	ErrThrottled       = errors.New("throttled")
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrPrecondition    = errors.New("precondition failed")
	ErrUnavailable     = errors.New("unavailable")
)

// APIError is a failure that a caller of the Lambda API must see with a
// specific AWS error code and message. Class is one of the Err* values above
// (or nil for a service fault).
type APIError struct {
	Class   error
	Code    string // AWS error code, e.g. "ResourceNotFoundException"
	Message string // safe to show to the caller
	// Reason is set for TooManyRequestsException (ThrottleReason).
	Reason string
	// RetryAfterSeconds is set for throttles; 0 means unset.
	RetryAfterSeconds int
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// Unwrap lets errors.Is match the class.
func (e *APIError) Unwrap() error { return e.Class }

func newf(class error, code, format string, args ...any) *APIError {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &APIError{Class: class, Code: code, Message: msg}
}

// ResourceNotFound is AWS's 404 ResourceNotFoundException.
func ResourceNotFound(format string, args ...any) *APIError {
	return newf(ErrNotFound, "ResourceNotFoundException", format, args...)
}

// ResourceConflict is AWS's 409 ResourceConflictException.
func ResourceConflict(format string, args ...any) *APIError {
	return newf(ErrConflict, "ResourceConflictException", format, args...)
}

// InvalidParameter is AWS's 400 InvalidParameterValueException.
func InvalidParameter(format string, args ...any) *APIError {
	return newf(ErrInvalid, "InvalidParameterValueException", format, args...)
}

// Validation is AWS's 400 ValidationException (constraint violations that the
// service model itself describes, e.g. a name pattern).
func Validation(format string, args ...any) *APIError {
	return newf(ErrInvalid, "ValidationException", format, args...)
}

// InvalidRequestContent is AWS's 400 InvalidRequestContentException.
func InvalidRequestContent(format string, args ...any) *APIError {
	return newf(ErrInvalid, "InvalidRequestContentException", format, args...)
}

// InvalidZipFile is AWS's 502 InvalidZipFileException.
func InvalidZipFile(format string, args ...any) *APIError {
	return newf(ErrInvalid, "InvalidZipFileException", format, args...)
}

// PreconditionFailed is AWS's 412 PreconditionFailedException (RevisionId mismatch).
func PreconditionFailed(format string, args ...any) *APIError {
	return newf(ErrPrecondition, "PreconditionFailedException", format, args...)
}

// RequestTooLarge is the 413 real Lambda sends for an oversized invoke
// payload. Lambda puts RequestEntityTooLargeException on the wire even though
// its model names the error RequestTooLargeException.
func RequestTooLarge(format string, args ...any) *APIError {
	return newf(ErrTooLarge, "RequestEntityTooLargeException", format, args...)
}

// Throttled is AWS's 429 TooManyRequestsException with a ThrottleReason.
func Throttled(reason string, retryAfter int, format string, args ...any) *APIError {
	e := newf(ErrThrottled, "TooManyRequestsException", format, args...)
	e.Reason = reason
	e.RetryAfterSeconds = retryAfter
	return e
}

// UnrecognizedClient is the 403 for an unknown access key.
func UnrecognizedClient() *APIError {
	return newf(ErrUnauthenticated, "UnrecognizedClientException", "The security token included in the request is invalid.")
}

// InvalidSignature is the 403 for a bad or expired signature.
func InvalidSignature(format string, args ...any) *APIError {
	return newf(ErrUnauthenticated, "InvalidSignatureException", format, args...)
}

// MissingAuthenticationToken is the 403 for a request without SigV4 auth.
func MissingAuthenticationToken() *APIError {
	return newf(ErrUnauthenticated, "MissingAuthenticationTokenException", "Missing Authentication Token")
}

// IncompleteSignature is the 403 for a malformed Authorization header.
func IncompleteSignature(format string, args ...any) *APIError {
	return newf(ErrUnauthenticated, "IncompleteSignatureException", format, args...)
}

// AccessDenied is the 403 for an authenticated caller that may not do this.
func AccessDenied(format string, args ...any) *APIError {
	return newf(ErrUnauthenticated, "AccessDeniedException", format, args...)
}

// ServiceUnavailable is a 500 ServiceException with a message safe to show.
func ServiceUnavailable(format string, args ...any) *APIError {
	return newf(ErrUnavailable, "ServiceException", format, args...)
}

// UnsupportedMediaType is AWS's 415.
func UnsupportedMediaType(format string, args ...any) *APIError {
	return newf(ErrInvalid, "UnsupportedMediaTypeException", format, args...)
}
