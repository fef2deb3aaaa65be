package acceptance

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// TestAsyncBenchmark measures async accept latency and queue throughput
// against the sync invoke rate of the same function. Opt-in:
//
//	KILN_BENCH=1 go test ./test/acceptance -run TestAsyncBenchmark -v
func TestAsyncBenchmark(t *testing.T) {
	if os.Getenv("KILN_BENCH") == "" {
		t.Skip("set KILN_BENCH=1 to run")
	}
	s := startServer(t, "", strings.Fields(os.Getenv("KILN_BENCH_ARGS"))...)
	c := s.client(t)
	createFunction(t, c, "bench", fixtures()[0])
	payload := []byte(`{"action":"echo"}`)
	const workers = 16

	parallel := func(n int, f func() error) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					if err := f(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(t0)
	}
	syncInvoke := func() error {
		_, err := c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("bench"), Payload: payload})
		return err
	}
	asyncInvoke := func() error {
		_, err := invokeEvent(t, c, "bench", payload)
		return err
	}
	parallel(200, syncInvoke) // warm sandboxes
	const nSync = 3000
	d := parallel(nSync, syncInvoke)
	syncRate := float64(nSync) / d.Seconds()

	// Accept latency, one caller at a time, as a client sees it.
	lat := make([]time.Duration, 0, 1000)
	for range 1000 {
		t0 := time.Now()
		if err := asyncInvoke(); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	waitDone := func(want float64) time.Time {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			var m map[string]any
			s.kiln(t, "GET", "/2026-01-01/kiln/async/metrics", nil, &m)
			if m["Succeeded"].(float64) >= want {
				return time.Now()
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal("events did not drain")
		return time.Time{}
	}
	waitDone(1000)

	// Throughput: accept a burst with 16 callers, time until all ran.
	const nAsync = 5000
	t0 := time.Now()
	acc := parallel(nAsync, asyncInvoke)
	end := waitDone(1000 + nAsync)
	asyncRate := float64(nAsync) / end.Sub(t0).Seconds()
	summary := fmt.Sprintf("async accept latency (1 caller, n=1000): p50 %v p99 %v; accept rate (16 callers) %.0f/s; "+
		"async end-to-end %.0f events/s (n=%d); sync invoke %.0f/s (n=%d, 16 callers); async/sync %.2f",
		lat[len(lat)/2], lat[len(lat)*99/100], float64(nAsync)/acc.Seconds(), asyncRate, nAsync, syncRate, nSync, asyncRate/syncRate)
	t.Log(summary)
}
