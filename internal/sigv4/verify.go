package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

const (
	// maxSkew is how far X-Amz-Date may be from the server clock, as AWS allows.
	maxSkew = 5 * time.Minute
	// maxPresignExpires is the longest X-Amz-Expires AWS accepts (one week).
	maxPresignExpires = 7 * 24 * 60 * 60

	unsignedPayload = "UNSIGNED-PAYLOAD"

	msgMismatch = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// KeyLookup resolves an access key id. Return an error matching
// errdefs.ErrNotFound (errors.Is) for an unknown key.
type KeyLookup interface {
	LookupKey(ctx context.Context, accessKeyID string) (secretKey, accountID string, err error)
}

// Identity is the authenticated caller of a verified request.
type Identity struct {
	AccountID, AccessKeyID string
}

// Verifier checks SigV4 signatures for one region and service. It is safe for
// concurrent use; its only state is a bounded cache of derived signing keys
// and reusable scratch buffers.
type Verifier struct {
	region, service string
	keys            KeyLookup
	now             func() time.Time

	cache keyCache
	bufs  sync.Pool // *scratch
}

// scratch is per-call working memory, pooled so a verify does not allocate.
type scratch struct {
	creq  []byte
	sts   []byte
	mac   []byte
	pairs [16]queryPair
}

// NewVerifier returns a Verifier for requests scoped to region and service
// (e.g. "lambda"). now nil means time.Now.
func NewVerifier(region, service string, keys KeyLookup, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{region: region, service: service, keys: keys, now: now}
}

// Verify checks r (headers, method, raw path, raw query) against body, the
// complete body already read by the caller. Every error it returns is, or
// wraps, an *errdefs.APIError.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte) (Identity, error) {
	auths := r.Header["Authorization"]
	if len(auths) == 0 {
		if isPresigned(r.URL.RawQuery) {
			return v.verifyPresigned(ctx, r, body)
		}
		return Identity{}, errdefs.MissingAuthenticationToken()
	}
	if len(auths) > 1 {
		return Identity{}, errdefs.IncompleteSignature("Only one Authorization header may be specified.")
	}
	if hasQueryKey(r.URL.RawQuery, "X-Amz-Algorithm") {
		return Identity{}, errdefs.IncompleteSignature("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified.")
	}
	p, err := parseAuthorization(auths[0])
	if err != nil {
		return Identity{}, err
	}
	dates := r.Header["X-Amz-Date"]
	if len(dates) == 0 {
		return Identity{}, errdefs.IncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=%s",
			sanitize(auths[0], maxEcho))
	}
	amzDate := dates[0]
	t, ok := parseAmzDate(amzDate)
	if !ok || len(dates) > 1 {
		return Identity{}, badDate(amzDate)
	}
	now := v.now().UTC()
	if err := checkWindow(t, now, maxSkew); err != nil {
		return Identity{}, err
	}
	return v.finish(ctx, r, body, &p, amzDate, false)
}

func badDate(s string) error {
	return errdefs.IncompleteSignature("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", sanitize(s, 32))
}

// checkWindow applies AWS's symmetric clock window, with AWS's wording.
func checkWindow(t, now time.Time, skew time.Duration) error {
	if t.Before(now.Add(-skew)) {
		return errdefs.InvalidSignature("Signature expired: %s is now earlier than %s (%s - %s.)",
			t.Format(amzDateFmt), now.Add(-skew).Format(amzDateFmt), now.Format(amzDateFmt), skewText(skew))
	}
	if t.After(now.Add(skew)) {
		return errdefs.InvalidSignature("Signature not yet current: %s is still later than %s (%s + %s.)",
			t.Format(amzDateFmt), now.Add(skew).Format(amzDateFmt), now.Format(amzDateFmt), skewText(skew))
	}
	return nil
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + " min"
	}
	return strconv.Itoa(int(d/time.Second)) + " sec"
}

