package sigv4

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const upperHex = "0123456789ABCDEF"

// isUnreserved reports RFC 3986 unreserved characters, the only bytes SigV4
// leaves unescaped in the canonical URI and query.
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// appendEscaped percent-encodes every byte of s outside the unreserved set
// (keeping '/' when keepSlash), uppercase hex, as both aws-sdk-go-v2
// (httpbinding.EscapePath) and botocore (quote(safe='/~')) do.
func appendEscaped(dst []byte, s string, keepSlash bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (keepSlash && c == '/') {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
	}
	return dst
}

// rawPath is the request path exactly as it came over the wire. Clients sign
// the escaped path they send (Go's client writes URL.EscapedPath(), which is
// what the SDK's signer reads), so the wire bytes are the only faithful
// source; r.URL.EscapedPath() may re-escape a path Go considers odd.
func rawPath(r *http.Request) string {
	if u := r.RequestURI; u != "" && u[0] == '/' {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return u
	}
	// Requests built in-process (tests, SignRequest) and absolute-form
	// request targets have no usable RequestURI.
	if o := r.URL.Opaque; o != "" {
		if i := strings.IndexByte(o, '?'); i >= 0 {
			o = o[:i]
		}
		o = strings.TrimPrefix(o, "//")
		if i := strings.IndexByte(o, '/'); i >= 0 {
			return o[i:]
		}
		return ""
	}
	return r.URL.EscapedPath()
}

// appendCanonicalURI writes the canonical URI: the raw path escaped once
// more. "%3A" on the wire is "%253A" in the canonical request.
func appendCanonicalURI(dst []byte, path string) []byte {
	if path == "" {
		return append(dst, '/')
	}
	return appendEscaped(dst, path, true)
}

type queryPair struct{ k, v string } // both in canonical (encoded) form

// canonicalComponent decodes a raw query key or value (percent escapes, '+'
// as space, like url.ParseQuery) and re-encodes it the SigV4 way. ok is
// false for an invalid escape.
func canonicalComponent(s string) (string, bool) {
	plain := true
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s, true
	}
	dec := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dec = append(dec, ' ')
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			dec = append(dec, hi<<4|lo)
			i += 2
		default:
			dec = append(dec, c)
		}
	}
	return string(appendEscaped(make([]byte, 0, len(dec)*3), string(dec), false)), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendCanonicalQuery writes the canonical query string: every pair decoded
// and re-encoded, then sorted by encoded key and value (sorting after
// encoding, as the SDK and botocore both do). dropSignature leaves out
// X-Amz-Signature (presigned requests sign everything but it). ok is false
// when the query cannot be decoded; Go's url.ParseQuery would also refuse a
// ';' in a key.
func appendCanonicalQuery(dst []byte, raw string, dropSignature bool, scratch []queryPair) ([]byte, bool) {
	pairs := scratch[:0]
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		rk, rv, _ := strings.Cut(part, "=")
		if strings.IndexByte(rk, ';') >= 0 {
			return dst, false
		}
		k, ok := canonicalComponent(rk)
		if !ok {
			return dst, false
		}
		if dropSignature && k == "X-Amz-Signature" {
			continue
		}
		v, ok := canonicalComponent(rv)
		if !ok {
			return dst, false
		}
		pairs = append(pairs, queryPair{k, v})
	}
	if len(pairs) > 1 {
		slices.SortFunc(pairs, func(a, b queryPair) int {
			if c := strings.Compare(a.k, b.k); c != 0 {
				return c
			}
			return strings.Compare(a.v, b.v)
		})
	}
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p.k...)
		dst = append(dst, '=')
		dst = append(dst, p.v...)
	}
	return dst, true
}

// appendCanonicalHeaders writes "name:value\n" for exactly the headers in
// signed, in the order listed (the list itself is signed, so a client that
// sorted differently simply fails to match).
func appendCanonicalHeaders(dst []byte, r *http.Request, signed string) []byte {
	for rest := signed; ; {
		name, tail, more := strings.Cut(rest, ";")
		dst = append(dst, name...)
		dst = append(dst, ':')
		dst = appendHeaderValue(dst, r, name)
		dst = append(dst, '\n')
		if !more {
			return dst
		}
		rest = tail
	}
}

func appendHeaderValue(dst []byte, r *http.Request, name string) []byte {
	switch name {
	case "host":
		h := r.Host
		if h == "" {
			h = r.URL.Host
		}
		return appendCleanValue(dst, h)
	}
	vals := lookupHeader(r.Header, name)
	if len(vals) == 0 {
		// Go's server moves these out of the header map.
		switch name {
		case "content-length":
			if r.ContentLength > 0 {
				return strconv.AppendInt(dst, r.ContentLength, 10)
			}
		case "transfer-encoding":
			vals = r.TransferEncoding
		}
	}
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendCleanValue(dst, v)
	}
	return dst
}

// lookupHeader finds a lowercase header name in h without allocating for
// names of ordinary length.
func lookupHeader(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) > len(buf) {
		return h[http.CanonicalHeaderKey(name)]
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
		upper = c == '-'
	}
	return h[string(buf[:len(name)])]
}

// appendCleanValue trims a header value (all Unicode white space, as the
// SDK's strings.TrimSpace and botocore's str.split do) and collapses inner
// runs of spaces, the aws-sdk-go-v2 rule; botocore agrees for values
// without inner tabs.
func appendCleanValue(dst []byte, v string) []byte {
	v = strings.TrimSpace(v)
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		dst = append(dst, c)
	}
	return dst
}
