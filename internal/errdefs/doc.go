// Package errdefs holds Kiln's small set of error classes and the API error
// value that carries the AWS error code a failure must be reported as.
//
// It owns: the classes (not found, conflict, invalid, too large, throttled,
// unauthenticated, precondition, unavailable) and constructors for the
// AWS-coded errors that parts return.
//
// It must never: know about HTTP. Turning an error into an AWS wire shape
// happens in exactly one place, package awsapi.
package errdefs
