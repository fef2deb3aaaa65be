package awsapi

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

func TestSegments(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
	}{
		{"/2015-03-31/functions/name%3Aalias/invocations", []string{"2015-03-31", "functions", "name:alias", "invocations"}},
		{"/2015-03-31/functions/a%2Fb", []string{"2015-03-31", "functions", "a/b"}},
		{"/", nil},
	}
	for _, tt := range tests {
		got, err := Segments(tt.raw)
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("Segments(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	if _, err := Segments("/bad%zz"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("bad escape: %v", err)
	}
}

func TestWriteErrorShapes(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code       string
		messageKey string
	}{
		{errdefs.ResourceNotFound("Function not found: x"), 404, "ResourceNotFoundException", "Message"},
		{errdefs.InvalidParameter("bad"), 400, "InvalidParameterValueException", "message"},
		{errdefs.ResourceConflict("dup"), 409, "ResourceConflictException", "message"},
		{errdefs.Throttled("ConcurrentInvocationLimitExceeded", 1, "Rate Exceeded."), 429, "TooManyRequestsException", "message"},
		{errdefs.UnrecognizedClient(), 403, "UnrecognizedClientException", "message"},
		{errdefs.RequestTooLarge("big"), 413, "RequestEntityTooLargeException", "message"},
		{errors.New("disk on fire at /secret/path"), 500, "ServiceException", "Message"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		WriteError(rec, nil, "rid", tt.err)
		if rec.Code != tt.status || rec.Header().Get("X-Amzn-Errortype") != tt.code || rec.Header().Get("X-Amzn-Requestid") != "rid" {
			t.Errorf("%v: status %d type %q", tt.err, rec.Code, rec.Header().Get("X-Amzn-Errortype"))
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if _, ok := body[tt.messageKey]; !ok {
			t.Errorf("%v: body %s lacks %q", tt.err, rec.Body, tt.messageKey)
		}
		if strings.Contains(rec.Body.String(), "/secret/path") {
			t.Errorf("internal error text leaked: %s", rec.Body)
		}
		if tt.code == "TooManyRequestsException" && body["Reason"] != "ConcurrentInvocationLimitExceeded" {
			t.Errorf("throttle lacks Reason: %s", rec.Body)
		}
	}
}

func FuzzSegments(f *testing.F) {
	for _, s := range []string{"/2015-03-31/functions/x/invocations", "/a%3Ab/c", "//", "%", "/%2F%2F/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		segs, err := Segments(raw)
		if err != nil {
			return
		}
		if len(segs) > strings.Count(raw, "/")+1 {
			t.Fatalf("more segments than slashes: %q → %q", raw, segs)
		}
	})
}

func TestReadBody(t *testing.T) {
	tooLarge := errdefs.RequestTooLarge("too large")
	tests := []struct {
		name    string
		body    string
		length  int64 // -1: chunked (unknown)
		limit   int64
		wantErr error
	}{
		{"exact", "hello", 5, 10, nil},
		{"chunked", "hello", -1, 10, nil},
		{"declared too large", "hello", 50, 10, tooLarge},
		{"chunked too large", strings.Repeat("x", 11), -1, 10, tooLarge},
		{"short body", "hel", 5, 10, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			r.ContentLength = tt.length
			b, err := ReadBody(r, tt.limit, tooLarge)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(b) != tt.body {
				t.Fatalf("ReadBody = %q, %v", b, err)
			}
		})
	}
}
