package async

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

const acct = "123456789012"

// scripted is a function whose outcome per call is chosen by the test.
type scripted struct {
	mu    sync.Mutex
	calls map[string][]time.Time // function name → call times
	ins   []*frontend.InvokeInput
	fn    func(in *frontend.InvokeInput, n int) (*frontend.InvokeOutput, error)
}

func (s *scripted) Invoke(_ context.Context, in *frontend.InvokeInput) (*frontend.InvokeOutput, error) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string][]time.Time{}
	}
	key := in.FunctionRef + "/" + in.RequestID
	s.calls[key] = append(s.calls[key], time.Now())
	n := len(s.calls[key])
	s.ins = append(s.ins, in)
	s.mu.Unlock()
	return s.fn(in, n)
}

func (s *scripted) count(fn, reqID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls[fn+"/"+reqID])
}

func (s *scripted) times(fn, reqID string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls[fn+"/"+reqID]...)
}

func (s *scripted) inputsFor(fn string) []*frontend.InvokeInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*frontend.InvokeInput
	for _, in := range s.ins {
		if in.FunctionRef == fn {
			out = append(out, in)
		}
	}
	return out
}

type staticConfigs struct {
	m        map[string]controlplane.EventInvokeConfig
	reserved map[string]int
}

func (c staticConfigs) EventInvokeConfig(account, function, qualifier string) (controlplane.EventInvokeConfig, bool) {
	v, ok := c.m[function+":"+qualifier]
	return v, ok
}

func (c staticConfigs) ReservedConcurrency(account, function string) (int, bool) {
	n, ok := c.reserved[function]
	return n, ok
}

func ok(payload string) (*frontend.InvokeOutput, error) {
	return &frontend.InvokeOutput{ExecutedVersion: "$LATEST", Payload: []byte(payload)}, nil
}

func unhandled() (*frontend.InvokeOutput, error) {
	return &frontend.InvokeOutput{ExecutedVersion: "$LATEST", FunctionError: "Unhandled",
		Payload: []byte(`{"errorMessage":"boom","errorType":"Error"}`)}, nil
}

