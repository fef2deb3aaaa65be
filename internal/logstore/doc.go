// Package logstore keeps the recent log lines of every function (what
// CloudWatch Logs is for Lambda) so `kiln logs NAME` can show them.
//
// It owns: a bounded ring of lines per (account, function).
//
// It must never: block a writer for long or grow without bound; it is on the
// invoke path.
package logstore
