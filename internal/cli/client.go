package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
)

// signingService is the SigV4 service name of the Lambda API, which Kiln's
// own routes share.
const signingService = "lambda"

// maxKilnResponse bounds how much of a reply from Kiln's own routes is read.
const maxKilnResponse = 32 << 20

// client is what a verb uses to reach the Kiln endpoint.
type client struct {
	endpoint *url.URL
	region   string
	creds    aws.CredentialsProvider
	lambda   *lambda.Client
	http     *http.Client
	signer   *v4.Signer
	now      func() time.Time
}

// usageErr marks an error in what the user typed (exit code 2).
type usageErr struct{ err error }

func (u *usageErr) Error() string { return u.err.Error() }
func (u *usageErr) Unwrap() error { return u.err }

// connect builds the client from the common flags, or prints why it cannot
// and returns the exit code.
func (e *env) connect(ctx context.Context, cmd *command) (*client, int, bool) {
	c, err := e.newClient(ctx, &cmd.common)
	if err != nil {
		var ue *usageErr
		if errors.As(err, &ue) {
			return nil, cmd.usageError(e, "%v", ue.err), false
		}
		return nil, e.fail("", err), false
	}
	return c, 0, true
}

func (e *env) newClient(ctx context.Context, cf *commonFlags) (*client, error) {
	endpoint, err := parseEndpoint(cf.endpointURL())
	if err != nil {
		return nil, &usageErr{err}
	}
	cfg, err := resolveConfig(ctx, cf)
	if err != nil {
		return nil, err
	}
	hc, err := e.endpointClient(endpoint)
	if err != nil {
		return nil, err
	}
	lc := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(endpoint.String())
		o.HTTPClient = hc
	})
	return &client{
		endpoint: endpoint,
		region:   cfg.Region,
		creds:    cfg.Credentials,
		lambda:   lc,
		http:     hc,
		signer:   v4.NewSigner(),
		now:      e.now,
	}, nil
}

func parseEndpoint(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid --endpoint-url %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid --endpoint-url %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("invalid --endpoint-url %q: no user, query or fragment allowed", s)
	}
	return u, nil
}

// endpointClient is e.httpClient, except that for an https endpoint it
// trusts the certificates in $AWS_CA_BUNDLE instead of the system roots when
// that is set, as the AWS tools do.
func (e *env) endpointClient(endpoint *url.URL) (*http.Client, error) {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	tr, ok := e.httpClient.Transport.(*http.Transport)
	if bundle == "" || endpoint.Scheme != "https" || !ok {
		return e.httpClient, nil
	}
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("AWS_CA_BUNDLE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("AWS_CA_BUNDLE %s: no PEM certificates in it", bundle)
	}
	tr = tr.Clone()
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.RootCAs = pool
	hc := *e.httpClient
	hc.Transport = tr
	return &hc, nil
}

// newEndpointHTTPClient is the client for the Kiln endpoint. It has no
// overall timeout because a synchronous invoke may run for 15 minutes; ctx
// bounds every request instead.
func newEndpointHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Transport: tr}
}

// kilnRequest calls one of Kiln's own routes (outside the Lambda API) with a
// SigV4 signature, and returns the body of a 2xx reply. A non-2xx reply
// becomes a smithy.APIError inside a smithy.OperationError named op, as the
// SDK reports Lambda errors, so both print the same way.
func (c *client) kilnRequest(ctx context.Context, op, method string, segments []string, query url.Values, body []byte) ([]byte, error) {
	b, err := c.doKiln(ctx, method, segments, query, body)
	if err != nil {
		return nil, &smithy.OperationError{ServiceID: "Lambda", OperationName: op, Err: err}
	}
	return b, nil
}

func (c *client) doKiln(ctx context.Context, method string, segments []string, query url.Values, body []byte) ([]byte, error) {
	u := *c.endpoint
	u.Path, u.RawPath = joinPath(c.endpoint, segments)
	u.RawQuery = query.Encode()

	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.URL = &u
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieve credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signingService, c.region, c.now()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKilnResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if len(b) > maxKilnResponse {
		return nil, fmt.Errorf("reply larger than %d bytes", maxKilnResponse)
	}
	if resp.StatusCode/100 != 2 {
		return nil, decodeAPIError(resp.StatusCode, resp.Header, b)
	}
	return b, nil
}

// joinPath appends segments, each escaped as one path segment, to the
// endpoint's own path; it returns the decoded and the escaped form.
func joinPath(base *url.URL, segments []string) (path, rawPath string) {
	var p, raw strings.Builder
	p.WriteString(strings.TrimRight(base.Path, "/"))
	raw.WriteString(strings.TrimRight(base.EscapedPath(), "/"))
	for _, s := range segments {
		p.WriteString("/" + s)
		raw.WriteString("/" + escapeSegment(s))
	}
	return p.String(), raw.String()
}

// escapeSegment percent-encodes everything but RFC 3986 unreserved
// characters, as the SDK does for Lambda path parameters (":" → "%3A").
func escapeSegment(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[ch>>4])
		b.WriteByte(hexDigits[ch&15])
	}
	return b.String()
}

// decodeAPIError turns an AWS-shaped error reply into a smithy.APIError the
// way aws-sdk-go-v2 does for rest-json: the code from X-Amzn-ErrorType, else
// from the body's "code" or "__type"; the message from the body's "message"
// in any letter case. A reply without a code is named by its status, as the
// AWS CLI does ("An error occurred (404) ...").
func decodeAPIError(status int, h http.Header, body []byte) *smithy.GenericAPIError {
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(body, &fields) // a body that is not JSON just has no fields
	str := func(key string) string {
		for k, raw := range fields {
			if strings.EqualFold(k, key) {
				var s string
				if json.Unmarshal(raw, &s) == nil {
					return s
				}
			}
		}
		return ""
	}
	code := sanitizeErrorCode(h.Get("X-Amzn-ErrorType"))
	if code == "" {
		code = sanitizeErrorCode(str("code"))
	}
	if code == "" {
		code = sanitizeErrorCode(str("__type"))
	}
	if code == "" {
		code = strconv.Itoa(status)
	}
	msg := str("message")
	if msg == "" && len(fields) == 0 {
		msg = http.StatusText(status)
	}
	fault := smithy.FaultClient
	if status >= 500 {
		fault = smithy.FaultServer
	}
	return &smithy.GenericAPIError{Code: code, Message: msg, Fault: fault}
}

// sanitizeErrorCode keeps what is before ":" and after "#", as the SDK does
// ("aws.lambda#ResourceNotFoundException:http://..." → the bare name).
func sanitizeErrorCode(code string) string {
	code, _, _ = strings.Cut(code, ":")
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return strings.TrimSpace(code)
}

// kilnCall sends one Kiln API request and decodes its JSON answer into out.
func (c *client) kilnCall(ctx context.Context, op, method string, segments []string, query url.Values, body []byte, out any) error {
	b, err := c.kilnRequest(ctx, op, method, segments, query, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return decodeErr(op, err)
	}
	return nil
}
