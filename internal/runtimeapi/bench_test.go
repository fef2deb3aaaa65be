package runtimeapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// benchRuntime is a runtime loop like aws-lambda-go's: one keep-alive
// connection, GET /next, then POST the response. chunked mimics
// aws-lambda-go exactly (a streamed body with declared trailers).
func benchRuntime(url string, chunked bool, stop <-chan struct{}) {
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp := []byte(`{"statusCode":200,"body":"hello"}`)
	for {
		req, _ := http.NewRequest("GET", url+base+"next", nil)
		r, err := c.Do(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			return
		}
		id := r.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var body io.Reader = bytes.NewReader(resp)
		if chunked {
			body = struct{ io.Reader }{body}
		}
		req, _ = http.NewRequest("POST", url+base+id+"/response", body)
		req.Header.Set("Content-Type", "application/octet-stream")
		if chunked {
			req.Trailer = http.Header{"Lambda-Runtime-Function-Error-Type": nil, "Lambda-Runtime-Function-Error-Body": nil}
		}
		r, err = c.Do(req)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		select {
		case <-stop:
			return
		default:
		}
	}
}

// BenchmarkInvokeRoundTrip measures Invoke → /next returns → /response →
// Invoke returns over 127.0.0.1, against a real Go HTTP client loop.
func BenchmarkInvokeRoundTrip(b *testing.B) {
	for _, mode := range []struct {
		name    string
		chunked bool
	}{{"content-length", false}, {"chunked-trailers", true}} {
		b.Run(mode.name, func(b *testing.B) {
			s, url := startServer(b, Config{})
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				benchRuntime(url, mode.chunked, stop)
			}()
			ids := make([]string, 1024)
			for i := range ids {
				ids[i] = "8476a536-e9f4-11e8-9739-" + strconv.FormatInt(int64(1e11+i), 10) + "0"
			}
			inv := &Invocation{
				Payload:            []byte(`{"key1":"value1","key2":"value2"}`),
				InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:bench",
				TraceID:            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0",
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				inv.RequestID = ids[i%len(ids)]
				res, err := s.Invoke(ctx, inv)
				if err != nil || res.FunctionError {
					b.Fatal(err, res)
				}
			}
			b.StopTimer()
			close(stop)
			_ = s.Close()
			<-done
		})
	}
}

// BenchmarkLoopbackBaseline is the floor: the same two HTTP exchanges per
// operation (a GET answered with the /next headers, a POST answered 202)
// against a plain net/http server, with no hand-off between goroutines.
func BenchmarkLoopbackBaseline(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	event := []byte(`{"key1":"value1","key2":"value2"}`)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			h := w.Header()
			h["Lambda-Runtime-Aws-Request-Id"] = []string{"8476a536-e9f4-11e8-9739-2dfe598c3fcd"}
			h["Lambda-Runtime-Deadline-Ms"] = []string{"1700000000123"}
			h["Lambda-Runtime-Invoked-Function-Arn"] = []string{"arn:aws:lambda:us-east-1:123456789012:function:bench"}
			h["Lambda-Runtime-Trace-Id"] = []string{"Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0"}
			h["Content-Type"] = []string{"application/json"}
			_, _ = w.Write(event)
			return
		}
		_, _ = io.ReadAll(r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(bodyAccepted)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String()
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp := []byte(`{"statusCode":200,"body":"hello"}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", url+base+"next", nil)
		r, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		req, _ = http.NewRequest("POST", url+base+"x/response", bytes.NewReader(resp))
		r, err = c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
}

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// BenchmarkInvokeInProcess is the Server's own share of a round trip: the
// same hand-off between Invoke and the /next and /response handlers, with
// the handlers called directly instead of through sockets and net/http.
func BenchmarkInvokeInProcess(b *testing.B) {
	s := NewServer(Config{})
	defer s.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		next, _ := http.NewRequest("GET", "http://x"+base+"next", nil)
		body := []byte(`{"statusCode":200,"body":"hello"}`)
		rd := bytes.NewReader(body)
		post, _ := http.NewRequest("POST", "http://x"+base+"id/response", nil)
		post.Body = io.NopCloser(rd)
		w := &discardWriter{h: http.Header{}}
		for {
			clear(w.h)
			s.ServeHTTP(w, next)
			id := w.h.Get(hdrRequestID)
			select {
			case <-stop:
				return
			default:
			}
			post.URL.Path = base + id + "/response"
			rd.Reset(body)
			post.ContentLength = int64(len(body))
			clear(w.h)
			s.ServeHTTP(w, post)
			if w.status != http.StatusAccepted {
				panic(w.status)
			}
		}
	}()
	inv := &Invocation{
		RequestID:          "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
		Payload:            []byte(`{"key1":"value1","key2":"value2"}`),
		InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:bench",
		TraceID:            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0",
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Invoke(ctx, inv); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	// Unblock the runtime goroutine's last /next.
	go func() { _, _ = s.Invoke(ctx, inv) }()
	<-done
}
