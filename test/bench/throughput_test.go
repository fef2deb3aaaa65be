package bench

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kiln-dev/kiln/test/kilnproc"
)

// processCPU returns the user+system CPU time a process has used so far
// (from /proc/<pid>/stat, in clock ticks of 10 ms).
func processCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// BenchmarkWarmThroughputPerServerCore runs kiln server as its own process
// and charges only that process's CPU (frontend, worker manager, worker,
// Runtime API — everything but the client and the function's own process).
func BenchmarkWarmThroughputPerServerCore(b *testing.B) {
	srv := kilnproc.Start(b, "")
	endpoint := srv.Endpoint
	creds := aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey}
	c := srv.Client()
	deploy(b, c, "echo", "provided.al2023", "bootstrap", filepath.Dir(buildGoFunction(b, b.TempDir())))
	mk := signedInvoke(b, endpoint, "echo", creds)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 300; i++ {
		roundTrip(b, hc, mk())
	}

	const clients = 8
	dur := 3 * time.Second
	var count atomic.Int64
	cpu0 := processCPU(b, srv.Pid())
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(t0) < dur {
				roundTrip(b, hc, mk())
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := processCPU(b, srv.Pid()) - cpu0
	rate := float64(count.Load()) / elapsed.Seconds()
	perCore := float64(count.Load()) / cpu.Seconds()
	fmt.Printf("warm invoke throughput, kiln server as its own process (%d clients): %.0f invokes/s; server CPU %.2f cores; %.0f invokes per server CPU-second\n",
		clients, rate, cpu.Seconds()/elapsed.Seconds(), perCore)
	b.ReportMetric(rate, "invokes/s")
	b.ReportMetric(perCore, "invokes/server-cpu-s")
}
