package cli

import (
	"bytes"
	"flag"
	"net/http"
	"strings"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ so plain `go test` runs them.

// FuzzParseLogEvents feeds the logs route's reply parser arbitrary bytes.
// Whatever parses must print one line per event (ending in exactly one
// newline), and printing the same window again must add
// nothing (the --follow dedupe).
func FuzzParseLogEvents(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := parseLogEvents(b)
		if err != nil {
			return
		}
		var out bytes.Buffer
		p := &logPrinter{w: &out}
		p.print(events)
		var want strings.Builder
		for _, ev := range events {
			want.WriteString(strings.TrimSuffix(strings.TrimSuffix(ev.Message, "\n"), "\r") + "\n")
		}
		if out.String() != want.String() {
			t.Fatalf("printed %q, want %q", out.String(), want.String())
		}
		out.Reset()
		p.print(events)
		if out.Len() != 0 {
			t.Fatalf("the same window printed again: %q", out.String())
		}
	})
}

// FuzzDecodeAPIError feeds the error-reply decoder arbitrary headers and
// bodies; it must always name the error.
func FuzzDecodeAPIError(f *testing.F) {
	f.Fuzz(func(t *testing.T, status int, errType string, body []byte) {
		if status < 100 || status > 999 {
			status = 400
		}
		h := http.Header{}
		h.Set("X-Amzn-ErrorType", strings.ToValidUTF8(strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return -1
			}
			return r
		}, errType), ""))
		e := decodeAPIError(status, h, body)
		if e.ErrorCode() == "" && strings.TrimSpace(sanitizeErrorCode(h.Get("X-Amzn-ErrorType"))) == "" {
			t.Fatalf("no code for status %d body %q", status, body)
		}
		_ = describeError("Op", e)
	})
}

// FuzzParseAccountCreated checks that whatever the accounts route returns,
// the printed profile block stays one section with exactly its three keys:
// a reply cannot inject other profiles into a credentials file.
func FuzzParseAccountCreated(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAccountCreated(b)
		if err != nil {
			return
		}
		var out bytes.Buffer
		writeProfile(&out, "", a)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 5 {
			t.Fatalf("profile block has %d lines:\n%s", len(lines), out.String())
		}
		sections := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "[") {
				sections++
			}
		}
		if sections != 1 {
			t.Fatalf("%d sections:\n%s", sections, out.String())
		}
	})
}

// FuzzParseEnvAssignment: a parsed --env value splits at the first "=".
func FuzzParseEnvAssignment(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		k, v, err := parseEnvAssignment(s)
		if err != nil {
			return
		}
		if k == "" || k+"="+v != s || strings.Contains(k, "=") {
			t.Fatalf("parseEnvAssignment(%q) = %q, %q", s, k, v)
		}
	})
}

// FuzzParseInterspersed parses NUL-separated argument lists; every
// positional argument must come from the input, in order.
func FuzzParseInterspersed(f *testing.F) {
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(nilWriter{})
		fs.String("qualifier", "", "")
		fs.Bool("tail", false, "")
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return
		}
		i := 0
		for _, p := range pos {
			for i < len(args) && args[i] != p {
				i++
			}
			if i == len(args) {
				t.Fatalf("positional %q not in order in %q", p, args)
			}
			i++
		}
	})
}
