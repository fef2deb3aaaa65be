package sigv4

import (
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

const (
	algorithm  = "AWS4-HMAC-SHA256"
	terminator = "aws4_request"
	amzDateFmt = "20060102T150405Z"

	// maxEcho caps how much of a caller's header we quote back in an error.
	maxEcho = 256
)

// authParams is what a request claims about its signature, from either the
// Authorization header or the presigned query string.
type authParams struct {
	credential    string // the whole Credential value: AKID/scope
	accessKeyID   string
	scope         string // date/region/service/aws4_request
	scopeDate     string
	scopeRegion   string
	scopeService  string
	signedHeaders string // as sent; it is part of the canonical request verbatim
	signature     string
}

// missingParts lists what a malformed Authorization header lacks, in the
// order and words AWS uses.
type missingParts struct {
	credential, signature, signedHeaders bool
}

// parseAuthorization splits an Authorization header into its parameters. It
// checks structure only; values are checked against the request later, in the
// order the Lambda contract gives.
func parseAuthorization(h string) (authParams, error) {
	var p authParams
	alg, rest, _ := strings.Cut(h, " ")
	if alg != algorithm {
		if strings.HasPrefix(alg, "AWS4-") && !strings.ContainsAny(alg, "=,") {
			return p, errdefs.IncompleteSignature("Unsupported AWS 'algorithm': '%s'.", sanitize(alg, 64))
		}
		return p, incomplete(missingParts{true, true, true}, h)
	}
	var have missingParts
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		part = strings.Trim(part, " \t")
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return p, errdefs.IncompleteSignature("'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.",
				sanitize(part, 64), sanitize(h, maxEcho))
		}
		var dst *string
		var seen *bool
		switch k {
		case "Credential":
			dst, seen = &p.credential, &have.credential
		case "SignedHeaders":
			dst, seen = &p.signedHeaders, &have.signedHeaders
		case "Signature":
			dst, seen = &p.signature, &have.signature
		default:
			// Unknown parameters carry no meaning for SigV4; AWS ignores them.
			continue
		}
		if *seen {
			return p, errdefs.IncompleteSignature("Authorization header contains a duplicate '%s' parameter.", k)
		}
		*seen, *dst = true, val
	}
	if !have.credential || !have.signature || !have.signedHeaders {
		return p, incomplete(missingParts{!have.credential, !have.signature, !have.signedHeaders}, h)
	}
	if err := p.splitCredential(); err != nil {
		return p, err
	}
	if err := checkSignedHeaders(p.signedHeaders, true); err != nil {
		return p, err
	}
	return p, nil
}

func incomplete(m missingParts, h string) *errdefs.APIError {
	var b strings.Builder
	if m.credential {
		b.WriteString("Authorization header requires 'Credential' parameter. ")
	}
	if m.signature {
		b.WriteString("Authorization header requires 'Signature' parameter. ")
	}
	if m.signedHeaders {
		b.WriteString("Authorization header requires 'SignedHeaders' parameter. ")
	}
	b.WriteString("Authorization=")
	b.WriteString(sanitize(h, maxEcho))
	return errdefs.IncompleteSignature("%s", b.String())
}

// splitCredential checks the Credential's shape: AKID/yyyymmdd/region/service/aws4_request.
func (p *authParams) splitCredential() error {
	c := p.credential
	parts := [5]string{}
	n := 0
	for n < 5 {
		i := strings.IndexByte(c, '/')
		if i < 0 {
			parts[n] = c
			n++
			c = ""
			break
		}
		if n == 4 {
			n = 6 // too many elements
			break
		}
		parts[n] = c[:i]
		c = c[i+1:]
		n++
	}
	if n != 5 || c != "" {
		return errdefs.IncompleteSignature("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'",
			sanitize(p.credential, 128))
	}
	if parts[0] == "" {
		return errdefs.IncompleteSignature("Credential must contain an access key id, got '%s'", sanitize(p.credential, 128))
	}
	if !isDigits(parts[1], 8) {
		return errdefs.IncompleteSignature("Date in Credential scope must be in YYYYMMDD format, got '%s'.", sanitize(parts[1], 32))
	}
	if parts[4] != terminator {
		return errdefs.IncompleteSignature("Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", sanitize(parts[4], 32))
	}
	p.accessKeyID = parts[0]
	p.scope = p.credential[len(parts[0])+1:]
	p.scopeDate, p.scopeRegion, p.scopeService = parts[1], parts[2], parts[3]
	return nil
}

// checkSignedHeaders validates the SignedHeaders list: lowercase header
// tokens separated by ';', including host (and x-amz-date for header auth).
func checkSignedHeaders(s string, needDate bool) error {
	if s == "" {
		return errdefs.IncompleteSignature("Authorization header requires 'SignedHeaders' parameter.")
	}
	var host, date bool
	for rest := s; ; {
		name, tail, more := strings.Cut(rest, ";")
		if name == "" {
			return errdefs.IncompleteSignature("SignedHeaders must be a ';'-separated list of header names, got '%s'.", sanitize(s, 128))
		}
		for i := 0; i < len(name); i++ {
			if !isHeaderNameByte(name[i]) {
				return errdefs.IncompleteSignature("SignedHeaders must list lowercase header names, got '%s'.", sanitize(s, 128))
			}
		}
		switch name {
		case "host":
			host = true
		case "x-amz-date":
			date = true
		}
		if !more {
			break
		}
		rest = tail
	}
	if !host {
		return errdefs.IncompleteSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	if needDate && !date {
		return errdefs.IncompleteSignature("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return nil
}

// isHeaderNameByte is an RFC 7230 token byte other than an uppercase letter.
func isHeaderNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseAmzDate parses the ISO 8601 basic format SigV4 uses
// (20060102T150405Z) without time.Parse's allocations.
func parseAmzDate(s string) (time.Time, bool) {
	if len(s) != 16 || s[8] != 'T' || s[15] != 'Z' || !isDigits(s[:8], 8) || !isDigits(s[9:15], 6) {
		return time.Time{}, false
	}
	num := func(a, b int) int {
		n := 0
		for i := a; i < b; i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	y, mo, d := num(0, 4), num(4, 6), num(6, 8)
	h, mi, se := num(9, 11), num(11, 13), num(13, 15)
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, 0, time.UTC)
	if t.Day() != d { // e.g. 20230231 normalises into March
		return time.Time{}, false
	}
	return t, true
}

// sanitize makes caller-supplied text safe to quote in an error: printable
// ASCII only, at most n bytes.
func sanitize(s string, n int) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			clean = false
			break
		}
	}
	if clean && len(s) <= n {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b.WriteByte(c)
	}
	if len(s) > n {
		b.WriteString("...")
	}
	return b.String()
}
