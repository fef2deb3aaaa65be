package runtimeapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// state puts a fresh server into a known state before the request under test.
type state func(t *testing.T, s *Server, c *http.Client, url string)

func stateNone(*testing.T, *Server, *http.Client, string) {}

// stateOpen leaves invocation "req-1" delivered and waiting for its result.
func stateOpen(t *testing.T, s *Server, c *http.Client, url string) {
	t.Helper()
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "req-1", Payload: []byte(`{}`)})
	t.Cleanup(func() { _ = s.Close(); <-ch })
	if r := do(t, c, "GET", url+base+"next", nil, nil); r.status != 200 {
		t.Fatalf("next: %d", r.status)
	}
}

// stateResponded leaves invocation "req-1" answered.
func stateResponded(t *testing.T, s *Server, c *http.Client, url string) {
	t.Helper()
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "req-1", Payload: []byte(`{}`)})
	do(t, c, "GET", url+base+"next", nil, nil)
	if r := do(t, c, "POST", url+base+"req-1/response", []byte(`1`), nil); r.status != 202 {
		t.Fatalf("response: %d", r.status)
	}
	wait(t, ch)
}

func TestEndpointStatusCodes(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 1536*1024) // a 1.5 MiB X-Ray cause
	tests := []struct {
		name     string
		state    state
		method   string
		path     string
		body     []byte
		hdr      map[string]string
		status   int
		errType  string
		wantBody string
	}{
		{"ping", stateNone, "GET", "/ping", nil, nil, 200, "", "pong"},
		{"unknown path", stateNone, "GET", "/2018-06-01/runtime/nope", nil, nil, 404, "NotFound", ""},
		{"next wrong method", stateNone, "POST", base + "next", nil, nil, 405, "MethodNotAllowed", ""},
		{"response wrong method", stateOpen, "GET", base + "req-1/response", nil, nil, 405, "MethodNotAllowed", ""},
		{"response empty id", stateOpen, "POST", base + "/response", []byte(`1`), nil, 404, "NotFound", ""},
		{"response", stateOpen, "POST", base + "req-1/response", []byte(`{"ok":true}`), nil, 202, "", `{"status":"OK"}`},
		{"error", stateOpen, "POST", base + "req-1/error", []byte(`{"errorType":"X"}`), nil, 202, "", `{"status":"OK"}`},
		{"error with 1.5 MiB header", stateOpen, "POST", base + "req-1/error", []byte(`{}`),
			map[string]string{"Lambda-Runtime-Function-Xray-Error-Cause": string(big)}, 202, "", `{"status":"OK"}`},
		{"response wrong id", stateOpen, "POST", base + "req-2/response", []byte(`1`), nil, 400, "InvalidRequestID", ""},
		{"error wrong id", stateOpen, "POST", base + "req-2/error", []byte(`1`), nil, 400, "InvalidRequestID", ""},
		{"response without invoke", stateNone, "POST", base + "req-1/response", []byte(`1`), nil, 400, "InvalidRequestID", ""},
		{"second response", stateResponded, "POST", base + "req-1/response", []byte(`1`), nil, 403, "InvalidStateTransition", ""},
		{"error after response", stateResponded, "POST", base + "req-1/error", []byte(`1`), nil, 403, "InvalidStateTransition", ""},
		{"bad response mode", stateOpen, "POST", base + "req-1/response", []byte(`1`),
			map[string]string{"Lambda-Runtime-Function-Response-Mode": "buffered"}, 400, "InvalidFunctionResponseMode", ""},
		{"init error before init", stateNone, "POST", "/2018-06-01/runtime/init/error", []byte(`{}`), nil, 202, "", `{"status":"OK"}`},
		{"init error after init", stateResponded, "POST", "/2018-06-01/runtime/init/error", []byte(`{}`), nil, 403, "InvalidStateTransition", ""},
		{"init error wrong method", stateNone, "GET", "/2018-06-01/runtime/init/error", nil, nil, 405, "MethodNotAllowed", ""},
		{"extension register", stateNone, "POST", "/2020-01-01/extension/register", []byte(`{"events":[]}`),
			map[string]string{"Lambda-Extension-Name": "ext"}, 200, "", `{"functionName":"fn","functionVersion":"$LATEST","handler":"h.x"}`},
		{"extension register without name", stateNone, "POST", "/2020-01-01/extension/register", []byte(`{}`), nil, 403, "Extension.InvalidExtensionName", ""},
		{"extension next without id", stateNone, "GET", "/2020-01-01/extension/event/next", nil, nil, 403, "Extension.MissingExtensionIdentifier", ""},
		{"extension next unknown id", stateNone, "GET", "/2020-01-01/extension/event/next", nil,
			map[string]string{"Lambda-Extension-Identifier": "nope"}, 403, "Extension.InvalidExtensionIdentifier", ""},
		{"extension init error", stateNone, "POST", "/2020-01-01/extension/init/error", []byte(`{}`),
			map[string]string{"Lambda-Extension-Function-Error-Type": "Extension.Crash"}, 202, "", `{"status":"OK"}`},
		{"extension exit error", stateNone, "POST", "/2020-01-01/extension/exit/error", []byte(`{}`), nil, 202, "", `{"status":"OK"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := startServer(t, Config{FunctionName: "fn", FunctionVersion: "$LATEST", Handler: "h.x"})
			c := newClient()
			tt.state(t, s, c, url)
			r := do(t, c, tt.method, url+tt.path, tt.body, tt.hdr)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.status, r.body)
			}
			if tt.errType != "" {
				if got := r.errorType(); got != tt.errType {
					t.Errorf("errorType %q, want %q (body %s)", got, tt.errType, r.body)
				}
				var v map[string]string
				if err := json.Unmarshal(r.body, &v); err != nil || v["errorMessage"] == "" || len(v) != 2 {
					t.Errorf("error body %s is not {errorMessage, errorType}", r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tt.wantBody != "" && string(r.body) != tt.wantBody {
				t.Errorf("body %s, want %s", r.body, tt.wantBody)
			}
			if tt.status == 202 && r.header.Get("Content-Type") != "application/json" {
				t.Errorf("202 Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
}

func TestNextHeaders(t *testing.T) {
	deadline := time.UnixMilli(1_700_000_000_123)
	traceRE := regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$`)
	tests := []struct {
		name   string
		inv    Invocation
		want   map[string]string // "" means absent
		traceR bool
	}{
		{
			name: "all fields",
			inv: Invocation{
				RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Payload: []byte(`{"a":1}`),
				ContentType: "application/octet-stream", Deadline: deadline,
				InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:fn:live",
				TraceID:            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
				ClientContext:      `{"custom":{"k":"v"}}`, CognitoIdentity: `{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}`,
			},
			want: map[string]string{
				"Lambda-Runtime-Aws-Request-Id":       "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
				"Lambda-Runtime-Deadline-Ms":          "1700000000123",
				"Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn:live",
				"Lambda-Runtime-Trace-Id":             "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
				"Lambda-Runtime-Client-Context":       `{"custom":{"k":"v"}}`,
				"Lambda-Runtime-Cognito-Identity":     `{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}`,
				"Content-Type":                        "application/octet-stream",
				"Content-Length":                      "7",
			},
		},
		{
			name: "defaults and omissions",
			inv:  Invocation{RequestID: "r2", Payload: nil, Deadline: deadline, InvokedFunctionArn: "arn:x"},
			want: map[string]string{
				"Lambda-Runtime-Aws-Request-Id":   "r2",
				"Lambda-Runtime-Deadline-Ms":      "1700000000123",
				"Lambda-Runtime-Client-Context":   "",
				"Lambda-Runtime-Cognito-Identity": "",
				"Content-Type":                    "application/json",
				"Content-Length":                  "0",
			},
			traceR: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := startServer(t, Config{})
			c := newClient()
			ch := invokeAsync(context.Background(), s, &tt.inv)
			r := do(t, c, "GET", url+base+"next", nil, nil)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			if !bytes.Equal(r.body, tt.inv.Payload) {
				t.Errorf("body %q, want %q", r.body, tt.inv.Payload)
			}
			for k, v := range tt.want {
				if _, present := r.header[k]; v == "" && present {
					t.Errorf("%s present (%q), want absent", k, r.header.Get(k))
				}
				if got := r.header.Get(k); v != "" && got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.traceR && !traceRE.MatchString(r.header.Get("Lambda-Runtime-Trace-Id")) {
				t.Errorf("generated trace id %q", r.header.Get("Lambda-Runtime-Trace-Id"))
			}
			do(t, c, "POST", url+base+tt.inv.RequestID+"/response", []byte(`null`), nil)
			if got := wait(t, ch); got.err != nil || string(got.res.Payload) != "null" {
				t.Errorf("Invoke = %+v", got)
			}
		})
	}
}

