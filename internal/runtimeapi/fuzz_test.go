package runtimeapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seeds live in testdata/fuzz/<FuzzName>; plain `go test` runs them.

func FuzzParseInvocationPath(f *testing.F) {
	f.Fuzz(func(t *testing.T, path string) {
		id, isError, ok := parseInvocationPath(path)
		if !ok {
			if id != "" || isError {
				t.Fatalf("rejected path returned %q %v", id, isError)
			}
			return
		}
		if id == "" || strings.Contains(id, "/") {
			t.Fatalf("bad id %q from %q", id, path)
		}
		kind := "/response"
		if isError {
			kind = "/error"
		}
		if pathInvocation+id+kind != path {
			t.Fatalf("%q does not rebuild %q", id, path)
		}
	})
}

func checkErrorType(t *testing.T, got string) {
	t.Helper()
	if len(got) > maxErrorTypeLen {
		t.Fatalf("error type longer than %d: %d", maxErrorTypeLen, len(got))
	}
	for i := 0; i < len(got); i++ {
		if got[i] < 0x20 || got[i] == 0x7f {
			t.Fatalf("control byte in %q", got)
		}
	}
}

func FuzzErrorTypeOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		got := errorTypeOf(body)
		checkErrorType(t, got)
		var v struct {
			ErrorType any `json:"errorType"`
		}
		if json.Unmarshal(body, &v) != nil {
			if got != "" {
				t.Fatalf("invalid JSON gave %q", got)
			}
			return
		}
		s, isString := v.ErrorType.(string)
		if !isString {
			if got != "" {
				t.Fatalf("non-string errorType gave %q", got)
			}
			return
		}
		if got != sanitizeErrorType(s) {
			t.Fatalf("errorTypeOf = %q, want %q", got, sanitizeErrorType(s))
		}
	})
}

func FuzzSanitizeErrorType(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		got := sanitizeErrorType(s)
		checkErrorType(t, got)
		clean := len(s) <= maxErrorTypeLen && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
		if clean && got != s {
			t.Fatalf("clean %q changed to %q", s, got)
		}
		if !clean && !utf8.ValidString(got) {
			t.Fatalf("rewritten type %q is not valid UTF-8", got)
		}
	})
}

func FuzzTrailerErrorBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, errType, b64 string) {
		if !json.Valid(trailerErrorBody(errType, b64)) {
			t.Fatalf("trailerErrorBody(%q, %q) is not JSON", errType, b64)
		}
	})
}
