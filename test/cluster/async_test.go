package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/test/kilnproc"
)

// kilnCall sends one SigV4-signed request (admin keys) to a Kiln route on
// endpoint and returns the status and body.
func kilnCall(ctx context.Context, p *kilnproc.Server, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		return 0, nil, err
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func createQueue(t *testing.T, p *kilnproc.Server, name string) string {
	t.Helper()
	code, b, err := kilnCall(context.Background(), p, http.MethodPost, "/2026-01-01/kiln/queues", []byte(`{"QueueName":"`+name+`"}`))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("create queue %s: %d %s %v", name, code, b, err)
	}
	var q struct{ QueueArn string }
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	return q.QueueArn
}

// receiveBodies takes up to 1000 messages from a queue (waiting up to 1 s).
func receiveBodies(ctx context.Context, p *kilnproc.Server, queue string) ([]string, error) {
	code, b, err := kilnCall(ctx, p, http.MethodGet, "/2026-01-01/kiln/queues/"+queue+"/messages?MaxNumberOfMessages=1000&WaitTimeSeconds=1", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("receive %s: %d %s", queue, code, b)
	}
	var out struct{ Messages []struct{ Body string } }
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, m.Body)
	}
	return bodies, nil
}

// asyncRuns is a node's async Runs counter, with all its metrics.
func asyncRuns(p *kilnproc.Server) (int64, string) {
	code, b, err := kilnCall(context.Background(), p, http.MethodGet, "/2026-01-01/kiln/async/metrics", nil)
	if err != nil || code != http.StatusOK {
		return -1, fmt.Sprint(code, err)
	}
	var m struct{ Runs int64 }
	_ = json.Unmarshal(b, &m)
	return m.Runs, string(b)
}

func invokeEvent(ctx context.Context, c *lambda.Client, fn string, payload []byte) error {
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: payload, InvocationType: types.InvocationTypeEvent})
	if err != nil {
		return err
	}
	if out.StatusCode != http.StatusAccepted {
		return fmt.Errorf("event invoke: status %d", out.StatusCode)
	}
	return nil
}

