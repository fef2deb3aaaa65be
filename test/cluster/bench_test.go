package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// BenchmarkClusterInvoke measures warm invokes admitted through all three
// nodes of a real cluster (counting's leases on the shared Raft log; each
// node runs its own sandboxes). Run:
//
//	go test -run '^$' -bench ClusterInvoke -benchtime 3000x ./test/cluster
func BenchmarkClusterInvoke(b *testing.B) {
	nodes, _, _ := startCluster(b)
	ctx := context.Background()
	c0 := nodes[0].proc.Client()
	if _, err := c0.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("bench"),
		Runtime:      types.RuntimePython312,
		Handler:      aws.String("app.handler"),
		Role:         aws.String(testRole),
		Code:         &types.FunctionCode{ZipFile: fnZip(b, "bench")},
	}); err != nil {
		b.Fatal(err)
	}
	clients := make([]*lambda.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = n.proc.Client()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := invokeFn(ctx, clients[i], "bench", map[string]any{}); err == nil {
				break
			} else if time.Now().After(deadline) {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var next, failed atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	t0 := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[next.Add(1)%int64(len(clients))]
		for pb.Next() {
			if _, err := invokeFn(ctx, c, "bench", map[string]any{}); err != nil {
				failed.Add(1)
			}
		}
	})
	el := time.Since(t0)
	b.ReportMetric(float64(b.N)/el.Seconds(), "invokes/s")
	b.ReportMetric(float64(failed.Load()), "failed")
}
