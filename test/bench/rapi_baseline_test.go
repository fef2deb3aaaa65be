package bench

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bareRuntimeRoundTrips measures the floor under any warm invoke: the same
// aws-lambda-go bootstrap, started as a plain process (no sandbox), polling a
// minimal net/http Runtime API in this process. Each sample is one event
// handed to its pending /next until its /response arrives.
func bareRuntimeRoundTrips(tb testing.TB, bootstrap string, n int) dist {
	tb.Helper()
	events := make(chan []byte)
	results := make(chan struct{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	seq := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/invocation/next"):
			var ev []byte
			select {
			case ev = <-events:
			case <-r.Context().Done():
				return
			}
			seq++
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", "00000000-0000-0000-0000-"+strconv.Itoa(100000000000+seq))
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:echo")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
			_, _ = w.Write(ev)
		default:
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"OK"}`))
			if strings.HasSuffix(r.URL.Path, "/response") {
				results <- struct{}{}
			}
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	cmd := exec.Command(bootstrap)
	cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + l.Addr().String(), "AWS_LAMBDA_FUNCTION_NAME=echo",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769"}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	d := make(dist, 0, n)
	for i := 0; i < n+200; i++ {
		t0 := time.Now()
		events <- payload1K
		<-results
		if i >= 200 { // the first ones warm both sides up
			d = append(d, time.Since(t0))
		}
	}
	return d
}
