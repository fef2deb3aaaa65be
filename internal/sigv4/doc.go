// Package sigv4 authenticates incoming Lambda API requests signed with AWS
// Signature Version 4, exactly as aws-sdk-go-v2 and botocore sign them, and
// signs outgoing requests for Kiln's own CLI and tests.
//
// It owns: parsing the Authorization header (and presigned query-string
// auth), the ±5 minute clock window, credential-scope checks, rebuilding the
// canonical request from the raw wire (raw path, raw query, the listed
// headers, the body hash), and a small bounded cache of derived signing keys
// held by each Verifier.
//
// It must never: trust a decoded path or query in place of the raw wire, read
// the request body itself (the caller passes the complete body), compare
// signatures in variable time, keep process-wide mutable state, or echo more
// of the caller's input in an error than a short, sanitised excerpt.
package sigv4
