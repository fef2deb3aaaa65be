package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/server"
	"github.com/kiln-dev/kiln/test/fnbuild"
)

// memoryMB is the benchmark function's memory: 1769 MB is one full vCPU on
// Lambda (and in Kiln's cgroup CPU quota), so the figure measures the platform
// rather than a function throttled to a fraction of a core.
const memoryMB = 1769

// payload1K is the 1 KB event of the warm-invoke benchmark.
var payload1K = []byte(`{"data":"` + strings.Repeat("x", 1024-11) + `"}`)

// buildGoFunction compiles the echo function into dir/gofn/bootstrap.
func buildGoFunction(tb testing.TB, dir string) string {
	tb.Helper()
	return fnbuild.Binary(tb, "./testdata/echo", filepath.Join(dir, "gofn"))
}

// startKiln runs an in-process kiln server on a fresh data dir.
func startKiln(tb testing.TB) (*server.Server, *lambda.Client, aws.Credentials) {
	tb.Helper()
	dir := tb.TempDir()
	// Isolation on, as `kiln server` runs by default.
	srv, err := server.Start(context.Background(), server.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kiln"), Isolation: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close(context.Background()) })
	var admin aws.Credentials
	for _, a := range srv.Control().Accounts() {
		if a.Admin {
			admin = aws.Credentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey}
		}
	}
	c := lambda.NewFromConfig(aws.Config{Region: "us-east-1",
		Credentials: credentials.StaticCredentialsProvider{Value: admin}}, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String("http://" + srv.Addr())
	})
	return srv, c, admin
}

func deploy(tb testing.TB, c *lambda.Client, name, runtime, handler, codeDir string) {
	tb.Helper()
	zip, err := codepkg.ZipDir(codeDir)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = c.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.Runtime(runtime), Handler: aws.String(handler),
		Role: aws.String("arn:aws:iam::123456789012:role/bench"), Code: &types.FunctionCode{ZipFile: zip},
		MemorySize: aws.Int32(memoryMB),
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// signedInvoke prepares one signed Invoke request that can be replayed
// (SigV4 allows replays within the 5-minute window), so the client spends
// nothing on signing inside the measured loop.
func signedInvoke(tb testing.TB, endpoint, name string, creds aws.Credentials) func() *http.Request {
	tb.Helper()
	url := endpoint + "/2015-03-31/functions/" + name + "/invocations"
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload1K))
	sum := sha256.Sum256(payload1K)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		tb.Fatal(err)
	}
	hdr := req.Header.Clone()
	return func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload1K))
		r.Header = hdr.Clone()
		return r
	}
}

func roundTrip(tb testing.TB, c *http.Client, req *http.Request) {
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Function-Error") != "" {
		tb.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"))
	}
}

// loopbackBaseline serves a plain net/http echo of the same payload.
func loopbackBaseline(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWarmInvoke measures a warm invoke through the whole path — SigV4,
// frontend, counting, worker manager, Runtime API, an aws-lambda-go function
// and back — with a 1 KB payload, next to a plain loopback round trip.
func BenchmarkWarmInvoke(b *testing.B) {
	srv, c, creds := startKiln(b)
	boot := buildGoFunction(b, b.TempDir())
	codeDir := filepath.Dir(boot)
	deploy(b, c, "echo", "provided.al2023", "bootstrap", codeDir)
	endpoint := "http://" + srv.Addr()
	mk := signedInvoke(b, endpoint, "echo", creds)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 200; i++ { // cold start, then warm up
		roundTrip(b, hc, mk())
	}

	base := loopbackBaseline(b)
	mkBase := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, base, bytes.NewReader(payload1K))
		return r
	}
	n := b.N
	if n < 500 {
		n = 500
	}
	baseD := make(dist, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		resp, err := hc.Do(mkBase())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		baseD = append(baseD, time.Since(t0))
	}

	b.ResetTimer()
	d := make(dist, 0, n)
	for i := 0; i < n; i++ {
		req := mk()
		t0 := time.Now()
		roundTrip(b, hc, req)
		d = append(d, time.Since(t0))
	}
	b.StopTimer()
	report(b, "warm invoke (sequential)", d, baseD)
	bare := bareRuntimeRoundTrips(b, boot, n)
	fmt.Printf("%-28s p50 %9.1f µs  p99 %9.1f µs | Kiln's full path is %.2fx this at p50 and adds %.1f µs\n",
		"bare runtime round trip", us(bare.pct(0.5)), us(bare.pct(0.99)),
		float64(d.pct(0.5))/float64(bare.pct(0.5)), us(d.pct(0.5)-bare.pct(0.5)))
	b.ReportMetric(us(bare.pct(0.5)), "bare-runtime-p50-µs")

	// Throughput: several clients at once for a fixed time; the figure per
	// CPU-second counts everything this process spends (client, frontend,
	// worker manager, worker, Runtime API) but not the function's own process.
	const clients = 8
	dur := 3 * time.Second
	var count atomic.Int64
	cpu0 := cpuTime()
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
	cpu := cpuTime() - cpu0
	rate := float64(count.Load()) / elapsed.Seconds()
	perCore := float64(count.Load()) / cpu.Seconds()
	fmt.Printf("warm invoke throughput (%d clients): %.0f invokes/s, %.0f invokes per CPU-second of the kiln process (client included)\n", clients, rate, perCore)
	b.ReportMetric(rate, "invokes/s")
	b.ReportMetric(perCore, "invokes/cpu-s")
}
