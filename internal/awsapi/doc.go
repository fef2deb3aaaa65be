// Package awsapi is the edge where Kiln speaks the AWS REST-JSON protocol:
// it turns errors into AWS error shapes (the one place that does), writes
// JSON replies with the headers AWS clients expect, and splits raw request
// paths into unescaped segments.
//
// It owns: the mapping from AWS error code to HTTP status and message-key
// casing, request IDs on replies, bounded body reads.
//
// It must never: decide business outcomes or echo internal error text to a
// caller; an error that is not an *errdefs.APIError becomes a generic
// ServiceException.
package awsapi