type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func open(t *testing.T, dir string, inv Invoker, cfgs ConfigSource, clk *clock) *Engine {
	t.Helper()
	cfg := Config{DataDir: dir, Invoker: inv, Configs: cfgs, RetryScale: 0.001, Lease: time.Second, NoSync: true}
	if clk != nil {
		cfg.Now = clk.now
	}
	e, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func enqueue(t *testing.T, e *Engine, fn, reqID, payload string) {
	t.Helper()
	if err := e.Enqueue(context.Background(), &frontend.AsyncEvent{RequestID: reqID, AccountID: acct, FunctionName: fn, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func intp(n int) *int { return &n }

func receiveOne(t *testing.T, e *Engine, queue string) Record {
	t.Helper()
	var msgs []QueueMessage
	waitFor(t, "a record on "+queue, 10*time.Second, func() bool {
		var err error
		msgs, err = e.ReceiveMessages(context.Background(), acct, queue, 10, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return len(msgs) > 0
	})
	if len(msgs) != 1 {
		t.Fatalf("got %d records, want 1", len(msgs))
	}
	var r Record
	if err := json.Unmarshal([]byte(msgs[0].Body), &r); err != nil {
		t.Fatalf("record %q: %v", msgs[0].Body, err)
	}
	return r
}

func TestAcceptThenRun(t *testing.T) {
	inv := &scripted{fn: func(in *frontend.InvokeInput, n int) (*frontend.InvokeOutput, error) { return ok(`"ok"`) }}
	e := open(t, t.TempDir(), inv, nil, nil)
	enqueue(t, e, "f", "req-1", `{"a":1}`)
	waitFor(t, "run", 10*time.Second, func() bool { return e.stats.Succeeded.Load() == 1 })
	in := inv.inputsFor("f")[0]
	if in.RequestID != "req-1" || in.AccountID != acct || string(in.Payload) != `{"a":1}` {
		t.Fatalf("invoke input %+v", in)
	}
	waitFor(t, "empty queue", 5*time.Second, func() bool { return e.Stats(context.Background()).QueueDepth == 0 })
}

func TestRetriesThenSuccess(t *testing.T) {
	inv := &scripted{fn: func(in *frontend.InvokeInput, n int) (*frontend.InvokeOutput, error) {
		if n <= 2 {
			return unhandled()
		}
		return ok(`"third time"`)
	}}
	e := open(t, t.TempDir(), inv, nil, nil)
	enqueue(t, e, "f", "req-r", `{}`)
	waitFor(t, "success", 10*time.Second, func() bool { return e.stats.Succeeded.Load() == 1 })
	ts := inv.times("f", "req-r")
	if len(ts) != 3 {
		t.Fatalf("%d invokes, want 3", len(ts))
	}
	// Lambda's 1 min and 2 min, scaled by 0.001.
	if d := ts[1].Sub(ts[0]); d < 55*time.Millisecond { // ms-granular not-before
		t.Errorf("first retry after %v, want ≥ 60ms", d)
	}
	if d := ts[2].Sub(ts[1]); d < 115*time.Millisecond {
		t.Errorf("second retry after %v, want ≥ 120ms", d)
	}
	if got := e.stats.Retries.Load(); got != 2 {
		t.Errorf("Retries = %d, want 2", got)
	}
}

func TestAlwaysFailsOnFailureRecord(t *testing.T) {
	cases := []struct {
		name    string
		retries *int
		invokes int
	}{
		{"default retries", nil, 3},
		{"no retries", intp(0), 1},
		{"one retry", intp(1), 2},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := fmt.Sprintf("failures%d", i)
			cfgs := staticConfigs{m: map[string]controlplane.EventInvokeConfig{
				"f:$LATEST": {MaximumRetryAttempts: tc.retries, OnFailure: "arn:aws:sqs:us-east-1:" + acct + ":" + q},
			}}
			inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return unhandled() }}
			e := open(t, t.TempDir(), inv, cfgs, nil)
			if _, err := e.CreateQueue(context.Background(), acct, q); err != nil {
				t.Fatal(err)
			}
			enqueue(t, e, "f", "req-f", `{"order":7}`)
			r := receiveOne(t, e, q)
			if r.Version != "1.0" {
				t.Errorf("version %q", r.Version)
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", r.Timestamp); err != nil {
				t.Errorf("timestamp %q: %v", r.Timestamp, err)
			}
			want := RecordRequest{RequestID: "req-f", FunctionArn: "arn:aws:lambda:us-east-1:" + acct + ":function:f:$LATEST",
				Condition: "RetriesExhausted", ApproximateInvokeCount: tc.invokes}
			if r.RequestContext != want {
				t.Errorf("requestContext %+v, want %+v", r.RequestContext, want)
			}
			if string(r.RequestPayload) != `{"order":7}` {
				t.Errorf("requestPayload %s", r.RequestPayload)
			}
			if r.ResponseContext == nil || *r.ResponseContext != (RecordResponse{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}) {
				t.Errorf("responseContext %+v", r.ResponseContext)
			}
			if r.ResponsePayload == nil || string(*r.ResponsePayload) != `{"errorMessage":"boom","errorType":"Error"}` {
				t.Errorf("responsePayload %v", r.ResponsePayload)
			}
			if n := inv.count("f", "req-f"); n != tc.invokes {
				t.Errorf("%d invokes, want %d", n, tc.invokes)
			}
		})
	}
}

func TestOnSuccessToFunction(t *testing.T) {
	cfgs := staticConfigs{m: map[string]controlplane.EventInvokeConfig{
		"f:$LATEST": {OnSuccess: "arn:aws:lambda:us-east-1:" + acct + ":function:sink"},
	}}
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return ok(`{"done":true}`) }}
	e := open(t, t.TempDir(), inv, cfgs, nil)
	enqueue(t, e, "f", "req-s", `{"x":1}`)
	waitFor(t, "sink run", 10*time.Second, func() bool { return len(inv.inputsFor("sink")) == 1 })
	var r Record
	if err := json.Unmarshal(inv.inputsFor("sink")[0].Payload, &r); err != nil {
		t.Fatal(err)
	}
	if r.RequestContext.Condition != "Success" || r.RequestContext.ApproximateInvokeCount != 1 ||
		string(*r.ResponsePayload) != `{"done":true}` || r.ResponseContext.FunctionError != "" {
		t.Fatalf("record %+v", r)
	}
}