// verifyPresigned handles query-string auth (X-Amz-Algorithm & co.). It is
// not the hot path, so it may use url.ParseQuery.
func (v *Verifier) verifyPresigned(ctx context.Context, r *http.Request, body []byte) (Identity, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Identity{}, errdefs.IncompleteSignature("The query string could not be parsed.")
	}
	one := func(k string) (string, bool) {
		vs := q[k]
		return strings.Join(vs, ","), len(vs) == 1 && vs[0] != ""
	}
	alg, ok1 := one("X-Amz-Algorithm")
	cred, ok2 := one("X-Amz-Credential")
	sig, ok3 := one("X-Amz-Signature")
	amzDate, ok4 := one("X-Amz-Date")
	signed, ok5 := one("X-Amz-SignedHeaders")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return Identity{}, errdefs.IncompleteSignature("AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string parameters.")
	}
	if alg != algorithm {
		return Identity{}, errdefs.IncompleteSignature("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".")
	}
	p := authParams{credential: cred, signedHeaders: signed, signature: sig}
	if err := p.splitCredential(); err != nil {
		return Identity{}, err
	}
	if err := checkSignedHeaders(signed, false); err != nil {
		return Identity{}, err
	}
	t, ok := parseAmzDate(amzDate)
	if !ok {
		return Identity{}, badDate(amzDate)
	}
	now := v.now().UTC()
	if exp, present := q["X-Amz-Expires"]; present {
		secs, err := strconv.Atoi(strings.Join(exp, ","))
		if err != nil || secs < 1 || secs > maxPresignExpires {
			return Identity{}, errdefs.IncompleteSignature("X-Amz-Expires must be a whole number of seconds from 1 to %d.", maxPresignExpires)
		}
		if t.After(now.Add(maxSkew)) {
			return Identity{}, checkWindow(t, now, maxSkew)
		}
		if end := t.Add(time.Duration(secs) * time.Second); now.After(end) {
			return Identity{}, errdefs.InvalidSignature("Signature expired: %s is now earlier than %s (%s - %d sec.)",
				t.Format(amzDateFmt), now.Add(-time.Duration(secs)*time.Second).Format(amzDateFmt), now.Format(amzDateFmt), secs)
		}
	} else if err := checkWindow(t, now, maxSkew); err != nil {
		return Identity{}, err
	}
	return v.finish(ctx, r, body, &p, amzDate, true)
}

