package sigv4

import (
	"context"
	"testing"
)

// BenchmarkVerify is one Invoke as the Lambda SDK sends it, with a 1 KB body,
// already parsed by net/http. The signing key is cached after the first call.
func BenchmarkVerify(b *testing.B) {
	body := jsonBody(1024)
	r := signed(b, "POST", "http://localhost:9000/2015-03-31/functions/my-function%3Alive/invocations?Qualifier=live", body,
		map[string][]string{
			"Content-Type":          {"application/octet-stream"},
			"X-Amz-Invocation-Type": {"RequestResponse"},
			"X-Amz-Log-Type":        {"None"},
			"Amz-Sdk-Invocation-Id": {"5d6f0e2a-8a1e-4b8e-9d6c-2f0b7c1e9a33"},
			"Amz-Sdk-Request":       {"attempt=1; max=3"},
			"Accept-Encoding":       {"identity"},
		}, defaultCreds(), testRegion, testTime)
	sr, got := onWire(b, r)
	v := newTestVerifier(testTime)
	ctx := context.Background()
	if _, err := v.Verify(ctx, sr, got); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(got)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, sr, got); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyParallel shows the key cache and scratch pool under contention.
func BenchmarkVerifyParallel(b *testing.B) {
	body := jsonBody(1024)
	r := signed(b, "POST", "http://localhost:9000/2015-03-31/functions/f/invocations", body, nil, defaultCreds(), testRegion, testTime)
	sr, got := onWire(b, r)
	v := newTestVerifier(testTime)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), sr, got); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