func TestThrottledUntilEventAgeExpires(t *testing.T) {
	clk := &clock{}
	cfgs := staticConfigs{m: map[string]controlplane.EventInvokeConfig{
		"f:$LATEST": {MaximumEventAgeInSeconds: intp(60), OnFailure: "arn:aws:sqs:us-east-1:" + acct + ":aged"},
	}}
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) {
		return nil, errdefs.Throttled("ConcurrentInvocationLimitExceeded", 1, "Rate Exceeded.")
	}}
	e := open(t, t.TempDir(), inv, cfgs, clk)
	if _, err := e.CreateQueue(context.Background(), acct, "aged"); err != nil {
		t.Fatal(err)
	}
	enqueue(t, e, "f", "req-a", `{}`)
	waitFor(t, "two throttled attempts", 10*time.Second, func() bool { return inv.count("f", "req-a") >= 2 })
	clk.offset.Store(int64(2 * time.Minute))
	r := receiveOne(t, e, "aged")
	if r.RequestContext.Condition != "EventAgeExceeded" || r.RequestContext.ApproximateInvokeCount != 0 || r.ResponseContext != nil {
		t.Fatalf("record %+v", r)
	}
	if e.stats.Duplicates.Load() != 0 {
		t.Errorf("throttled retries counted as duplicates: %d", e.stats.Duplicates.Load())
	}
}

func TestReservedZeroGoesToFailure(t *testing.T) {
	cfgs := staticConfigs{
		m:        map[string]controlplane.EventInvokeConfig{"f:$LATEST": {OnFailure: "arn:aws:sqs:us-east-1:" + acct + ":r0"}},
		reserved: map[string]int{"f": 0},
	}
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return ok(`1`) }}
	e := open(t, t.TempDir(), inv, cfgs, nil)
	if _, err := e.CreateQueue(context.Background(), acct, "r0"); err != nil {
		t.Fatal(err)
	}
	enqueue(t, e, "f", "req-0", `{}`)
	r := receiveOne(t, e, "r0")
	if r.RequestContext.ApproximateInvokeCount != 0 || inv.count("f", "req-0") != 0 {
		t.Fatalf("record %+v, invokes %d", r, inv.count("f", "req-0"))
	}
}

// An event accepted before a shutdown runs after a restart on the same store.
func TestEventsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	release := make(chan struct{})
	block := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) {
		<-release
		return ok(`1`)
	}}
	e1, err := Open(context.Background(), Config{DataDir: dir, Invoker: block, RetryScale: 0.001, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		enqueue(t, e1, "f", fmt.Sprintf("req-%d", i), `{}`)
	}
	close(release)
	e1.Close()
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return ok(`1`) }}
	e2 := open(t, dir, inv, nil, nil)
	waitFor(t, "all events", 15*time.Second, func() bool {
		for i := range n {
			if block.count("f", fmt.Sprintf("req-%d", i))+inv.count("f", fmt.Sprintf("req-%d", i)) == 0 {
				return false
			}
		}
		return e2.Stats(context.Background()).QueueDepth == 0
	})
}

func TestQueues(t *testing.T) {
	e := open(t, t.TempDir(), &scripted{}, nil, nil)
	ctx := context.Background()
	if _, err := e.CreateQueue(ctx, acct, "bad name"); err == nil {
		t.Fatal("bad queue name accepted")
	}
	q, err := e.CreateQueue(ctx, acct, "q1")
	if err != nil || q.QueueArn != "arn:aws:sqs:us-east-1:"+acct+":q1" {
		t.Fatalf("%+v %v", q, err)
	}
	if _, err := e.SendMessage(ctx, acct, "nope", []byte("x")); err == nil {
		t.Fatal("send to a missing queue succeeded")
	}
	for i := range 3 {
		if _, err := e.SendMessage(ctx, acct, "q1", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	qs, err := e.ListQueues(ctx, acct)
	if err != nil || len(qs) != 1 || qs[0].Messages != 3 {
		t.Fatalf("%+v %v", qs, err)
	}
	msgs, err := e.ReceiveMessages(ctx, acct, "q1", 10, 0)
	if err != nil || len(msgs) != 3 || msgs[0].Body != "0" {
		t.Fatalf("%+v %v", msgs, err)
	}
	if err := e.DeleteQueue(ctx, acct, "q1"); err != nil {
		t.Fatal(err)
	}
	if qs, _ := e.ListQueues(ctx, acct); len(qs) != 0 {
		t.Fatalf("queues after delete: %+v", qs)
	}
}