// trailerBody lets a test set request trailers after the body was sent, as
// aws-lambda-go's errorCapturingReader does.
type trailerBody struct {
	r       io.Reader
	trailer http.Header
	set     map[string]string
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		for k, v := range b.set {
			b.trailer.Set(k, v)
		}
	}
	return n, err
}

func TestResults(t *testing.T) {
	cause := base64.StdEncoding.EncodeToString([]byte(`{"errorMessage":"stream broke","errorType":"errorString"}`))
	tests := []struct {
		name      string
		path      string // response or error
		body      []byte
		ctype     string
		hdr       map[string]string
		chunked   bool
		trailers  map[string]string // declared and set after the body
		limit     int
		status    int
		want      Result
		wantSub   string // when Payload is not checked exactly
		wantState int    // status of a second post
	}{
		{name: "response", path: "response", body: []byte(`{"statusCode":200}`), ctype: "application/json",
			status: 202, want: Result{Payload: []byte(`{"statusCode":200}`), ContentType: "application/json"}},
		{name: "response binary chunked", path: "response", body: []byte{0, 1, 2, 0xff}, ctype: "application/octet-stream", chunked: true,
			status: 202, want: Result{Payload: []byte{0, 1, 2, 0xff}, ContentType: "application/octet-stream"}},
		{name: "empty response", path: "response", body: []byte{}, status: 202, want: Result{Payload: []byte{}}},
		{name: "trailers declared but unset", path: "response", body: []byte(`"ok"`), chunked: true,
			trailers: map[string]string{"Lambda-Runtime-Function-Error-Type": "", "Lambda-Runtime-Function-Error-Body": ""},
			status:   202, want: Result{Payload: []byte(`"ok"`)}},
		{name: "error trailers", path: "response", body: []byte(`yyyy`), chunked: true,
			trailers: map[string]string{"Lambda-Runtime-Function-Error-Type": "errorString", "Lambda-Runtime-Function-Error-Body": cause},
			status:   202, want: Result{Payload: []byte(`{"errorMessage":"stream broke","errorType":"errorString"}`),
				ContentType: "application/json", FunctionError: true, ErrorType: "errorString"}},
		{name: "error trailers with bad body", path: "response", body: []byte(`yyyy`), chunked: true,
			trailers: map[string]string{"Lambda-Runtime-Function-Error-Type": "Function.Broken", "Lambda-Runtime-Function-Error-Body": "!!"},
			status:   202, want: Result{ContentType: "application/json", FunctionError: true, ErrorType: "Function.Broken"},
			wantSub: `"errorType":"Function.Broken"`},
		{name: "error type from header", path: "error", body: []byte(`{"errorMessage":"boom","errorType":"ValueError"}`),
			ctype: "application/json", hdr: map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"},
			status: 202, want: Result{Payload: []byte(`{"errorMessage":"boom","errorType":"ValueError"}`), ContentType: "application/json",
				FunctionError: true, ErrorType: "Runtime.Custom"}},
		{name: "error type from body", path: "error", body: []byte(`{"errorMessage":"boom","errorType":"errorString","stackTrace":[]}`),
			chunked: true, status: 202, want: Result{Payload: []byte(`{"errorMessage":"boom","errorType":"errorString","stackTrace":[]}`),
				FunctionError: true, ErrorType: "errorString"}},
		{name: "error body not json", path: "error", body: []byte(`oops`),
			status: 202, want: Result{Payload: []byte(`oops`), FunctionError: true}},
		{name: "response at the limit", path: "response", body: bytes.Repeat([]byte("z"), DefaultMaxResponseBytes),
			status: 202, want: Result{Payload: bytes.Repeat([]byte("z"), DefaultMaxResponseBytes)}},
		{name: "response over the limit", path: "response", body: bytes.Repeat([]byte("z"), DefaultMaxResponseBytes+1),
			status: 413, want: Result{ContentType: "application/json", FunctionError: true, ErrorType: "Function.ResponseSizeTooLarge",
				Payload: []byte(`{"errorMessage":"Response payload size (6291557 bytes) exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)}},
		{name: "chunked response over the limit", path: "response", body: bytes.Repeat([]byte("z"), 7<<20), chunked: true,
			status: 413, want: Result{ContentType: "application/json", FunctionError: true, ErrorType: "Function.ResponseSizeTooLarge",
				Payload: []byte(`{"errorMessage":"Response payload size (7340032 bytes) exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)}},
		{name: "error over a small limit", path: "error", body: bytes.Repeat([]byte("e"), 101), limit: 100, chunked: true,
			status: 413, want: Result{ContentType: "application/json", FunctionError: true, ErrorType: "Function.ResponseSizeTooLarge",
				Payload: []byte(`{"errorMessage":"Response payload size (101 bytes) exceeded maximum allowed payload size (100 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := startServer(t, Config{MaxResponseBytes: tt.limit})
			c := newClient()
			ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "id-1", Payload: []byte(`{}`)})
			do(t, c, "GET", url+base+"next", nil, nil)

			var rd io.Reader = bytes.NewReader(tt.body)
			req, _ := http.NewRequest("POST", url+base+"id-1/"+tt.path, nil)
			if tt.trailers != nil {
				req.Trailer = http.Header{}
				for k := range tt.trailers {
					req.Trailer[http.CanonicalHeaderKey(k)] = nil
				}
				rd = &trailerBody{r: rd, trailer: req.Trailer, set: tt.trailers}
			}
			if tt.chunked {
				req.Body = io.NopCloser(struct{ io.Reader }{rd}) // hide the length: chunked encoding
				req.ContentLength = -1
			} else {
				req.Body = io.NopCloser(rd)
				req.ContentLength = int64(len(tt.body))
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, rb)
			}
			if tt.status == 413 && !strings.Contains(string(rb), `"errorType":"RequestEntityTooLarge"`) {
				t.Errorf("413 body %s", rb)
			}
			got := wait(t, ch)
			if got.err != nil {
				t.Fatal(got.err)
			}
			r := got.res
			if r.FunctionError != tt.want.FunctionError || r.ErrorType != tt.want.ErrorType || r.ContentType != tt.want.ContentType {
				t.Errorf("result %+v, want %+v", struct {
					FE     bool
					ET, CT string
				}{r.FunctionError, r.ErrorType, r.ContentType}, struct {
					FE     bool
					ET, CT string
				}{tt.want.FunctionError, tt.want.ErrorType, tt.want.ContentType})
			}
			if tt.wantSub != "" {
				if !strings.Contains(string(r.Payload), tt.wantSub) {
					t.Errorf("payload %s lacks %s", r.Payload, tt.wantSub)
				}
			} else if !bytes.Equal(r.Payload, tt.want.Payload) || (r.Payload == nil) != (tt.want.Payload == nil) {
				t.Errorf("payload %.200q, want %.200q", r.Payload, tt.want.Payload)
			}
			// The invocation is over: a second post is an invalid transition.
			if r2 := do(t, c, "POST", url+base+"id-1/response", []byte(`1`), nil); r2.status != 403 {
				t.Errorf("second post: %d %s", r2.status, r2.body)
			}
		})
	}
}

func TestAbandonedInvoke(t *testing.T) {
	s, url := startServer(t, Config{})
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	ch := invokeAsync(ctx, s, &Invocation{RequestID: "old", Payload: []byte(`1`)})
	if r := do(t, c, "GET", url+base+"next", nil, nil); r.header.Get("Lambda-Runtime-Aws-Request-Id") != "old" {
		t.Fatalf("next: %+v", r)
	}
	cancel()
	if got := wait(t, ch); !errors.Is(got.err, context.Canceled) || got.res != nil {
		t.Fatalf("Invoke = %+v, want context.Canceled", got)
	}
	for _, p := range []string{"old/response", "old/error"} {
		if r := do(t, c, "POST", url+base+p, []byte(`late`), nil); r.status != 400 || r.errorType() != "InvalidRequestID" {
			t.Errorf("late %s: %d %s", p, r.status, r.body)
		}
	}
	// The next /next waits for a new Invoke instead of re-delivering "old".
	next := make(chan reply, 1)
	go func() { next <- do(t, c, "GET", url+base+"next", nil, nil) }()
	select {
	case r := <-next:
		t.Fatalf("/next returned %q without an invoke", r.header.Get("Lambda-Runtime-Aws-Request-Id"))
	case <-time.After(100 * time.Millisecond):
	}
	ch = invokeAsync(context.Background(), s, &Invocation{RequestID: "new", Payload: []byte(`2`)})
	if r := wait(t, next); r.header.Get("Lambda-Runtime-Aws-Request-Id") != "new" || string(r.body) != "2" {
		t.Fatalf("next after abandon: %+v", r)
	}
	do(t, c, "POST", url+base+"new/response", []byte(`"fresh"`), nil)
	if got := wait(t, ch); got.err != nil || string(got.res.Payload) != `"fresh"` {
		t.Fatalf("Invoke = %+v", got)
	}
}

func TestInvokeTimeoutBeforeDelivery(t *testing.T) {
	s, _ := startServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Invoke(ctx, &Invocation{RequestID: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	// A cancelled context fails fast, without handing anything to the runtime.
	if _, err := s.Invoke(ctx, &Invocation{RequestID: "y"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestSecondNextRedelivers(t *testing.T) {
	s, url := startServer(t, Config{})
	c1, c2 := newClient(), newClient()
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "r1", Payload: []byte(`{"n":1}`)})
	first := do(t, c1, "GET", url+base+"next", nil, nil)
	second := do(t, c2, "GET", url+base+"next", nil, nil)
	for _, r := range []reply{first, second} {
		if r.status != 200 || r.header.Get("Lambda-Runtime-Aws-Request-Id") != "r1" || string(r.body) != `{"n":1}` {
			t.Fatalf("next: %d %v %s", r.status, r.header, r.body)
		}
	}
	if first.header.Get("Lambda-Runtime-Trace-Id") != second.header.Get("Lambda-Runtime-Trace-Id") {
		t.Error("re-delivery changed the trace id")
	}
	do(t, c1, "POST", url+base+"r1/response", []byte(`"done"`), nil)
	if got := wait(t, ch); got.err != nil || string(got.res.Payload) != `"done"` {
		t.Fatalf("Invoke = %+v", got)
	}
	// After the response, /next blocks again.
	next := make(chan reply, 1)
	go func() { next <- do(t, c2, "GET", url+base+"next", nil, nil) }()
	select {
	case r := <-next:
		t.Fatalf("/next returned %v after the response", r.header)
	case <-time.After(100 * time.Millisecond):
	}
	_ = s.Close()
	if r := wait(t, next); r.status != 500 {
		t.Errorf("pending /next after Close: %d", r.status)
	}
}

func TestWaitInit(t *testing.T) {
	t.Run("ready on first next", func(t *testing.T) {
		s, url := startServer(t, Config{})
		done := make(chan error, 1)
		go func() { done <- s.WaitInit(context.Background()) }()
		c := newClient()
		go func() {
			req, _ := http.NewRequest("GET", url+base+"next", nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if err := wait(t, done); err != nil {
			t.Fatalf("WaitInit = %v", err)
		}
		if r := do(t, c, "POST", url+"/2018-06-01/runtime/init/error", []byte(`{}`), nil); r.status != 403 {
			t.Errorf("init error after init: %d", r.status)
		}
	})
	t.Run("init error", func(t *testing.T) {
		s, url := startServer(t, Config{})
		done := make(chan error, 1)
		go func() { done <- s.WaitInit(context.Background()) }()
		c := newClient()
		body := []byte(`{"errorMessage":"Unable to import module 'app': No module named 'app'","errorType":"Runtime.ImportModuleError","requestId":"","stackTrace":[]}`)
		if r := do(t, c, "POST", url+"/2018-06-01/runtime/init/error", body,
			map[string]string{"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}); r.status != 202 || string(r.body) != `{"status":"OK"}` {
			t.Fatalf("init error: %d %s", r.status, r.body)
		}
		var ie *InitError
		if err := wait(t, done); !errors.As(err, &ie) {
			t.Fatalf("WaitInit = %v, want *InitError", err)
		}
		if ie.ErrorType != "Runtime.ImportModuleError" || !bytes.Equal(ie.Payload, body) {
			t.Errorf("InitError = %q %s", ie.ErrorType, ie.Payload)
		}
		if r := do(t, c, "POST", url+"/2018-06-01/runtime/init/error", body, nil); r.status != 403 {
			t.Errorf("second init error: %d", r.status)
		}
		if _, err := s.Invoke(context.Background(), &Invocation{RequestID: "x"}); !errors.As(err, &ie) {
			t.Errorf("Invoke after init error = %v", err)
		}
	})
	t.Run("init error type from body", func(t *testing.T) {
		s, url := startServer(t, Config{})
		do(t, newClient(), "POST", url+"/2018-06-01/runtime/init/error", []byte(`{"errorType":"Runtime.UserCodeSyntaxError","errorMessage":"x"}`), nil)
		var ie *InitError
		if err := s.WaitInit(context.Background()); !errors.As(err, &ie) || ie.ErrorType != "Runtime.UserCodeSyntaxError" {
			t.Fatalf("WaitInit = %v", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		s, _ := startServer(t, Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := s.WaitInit(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitInit = %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s, _ := startServer(t, Config{})
		_ = s.Close()
		if err := s.WaitInit(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("WaitInit = %v", err)
		}
	})
}

func TestInvokeRules(t *testing.T) {
	s, url := startServer(t, Config{})
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "a"})
	// Wait until the first Invoke is registered.
	do(t, newClient(), "GET", url+base+"next", nil, nil)
	if _, err := s.Invoke(context.Background(), &Invocation{RequestID: "b"}); !errors.Is(err, ErrBusy) {
		t.Errorf("concurrent Invoke = %v, want ErrBusy", err)
	}
	_ = s.Close()
	if got := wait(t, ch); !errors.Is(got.err, ErrClosed) {
		t.Errorf("Invoke during Close = %+v", got)
	}
	if _, err := s.Invoke(context.Background(), &Invocation{RequestID: "c"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestExtensions(t *testing.T) {
	s, url := startServer(t, Config{FunctionName: "my-fn", FunctionVersion: "7", Handler: "bootstrap"})
	c := newClient()
	r := do(t, c, "POST", url+"/2020-01-01/extension/register", []byte(`{"events":["SHUTDOWN"]}`),
		map[string]string{"Lambda-Extension-Name": "GoLangEnableSIGTERM"})
	id := r.header.Get("Lambda-Extension-Identifier")
	if r.status != 200 || !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(id) {
		t.Fatalf("register: %d id=%q", r.status, id)
	}
	if string(r.body) != `{"functionName":"my-fn","functionVersion":"7","handler":"bootstrap"}` {
		t.Errorf("register body %s", r.body)
	}
	next := make(chan reply, 1)
	go func() {
		next <- do(t, c, "GET", url+"/2020-01-01/extension/event/next", nil, map[string]string{"Lambda-Extension-Identifier": id})
	}()
	select {
	case r := <-next:
		t.Fatalf("event/next returned early: %d %s", r.status, r.body)
	case <-time.After(100 * time.Millisecond):
	}
	before := time.Now().UnixMilli()
	_ = s.Close()
	r = wait(t, next)
	var ev struct {
		EventType, ShutdownReason string
		DeadlineMs                int64
	}
	if err := json.Unmarshal(r.body, &ev); err != nil || r.status != 200 || ev.EventType != "SHUTDOWN" ||
		ev.ShutdownReason != "spindown" || ev.DeadlineMs < before {
		t.Fatalf("event/next at shutdown: %d %s", r.status, r.body)
	}
}

func TestErrorTypeOf(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{`{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}`, "ValueError"},
		{`{"errorType":"Runtime.ImportModuleError"}`, "Runtime.ImportModuleError"},
		{`{"errorType":"a\nREPORT RequestId: x"}`, "a REPORT RequestId: x"},
		{`{"errorType":42}`, ""},
		{`{"errorType":null}`, ""},
		{`{"errortype":"Case"}`, "Case"}, // encoding/json matches keys case-insensitively
		{`[1,2]`, ""},
		{`not json`, ""},
		{``, ""},
		{`{"errorType":"` + strings.Repeat("x", 300) + `"}`, strings.Repeat("x", maxErrorTypeLen)},
	}
	for _, tt := range tests {
		if got := errorTypeOf([]byte(tt.body)); got != tt.want {
			t.Errorf("errorTypeOf(%.40q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestParseInvocationPath(t *testing.T) {
	tests := []struct {
		path    string
		id      string
		isError bool
		ok      bool
	}{
		{base + "abc/response", "abc", false, true},
		{base + "8476a536-e9f4-11e8-9739-2dfe598c3fcd/error", "8476a536-e9f4-11e8-9739-2dfe598c3fcd", true, true},
		{base + "next", "", false, false},
		{base + "/response", "", false, false},
		{base + "a/b/response", "", false, false},
		{base + "abc/responses", "", false, false},
		{"/2018-06-01/runtime/invocation", "", false, false},
		{"/2019-01-01/runtime/invocation/abc/response", "", false, false},
		{base + "response", "", false, false},
	}
	for _, tt := range tests {
		id, isErr, ok := parseInvocationPath(tt.path)
		if id != tt.id || isErr != tt.isError || ok != tt.ok {
			t.Errorf("parseInvocationPath(%q) = %q %v %v", tt.path, id, isErr, ok)
		}
	}
}

func TestNewTraceID(t *testing.T) {
	now := time.Unix(0x5bef4de7, 0)
	a, b := newTraceID(now), newTraceID(now)
	if !strings.HasPrefix(a, "Root=1-5bef4de7-") || a == b {
		t.Errorf("trace ids %q %q", a, b)
	}
	if len(a) != len("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0") {
		t.Errorf("trace id length %d", len(a))
	}
}

// Many invokes over one connection, like a warm sandbox: nothing leaks from
// one invocation into the next.
func TestManyInvokes(t *testing.T) {
	s, url := startServer(t, Config{})
	c := newClient()
	runtimeDone := make(chan struct{})
	go func() {
		defer close(runtimeDone)
		for {
			req, _ := http.NewRequest("GET", url+base+"next", nil)
			resp, err := c.Do(req)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return
			}
			id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
			path := "/response"
			if bytes.HasSuffix(body, []byte("7")) {
				path = "/error"
			}
			resp, err = c.Post(url+base+id+path, "application/json", bytes.NewReader(body))
			if err != nil {
				return
			}
			resp.Body.Close()
		}
	}()
	for i := range 200 {
		p := []byte(strconv.Itoa(i))
		res, err := s.Invoke(context.Background(), &Invocation{RequestID: "req-" + strconv.Itoa(i), Payload: p})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Payload, p) || res.FunctionError != (i%10 == 7) {
			t.Fatalf("invoke %d: %+v", i, res)
		}
	}
	_ = s.Close()
	<-runtimeDone
}

// Several /next calls pending when an invocation arrives all receive it.
func TestConcurrentNextAllReceive(t *testing.T) {
	s, url := startServer(t, Config{})
	const n = 3
	got := make(chan reply, n)
	for range n {
		c := newClient()
		go func() { got <- do(t, c, "GET", url+base+"next", nil, nil) }()
	}
	// Let all three block before the invocation exists.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		w := s.waiters
		s.mu.Unlock()
		if w == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "shared", Payload: []byte(`"e"`)})
	for range n {
		if r := wait(t, got); r.status != 200 || r.header.Get("Lambda-Runtime-Aws-Request-Id") != "shared" {
			t.Fatalf("next: %d %v", r.status, r.header)
		}
	}
	do(t, newClient(), "POST", url+base+"shared/response", []byte(`1`), nil)
	if res := wait(t, ch); res.err != nil {
		t.Fatal(res.err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters != 0 {
		t.Errorf("%d waiters left", s.waiters)
	}
}

// A runtime that hangs up while waiting in /next leaves nothing behind.
func TestNextClientGoesAway(t *testing.T) {
	s, url := startServer(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+base+"next", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := newClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waiters := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waiters
	}
	deadline := time.Now().Add(5 * time.Second)
	for waiters() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := wait(t, done); err == nil {
		t.Fatal("request succeeded after cancel")
	}
	for waiters() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := waiters(); n != 0 {
		t.Fatalf("%d waiters after the client left", n)
	}
	// The invocation still reaches the next /next.
	ch := invokeAsync(context.Background(), s, &Invocation{RequestID: "after"})
	c := newClient()
	if r := do(t, c, "GET", url+base+"next", nil, nil); r.header.Get("Lambda-Runtime-Aws-Request-Id") != "after" {
		t.Fatalf("next: %v", r.header)
	}
	do(t, c, "POST", url+base+"after/response", []byte(`1`), nil)
	if res := wait(t, ch); res.err != nil {
		t.Fatal(res.err)
	}
}
