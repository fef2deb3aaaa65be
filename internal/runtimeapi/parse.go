package runtimeapi

import (
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"time"
)

// maxErrorTypeLen bounds what an error type may add to a log line.
const maxErrorTypeLen = 128

// errorTypeOf returns the "errorType" member of a runtime's error body, or ""
// when the body is not a JSON object with a string errorType. The body comes
// from user code, so the result is sanitised for log lines.
func errorTypeOf(body []byte) string {
	var v struct {
		ErrorType json.RawMessage `json:"errorType"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.ErrorType) == 0 || v.ErrorType[0] != '"' {
		return ""
	}
	var t string
	if json.Unmarshal(v.ErrorType, &t) != nil {
		return ""
	}
	return sanitizeErrorType(t)
}

// sanitizeErrorType keeps an error type to one short line of printable
// characters: it ends up in REPORT lines, where a newline could forge a log
// record.
func sanitizeErrorType(t string) string {
	clean := true
	for i := 0; i < len(t); i++ {
		if c := t[i]; c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if clean && len(t) <= maxErrorTypeLen {
		return t
	}
	b := make([]byte, 0, min(len(t), maxErrorTypeLen))
	for i := 0; i < len(t) && len(b) < maxErrorTypeLen; i++ {
		c := t[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	// Do not leave half a UTF-8 sequence at the cut.
	return strings.ToValidUTF8(string(b), "")
}

// newTraceID returns an unsampled X-Ray trace header value:
// Root=1-<8 hex epoch seconds>-<24 hex>;Parent=<16 hex>;Sampled=0.
func newTraceID(now time.Time) string {
	const prefix, parent, sampled = "Root=1-", ";Parent=", ";Sampled=0"
	var raw [4 + 12 + 8]byte
	sec := uint32(now.Unix())
	raw[0], raw[1], raw[2], raw[3] = byte(sec>>24), byte(sec>>16), byte(sec>>8), byte(sec)
	a, b, c := rand.Uint64(), rand.Uint64(), rand.Uint64()
	for i := range 8 {
		raw[4+i] = byte(a >> (8 * i))
		raw[16+i] = byte(c >> (8 * i))
	}
	for i := range 4 {
		raw[12+i] = byte(b >> (8 * i))
	}
	var out [len(prefix) + 8 + 1 + 24 + len(parent) + 16 + len(sampled)]byte
	n := copy(out[:], prefix)
	n += hex.Encode(out[n:], raw[:4])
	out[n] = '-'
	n++
	n += hex.Encode(out[n:], raw[4:16])
	n += copy(out[n:], parent)
	n += hex.Encode(out[n:], raw[16:24])
	copy(out[n:], sampled)
	return string(out[:])
}