// collectTags receives the OnSuccess records from queue through p until
// every tag in want has been seen or within ends; it returns the tags seen
// (with how often).
func collectTags(t *testing.T, p *kilnproc.Server, queue string, want map[string]bool, within time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		bodies, err := receiveBodies(context.Background(), p, queue)
		if err != nil {
			t.Logf("receive: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, b := range bodies {
			var rec struct {
				RequestPayload struct{ Tag string } `json:"requestPayload"`
			}
			if err := json.Unmarshal([]byte(b), &rec); err != nil {
				t.Fatalf("record %q: %v", b, err)
			}
			seen[rec.RequestPayload.Tag]++
		}
		missing := 0
		for tag := range want {
			if seen[tag] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
	}
	return seen
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// acceptLatencies sends n Event invokes one after another and returns how
// long each took to be accepted (202: stored on a quorum in a cluster).
func acceptLatencies(t *testing.T, c *lambda.Client, fn string, n int, tag func(i int) string) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for i := range n {
		b, _ := json.Marshal(map[string]any{"tag": tag(i), "ms": 100})
		t0 := time.Now()
		if err := invokeEvent(context.Background(), c, fn, b); err != nil {
			t.Fatalf("event invoke %d: %v", i, err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

// TestClusterAsync checks that async events, Kiln queues and the pollers
// are shared by a three-node cluster: events accepted by one node run on
// several, a queue created on one node is used through another, and events
// accepted by a node that is SIGKILLed right after still run.
func TestClusterAsync(t *testing.T) {
	t0 := time.Now()
	nodes, _, _ := startCluster(t, "--async-retry-scale", "0.01", "--async-lease", "2s", "--log-level", "info")
	t.Logf("3 nodes up in %v", time.Since(t0).Round(time.Millisecond))
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	if os.Getenv("KILN_TEST_VERBOSE") != "" {
		t.Cleanup(func() {
			for _, n := range nodes {
				t.Logf("%s output:\n%s", n.id, n.proc.Output())
			}
		})
	}
	for _, n := range nodes {
		n.lambda = n.proc.Client()
	}

	// A queue created through A is usable through B and C.
	createQueue(t, a.proc, "shared")
	if code, body, err := kilnCall(ctx, b.proc, http.MethodPost, "/2026-01-01/kiln/queues/shared/messages", []byte("hello from b")); err != nil || code != http.StatusOK {
		t.Fatalf("send through b: %d %s %v", code, body, err)
	}
	if got, err := receiveBodies(ctx, c.proc, "shared"); err != nil || len(got) != 1 || got[0] != "hello from b" {
		t.Fatalf("receive through c: %q %v", got, err)
	}

	doneArn := createQueue(t, a.proc, "done")
	if _, err := a.lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("rec"),
		Runtime:      types.RuntimePython312,
		Handler:      aws.String("app.handler"),
		Role:         aws.String(testRole),
		Code:         &types.FunctionCode{ZipFile: fnZip(t, "async")},
		Timeout:      aws.Int32(10),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.lambda.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:         aws.String("rec"),
		MaximumRetryAttempts: aws.Int32(2),
		DestinationConfig:    &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(doneArn)}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFunction(t, n.lambda, "rec", 5*time.Second)
		// A node runs an event with the destinations its own replica knows
		// (reads may lag the write by milliseconds), so wait until all do.
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := n.lambda.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("rec")})
			if err == nil && out.DestinationConfig != nil && out.DestinationConfig.OnSuccess != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the event invoke config: %v", n.id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Phase 1: events accepted through A run on more than one node.
	const n1 = 60
	want := map[string]bool{}
	lat := acceptLatencies(t, a.lambda, "rec", n1, func(i int) string {
		tag := fmt.Sprintf("p1-%d", i)
		want[tag] = true
		return tag
	})
	t.Logf("3-node cluster: async accept latency p50 %v p99 %v (n=%d, through the Lambda SDK)",
		percentile(lat, 0.5), percentile(lat, 0.99), len(lat))
	// 40 s: a record a receive's fetch took as it expired comes back after
	// the queue's 30 s visibility timeout.
	seen := collectTags(t, b.proc, "done", want, 40*time.Second)
	for tag := range want {
		if seen[tag] == 0 {
			t.Errorf("event %s never ran", tag)
		}
	}
	ran := 0
	for _, n := range nodes {
		r, all := asyncRuns(n.proc)
		t.Logf("%s ran %d events", n.id, r)
		if t.Failed() {
			t.Logf("%s metrics: %s", n.id, all)
		}
		if r > 0 {
			ran++
		}
	}
	if ran < 2 {
		t.Errorf("events ran on %d node(s); the pollers of every node should share the work", ran)
	}
	if t.Failed() {
		return
	}

	// Phase 2: SIGKILL A right after it accepted a batch; B and C run them.
	const n2 = 30
	want = map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n2)
	for i := range n2 {
		wg.Go(func() {
			tag := fmt.Sprintf("p2-%d", i)
			b, _ := json.Marshal(map[string]any{"tag": tag, "ms": 300})
			if err := invokeEvent(ctx, a.lambda, "rec", b); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			want[tag] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	a.proc.Kill()
	close(errs)
	for err := range errs {
		t.Errorf("event invoke before the kill: %v", err)
	}
	t.Logf("SIGKILLed %s right after it accepted %d events", a.id, len(want))
	t1 := time.Now()
	seen = collectTags(t, b.proc, "done", want, 50*time.Second)
	dups := 0
	for tag := range want {
		switch {
		case seen[tag] == 0:
			t.Errorf("accepted event %s was lost with the node that accepted it", tag)
		case seen[tag] > 1:
			dups++
		}
	}
	t.Logf("all %d events ran on the survivors within %v (%d ran more than once)", len(want), time.Since(t1).Round(time.Millisecond), dups)
}

// TestAsyncAcceptLatencySingle is the baseline for the cluster's accept
// latency: the same measurement on one node (no replication).
func TestAsyncAcceptLatencySingle(t *testing.T) {
	if testing.Short() {
		t.Skip("baseline measurement")
	}
	p := kilnproc.Start(t, "", "--sandbox-egress=false", "--async-retry-scale", "0.01")
	cl := p.Client()
	ctx := context.Background()
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("rec"),
		Runtime:      types.RuntimePython312,
		Handler:      aws.String("app.handler"),
		Role:         aws.String(testRole),
		Code:         &types.FunctionCode{ZipFile: fnZip(t, "single")},
	}); err != nil {
		t.Fatal(err)
	}
	lat := acceptLatencies(t, cl, "rec", 60, func(i int) string { return fmt.Sprintf("s-%d", i) })
	t.Logf("single node: async accept latency p50 %v p99 %v (n=%d, through the Lambda SDK)",
		percentile(lat, 0.5), percentile(lat, 0.99), len(lat))
}
