package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/ so plain `go test`
// replays them. Regenerate with KILN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds.

func FuzzParseAuthorization(f *testing.F) {
	f.Fuzz(func(t *testing.T, h string) {
		p, err := parseAuthorization(h)
		if err != nil {
			var ae *errdefs.APIError
			if !errors.As(err, &ae) || ae.Code != "IncompleteSignatureException" {
				t.Fatalf("error %v is not an IncompleteSignature APIError", err)
			}
			if len(ae.Message) > 1024 {
				t.Fatalf("message is %d bytes long", len(ae.Message))
			}
			for i := 0; i < len(ae.Message); i++ {
				if c := ae.Message[i]; c < 0x20 || c > 0x7e {
					t.Fatalf("message echoes byte %#x: %q", c, ae.Message)
				}
			}
			return
		}
		if p.accessKeyID == "" || p.credential != p.accessKeyID+"/"+p.scope {
			t.Fatalf("credential %q split into %q + %q", p.credential, p.accessKeyID, p.scope)
		}
		if want := p.scopeDate + "/" + p.scopeRegion + "/" + p.scopeService + "/" + terminator; p.scope != want {
			t.Fatalf("scope %q, parts make %q", p.scope, want)
		}
		if !isDigits(p.scopeDate, 8) {
			t.Fatalf("scope date %q", p.scopeDate)
		}
		if !strings.Contains(";"+p.signedHeaders+";", ";host;") || !strings.Contains(";"+p.signedHeaders+";", ";x-amz-date;") {
			t.Fatalf("signed headers %q lack host or x-amz-date", p.signedHeaders)
		}
	})
}

// FuzzVerify feeds raw HTTP requests through net/http's own parser into
// Verify. It must never panic, must only return API errors, and may only
// accept the seeds' identity.
func FuzzVerify(f *testing.F) {
	v := newTestVerifier(testTime)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		id, err := v.Verify(context.Background(), r, body)
		if err != nil {
			var ae *errdefs.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("non-API error %v", err)
			}
			return
		}
		if _, ok := testKeys()[id.AccessKeyID]; !ok {
			t.Fatalf("accepted unknown identity %+v", id)
		}
	})
}

// FuzzSignedByTheSDK is differential: whatever request aws-sdk-go-v2 can sign
// and net/http can send, Verify must accept.
func FuzzSignedByTheSDK(f *testing.F) {
	v := newTestVerifier(testTime)
	f.Fuzz(func(t *testing.T, method, target, hdrName, hdrValue string, body []byte) {
		r, err := http.NewRequest(method, "http://localhost:9000"+target, bytes.NewReader(body))
		if err != nil || r.URL.Host != "localhost:9000" || r.URL.Opaque != "" {
			return
		}
		if hdrName != "" {
			// net/http's Transport refuses invalid names and values; r.Write does not.
			if !validToken(hdrName) || strings.ContainsFunc(hdrValue, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }) {
				return
			}
			r.Header.Set(hdrName, hdrValue)
		}
		// Lambda clients never use these; their meaning is not SigV4's.
		for _, h := range []string{"Authorization", "X-Amz-Content-Sha256", "X-Amz-Date", "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection"} {
			r.Header.Del(h)
		}
		if hasQueryKey(r.URL.RawQuery, "X-Amz-Algorithm") {
			return
		}
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			// The SDK's signer silently drops undecodable pairs (its
			// serialisers never make them); Verify refuses them rather than
			// let unsigned bytes through.
			return
		}
		if err := SignRequest(context.Background(), r, body, testAKID, testSecret, testRegion, testService, testTime); err != nil {
			return
		}
		var buf bytes.Buffer
		if err := r.Write(&buf); err != nil {
			return
		}
		sr, err := http.ReadRequest(bufio.NewReader(&buf))
		if err != nil {
			return
		}
		got, err := io.ReadAll(sr.Body)
		if err != nil || !bytes.Equal(got, body) {
			return
		}
		if sr.Header.Get("Authorization") != r.Header.Get("Authorization") {
			return // the header did not survive the wire intact
		}
		if _, err := v.Verify(context.Background(), sr, got); err != nil {
			t.Fatalf("Verify rejected an SDK-signed request: %v\n%s", err, buf.String())
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora from signed example requests.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KILN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set KILN_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzzName, seed string, vals ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", fuzzName)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, seed), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range acceptCases {
		creds := tc.creds
		if creds.AccessKeyID == "" {
			creds = defaultCreds()
		}
		r := signed(t, tc.method, "http://localhost:9000"+tc.path, tc.body, tc.hdr, creds, testRegion, testTime)
		write("FuzzVerify", fmt.Sprintf("signed-%02d", i), wireBytes(t, r))
		write("FuzzParseAuthorization", fmt.Sprintf("signed-%02d", i), r.Header.Get("Authorization"))
		hn, hv := "", ""
		for k, vs := range tc.hdr {
			hn, hv = k, vs[0]
			break
		}
		body := tc.body
		if body == nil {
			body = []byte{}
		}
		write("FuzzSignedByTheSDK", fmt.Sprintf("case-%02d", i), tc.method, tc.path, hn, hv, body)
	}
	for i, h := range []string{
		"",
		"AWS4-HMAC-SHA256",
		"AWS4-HMAC-SHA256 ",
		"AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/lambda/aws4_request,SignedHeaders=host;x-amz-date,Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/lambda/aws4_request/extra, SignedHeaders=host;x-amz-date, Signature=00",
		"AWS4-HMAC-SHA256 Credential=/20240102/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00",
		"AWS4-HMAC-SHA256 Credential=AKID/2024/us-east-1/lambda/aws4_request, SignedHeaders=;;, Signature=",
		"AWS4-HMAC-SHA256 Credential, SignedHeaders, Signature",
		"AWS4-ECDSA-P256-SHA256 Credential=AKID/20240102/lambda/aws4_request",
		"Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
		"AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/lambda/aws4_request, SignedHeaders=Host;X-Amz-Date, Signature=00",
		"AWS4-HMAC-SHA256 Credential=\xff\x00/20240102/r/s/aws4_request, SignedHeaders=host;x-amz-date, Signature=\x01",
	} {
		write("FuzzParseAuthorization", fmt.Sprintf("edge-%02d", i), h)
	}
	for i, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20240102T030405Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires=60 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a%zz/b?%zz=1;x HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date;x-unknown, Signature=" + strings.Repeat("0", 64) + "\r\nX-Amz-Date: 20240102T030405Z\r\nContent-Length: 3\r\n\r\nabc",
		"PUT * HTTP/1.1\r\nHost: \r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/us-east-1/lambda/aws4_request, SignedHeaders=content-length;host;transfer-encoding;x-amz-date, Signature=zz\r\nX-Amz-Date: 20240102T030405Z\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		write("FuzzVerify", fmt.Sprintf("edge-%02d", i), []byte(raw))
	}
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isHeaderNameByte(c) && !('A' <= c && c <= 'Z') {
			return false
		}
	}
	return s != ""
}
