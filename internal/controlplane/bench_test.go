package controlplane

import (
	"context"
	"testing"
)

func BenchmarkResolve(b *testing.B) {
	e := newEnv(b, b.TempDir())
	defer e.Close()
	for _, s := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/2015-03-31/functions", createBody(b, "fn")},
		{"POST", "/2015-03-31/functions/fn/versions", nil},
		{"PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": pyZip(b, "2"), "Publish": true}},
		{"POST", "/2015-03-31/functions/fn/aliases", map[string]any{"Name": "live", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.25}}}},
	} {
		if w := e.do(acctA, s.method, s.path, s.body); w.Code >= 300 {
			b.Fatal(w.Body)
		}
	}
	ctx := context.Background()
	cases := []struct{ name, ref, qual string }{
		{"name", "fn", ""},
		{"version", "fn", "2"},
		{"weighted-alias", "fn:live", ""},
		{"full-arn", "arn:aws:lambda:us-east-1:111111111111:function:fn:live", ""},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			pick := 0.0
			for b.Loop() {
				pick += 0.01
				if pick >= 1 {
					pick = 0
				}
				if _, err := e.svc.Resolve(ctx, acctA, c.ref, c.qual, pick); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.svc.Resolve(ctx, acctA, "fn:live", "", 0.5); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkLookupKey(b *testing.B) {
	e := newEnv(b, b.TempDir())
	defer e.Close()
	ctx := context.Background()
	var last Account
	for range 100 {
		a, err := e.svc.CreateAccount(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		last = a
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.svc.LookupKey(ctx, last.AccessKeyID); err != nil {
			b.Fatal(err)
		}
	}
}
