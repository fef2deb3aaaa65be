package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

const (
	testAKID    = "AKIDEXAMPLE"
	testSecret  = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testAccount = "123456789012"
	testRegion  = "us-east-1"
	testService = "lambda"
)

// testTime is a fixed signing time; verifiers in tests use it as "now".
var testTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// keyTable is a KeyLookup over a fixed table. The key store is another
// package's job; this stands in at the interface boundary.
type keyTable map[string][2]string // access key id → {secret, account}

var errLookupDown = errors.New("key store unreachable")

func (k keyTable) LookupKey(_ context.Context, id string) (string, string, error) {
	if id == "AKIDBROKEN" {
		return "", "", errLookupDown
	}
	v, ok := k[id]
	if !ok {
		return "", "", errdefs.ResourceNotFound("access key %s", id)
	}
	return v[0], v[1], nil
}

func testKeys() keyTable {
	return keyTable{
		testAKID:   {testSecret, testAccount},
		"AKIDTWO":  {"second-secret", "210987654321"},
		"AKIDSESS": {"session-secret", "111111111111"},
	}
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func newTestVerifier(now time.Time) *Verifier {
	return NewVerifier(testRegion, testService, testKeys(), fixedClock(now))
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signed builds a client request the way the SDK would send it and signs it
// with aws-sdk-go-v2's own signer.
func signed(t testing.TB, method, url string, body []byte, hdr map[string][]string, creds aws.Credentials, region string, at time.Time) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	payload := hexSHA(body)
	if cs := r.Header.Get("X-Amz-Content-Sha256"); cs != "" {
		payload = cs
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, payload, testService, region, at); err != nil {
		t.Fatal(err)
	}
	return r
}

func defaultCreds() aws.Credentials {
	return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret}
}

// onWire serialises a client request and parses it back the way net/http's
// server does, so Verify sees exactly what a server handler would: raw
// RequestURI, Host, Content-Length handling, canonicalised header names.
func onWire(t testing.TB, r *http.Request) (*http.Request, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	sr, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(sr.Body)
	if err != nil {
		t.Fatal(err)
	}
	return sr, body
}

// wireBytes is the raw HTTP/1.1 form of a request.
func wireBytes(t testing.TB, r *http.Request) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// apiCode returns the AWS error code of err, or "" for nil.
func apiCode(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae *errdefs.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *errdefs.APIError", err, err)
	}
	return ae.Code
}

func jsonBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"key":"`)
	for b.Len() < n-2 {
		b.WriteString("abcdefghij")
	}
	s := b.String()[:n-2]
	return []byte(s + `"}`)
}
