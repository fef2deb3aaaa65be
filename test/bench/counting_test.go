package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/kiln-dev/kiln/internal/counting"
	"github.com/kiln-dev/kiln/internal/frontend"
	"github.com/kiln-dev/kiln/internal/logstore"
	"github.com/kiln-dev/kiln/internal/sigv4"
)

// noAdmission admits everything: the frontend with counting bypassed, for
// this benchmark only (Kiln has no such mode).
type noAdmission struct{}

func (noAdmission) Acquire(context.Context, counting.Request) (counting.Token, error) {
	return counting.Token{}, nil
}
func (noAdmission) Release(counting.Token) {}

// bypassFrontend serves the same frontend code as srv's, over srv's control
// plane and sandboxes, but with counting replaced by noAdmission.
func bypassFrontend(tb testing.TB, cp frontend.Resolver, mgmt http.Handler, keys sigv4.KeyLookup, sb frontend.Sandboxes) string {
	tb.Helper()
	fe := frontend.New(frontend.Config{
		Auth:       sigv4.NewVerifier("us-east-1", "lambda", keys, nil),
		Functions:  cp,
		Counting:   noAdmission{},
		Sandboxes:  sb,
		Logs:       logstore.New(0, nil),
		Management: mgmt,
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: fe, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(l) }()
	tb.Cleanup(func() { _ = hs.Close() })
	return "http://" + l.Addr().String()
}

// BenchmarkWarmInvokeCounting measures what counting costs a warm invoke:
// the same Go echo function deployed twice, once with reserved concurrency
// (its own token pool) and once without (the account's pool), and the
// same two again through a frontend with counting bypassed. The four are
// invoked in turn, sequentially, in a rotating order, so drift and
// ordering effects fall on all of them alike. Run:
//
//	go test -run '^$' -bench WarmInvokeCounting ./test/bench/
func BenchmarkWarmInvokeCounting(b *testing.B) {
	srv, c, creds := startKiln(b)
	boot := buildGoFunction(b, b.TempDir())
	codeDir := filepath.Dir(boot)
	deploy(b, c, "echo-reserved", "provided.al2023", "bootstrap", codeDir)
	deploy(b, c, "echo-account", "provided.al2023", "bootstrap", codeDir)
	if _, err := c.PutFunctionConcurrency(context.Background(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("echo-reserved"), ReservedConcurrentExecutions: aws.Int32(100),
	}); err != nil {
		b.Fatal(err)
	}
	endpoint := "http://" + srv.Addr()
	cp := srv.Control()
	bypass := bypassFrontend(b, cp, cp.Handler(), cp, srv.Sandboxes())

	// Each function is also invoked through the bypassing frontend, so each
	// counted path is compared with the very same sandbox uncounted (two
	// sandboxes of one function differ by more than counting costs).
	variants := []struct {
		name string
		mk   func() *http.Request
	}{
		{"reserved (own pool)", signedInvoke(b, endpoint, "echo-reserved", creds)},
		{"no limit (account pool)", signedInvoke(b, endpoint, "echo-account", creds)},
		{"reserved fn, bypassed", signedInvoke(b, bypass, "echo-reserved", creds)},
		{"no-limit fn, bypassed", signedInvoke(b, bypass, "echo-account", creds)},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 200; i++ { // cold starts, then warm up every path
		for _, v := range variants {
			roundTrip(b, hc, v.mk())
		}
	}

	rounds := max(b.N, 4000)
	ds := make([]dist, len(variants))
	for i := range ds {
		ds[i] = make(dist, 0, rounds)
	}
	// Per round, each counted invoke minus the same function's bypassed one.
	pairRes := make(dist, 0, rounds)
	pairAcc := make(dist, 0, rounds)
	b.ResetTimer()
	took := make([]time.Duration, len(variants))
	for i := 0; i < rounds; i++ {
		for k := range variants {
			j := (i + k) % len(variants)
			req := variants[j].mk()
			t0 := time.Now()
			roundTrip(b, hc, req)
			took[j] = time.Since(t0)
		}
		for j := range variants {
			ds[j] = append(ds[j], took[j])
		}
		pairRes = append(pairRes, took[0]-took[2])
		pairAcc = append(pairAcc, took[1]-took[3])
	}
	b.StopTimer()

	for j, v := range variants {
		fmt.Printf("warm invoke, %-24s p50 %8.1f µs  p99 %8.1f µs\n", v.name, us(ds[j].pct(0.5)), us(ds[j].pct(0.99)))
	}
	res, acc := ds[0].pct(0.5), ds[1].pct(0.5)
	resB, accB := ds[2].pct(0.5), ds[3].pct(0.5)
	fmt.Printf("counting adds %.1f µs at p50 with a reservation (paired median %.1f µs), %.1f µs on the account pool (paired median %.1f µs); reserved − no limit %.1f µs [%d rounds]\n",
		us(res-resB), us(pairRes.pct(0.5)), us(acc-accB), us(pairAcc.pct(0.5)), us(res-acc), rounds)
	b.ReportMetric(us(res), "reserved-p50-µs")
	b.ReportMetric(us(acc), "nolimit-p50-µs")
	b.ReportMetric(us(res-resB), "counting-adds-reserved-p50-µs")
	b.ReportMetric(us(acc-accB), "counting-adds-nolimit-p50-µs")
	b.ReportMetric(us(res-acc), "reserved-vs-nolimit-p50-µs")
}