// finish runs the checks common to both auth forms, in the contract's order:
// scope, key lookup, then the signature itself.
func (v *Verifier) finish(ctx context.Context, r *http.Request, body []byte, p *authParams, amzDate string, presigned bool) (Identity, error) {
	if p.scopeDate != amzDate[:8] {
		return Identity{}, errdefs.InvalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			p.scopeDate, amzDate[:8], amzDate)
	}
	if p.scopeRegion != v.region {
		return Identity{}, errdefs.InvalidSignature("Credential should be scoped to a valid region.")
	}
	if p.scopeService != v.service {
		return Identity{}, errdefs.InvalidSignature("Credential should be scoped to correct service: '%s'.", v.service)
	}

	secret, account, err := v.keys.LookupKey(ctx, p.accessKeyID)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return Identity{}, errdefs.UnrecognizedClient()
		}
		var apiErr *errdefs.APIError
		if errors.As(err, &apiErr) {
			return Identity{}, err
		}
		return Identity{}, fmt.Errorf("%w: %w", errdefs.ServiceUnavailable("The access key could not be checked. Try again later."), err)
	}

	var want [sha256.Size]byte
	if len(p.signature) != 2*sha256.Size {
		return Identity{}, errdefs.InvalidSignature(msgMismatch)
	}
	if _, err := hex.Decode(want[:], []byte(p.signature)); err != nil {
		return Identity{}, errdefs.InvalidSignature(msgMismatch)
	}

	// The payload hash: the body's, or what X-Amz-Content-Sha256 declares,
	// which must then agree with the body unless it is UNSIGNED-PAYLOAD.
	var bodyHex [2 * sha256.Size]byte
	sum := sha256.Sum256(body)
	hex.Encode(bodyHex[:], sum[:])
	// useBody and useUnsigned pick the payload lines to try, in order.
	useBody, useUnsigned := true, false
	if cs := r.Header["X-Amz-Content-Sha256"]; len(cs) > 0 {
		switch {
		case len(cs) == 1 && cs[0] == unsignedPayload:
			useBody, useUnsigned = false, true
		case len(cs) == 1 && cs[0] == string(bodyHex[:]):
		default:
			return Identity{}, errdefs.InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
		}
	} else if presigned {
		// botocore presigns non-S3 requests with UNSIGNED-PAYLOAD;
		// aws-sdk-go-v2 callers choose. Try both.
		useUnsigned = true
	}

	s := v.getScratch()
	defer v.putScratch(s)

	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	b := append(s.creq[:0], method...)
	b = append(b, '\n')
	b = appendCanonicalURI(b, rawPath(r))
	b = append(b, '\n')
	b, ok := appendCanonicalQuery(b, r.URL.RawQuery, presigned, s.pairs[:])
	if !ok {
		s.creq = b
		return Identity{}, errdefs.InvalidSignature(msgMismatch)
	}
	b = append(b, '\n')
	b = appendCanonicalHeaders(b, r, p.signedHeaders)
	b = append(b, '\n')
	b = append(b, p.signedHeaders...)
	b = append(b, '\n')
	prefix := len(b)
	s.creq = b

	key := v.cache.get(secret, p.scopeDate, v.region, v.service)
	for _, unsigned := range [2]bool{false, true} {
		if unsigned && !useUnsigned || !unsigned && !useBody {
			continue
		}
		b = b[:prefix]
		if unsigned {
			b = append(b, unsignedPayload...)
		} else {
			b = append(b, bodyHex[:]...)
		}
		s.creq = b
		creqSum := sha256.Sum256(b)

		sts := append(s.sts[:0], algorithm+"\n"...)
		sts = append(sts, amzDate...)
		sts = append(sts, '\n')
		sts = append(sts, p.scope...)
		sts = append(sts, '\n')
		sts = hex.AppendEncode(sts, creqSum[:])
		s.sts = sts

		got := hmacSHA256(&key, sts, s.mac)
		if hmac.Equal(got[:], want[:]) {
			return Identity{AccountID: account, AccessKeyID: p.accessKeyID}, nil
		}
	}
	return Identity{}, errdefs.InvalidSignature(msgMismatch)
}

func (v *Verifier) getScratch() *scratch {
	if s, ok := v.bufs.Get().(*scratch); ok {
		return s
	}
	return &scratch{creq: make([]byte, 0, 1024), sts: make([]byte, 0, 256), mac: make([]byte, 0, 320)}
}

func (v *Verifier) putScratch(s *scratch) {
	// Do not let one huge request pin a huge buffer in the pool.
	if cap(s.creq) > 64<<10 || cap(s.sts) > 4<<10 {
		return
	}
	clear(s.pairs[:]) // drop references to request strings
	v.bufs.Put(s)
}

// isPresigned reports whether the query carries query-string auth.
func isPresigned(raw string) bool {
	return hasQueryKey(raw, "X-Amz-Algorithm") || hasQueryKey(raw, "X-Amz-Credential") || hasQueryKey(raw, "X-Amz-Signature")
}

// hasQueryKey reports whether raw has a pair whose key is exactly key (keys
// made of unreserved characters are never escaped by clients).
func hasQueryKey(raw, key string) bool {
	for from := 0; from < len(raw); {
		i := strings.Index(raw[from:], key)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(key)
		if (i == 0 || raw[i-1] == '&') && (end == len(raw) || raw[end] == '=' || raw[end] == '&') {
			return true
		}
		from = end
	}
	return false
}
