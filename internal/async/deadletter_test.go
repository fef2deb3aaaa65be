package async

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// dlqConfigs adds DeadLetterConfig to the static event invoke configs.
type dlqConfigs struct {
	staticConfigs
	dlq map[string]string // function → queue ARN
}

func (c dlqConfigs) DeadLetterTarget(account, function, qualifier string) (string, bool) {
	arn, ok := c.dlq[function]
	return arn, ok
}

func queueArnOf(name string) string { return "arn:aws:sqs:us-east-1:" + acct + ":" + name }

// receiveBody waits for exactly one message on queue and returns its body.
func receiveBody(t *testing.T, e *Engine, queue string) string {
	t.Helper()
	var msgs []QueueMessage
	waitFor(t, "a message on "+queue, 10*time.Second, func() bool {
		var err error
		msgs, err = e.ReceiveMessages(context.Background(), acct, queue, 10, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return len(msgs) > 0
	})
	if len(msgs) != 1 {
		t.Fatalf("got %d messages on %s, want 1", len(msgs), queue)
	}
	return msgs[0].Body
}

func TestDeadLetterGetsOriginalEvent(t *testing.T) {
	failing := func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return unhandled() }
	throttled := func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) {
		return nil, errdefs.Throttled("ConcurrentInvocationLimitExceeded", 1, "Rate Exceeded.")
	}
	cases := []struct {
		name      string
		eic       *controlplane.EventInvokeConfig
		fn        func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error)
		age       bool // push the clock past the event age
		condition string
		invokes   int
	}{
		{name: "retries exhausted, dlq only", fn: failing, invokes: 3},
		{name: "no retries, dlq and on-failure", fn: failing, invokes: 1, condition: "RetriesExhausted",
			eic: &controlplane.EventInvokeConfig{MaximumRetryAttempts: intp(0), OnFailure: queueArnOf("onfail")}},
		{name: "event age exceeded", fn: throttled, age: true, condition: "EventAgeExceeded",
			eic: &controlplane.EventInvokeConfig{MaximumEventAgeInSeconds: intp(60), OnFailure: queueArnOf("onfail")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfgs := dlqConfigs{staticConfigs: staticConfigs{m: map[string]controlplane.EventInvokeConfig{}}, dlq: map[string]string{"f": queueArnOf("dlq")}}
			if tc.eic != nil {
				cfgs.m["f:$LATEST"] = *tc.eic
			}
			clk := &clock{}
			inv := &scripted{fn: tc.fn}
			e := open(t, t.TempDir(), inv, cfgs, clk)
			for _, q := range []string{"dlq", "onfail"} {
				if _, err := e.CreateQueue(context.Background(), acct, q); err != nil {
					t.Fatal(err)
				}
			}
			payload := `{"order":42,"items":["a","b"]}`
			enqueue(t, e, "f", "req-d", payload)
			if tc.age {
				waitFor(t, "a throttled attempt", 10*time.Second, func() bool { return inv.count("f", "req-d") >= 1 })
				clk.offset.Store(int64(2 * time.Minute))
			}
			if got := receiveBody(t, e, "dlq"); got != payload {
				t.Errorf("dead-letter body %q, want the original event %q", got, payload)
			}
			if tc.condition != "" {
				r := receiveOne(t, e, "onfail")
				if r.RequestContext.Condition != tc.condition || string(r.RequestPayload) != payload {
					t.Errorf("on-failure record %+v", r)
				}
			}
			if !tc.age {
				if n := inv.count("f", "req-d"); n != tc.invokes {
					t.Errorf("%d invokes, want %d", n, tc.invokes)
				}
			}
			if n := e.stats.DeadLetterDeliveries.Load(); n != 1 {
				t.Errorf("DeadLetterDeliveries = %d, want 1", n)
			}
			if n := e.stats.Dropped.Load(); n != 0 {
				t.Errorf("Dropped = %d, want 0", n)
			}
		})
	}
}

// A dead-letter queue that does not exist drops the event (Lambda counts a
// dead-letter error) instead of holding it forever.
func TestDeadLetterQueueMissing(t *testing.T) {
	cfgs := dlqConfigs{
		staticConfigs: staticConfigs{m: map[string]controlplane.EventInvokeConfig{"f:$LATEST": {MaximumRetryAttempts: intp(0)}}},
		dlq:           map[string]string{"f": queueArnOf("nosuchqueue")},
	}
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return unhandled() }}
	e := open(t, t.TempDir(), inv, cfgs, nil)
	enqueue(t, e, "f", "req-m", `{}`)
	waitFor(t, "a dead-letter failure", 10*time.Second, func() bool { return e.stats.DeadLetterFailures.Load() == 1 })
	waitFor(t, "the event acked", 10*time.Second, func() bool { return e.Stats(context.Background()).QueueDepth == 0 })
	if n := inv.count("f", "req-m"); n != 1 {
		t.Errorf("%d invokes, want 1", n)
	}
}

// An event whose function was deleted fails at once: to its failure
// destination if one is still configured, otherwise it is dropped; it is
// never retried.
func TestFunctionGoneIsFinal(t *testing.T) {
	gone := func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		return nil, errdefs.ResourceNotFound("Function not found: arn:aws:lambda:us-east-1:%s:function:%s", acct, in.FunctionRef)
	}
	t.Run("with destination", func(t *testing.T) {
		cfgs := dlqConfigs{
			staticConfigs: staticConfigs{m: map[string]controlplane.EventInvokeConfig{"f:$LATEST": {OnFailure: queueArnOf("gone")}}},
			dlq:           map[string]string{"f": queueArnOf("gonedlq")},
		}
		inv := &scripted{fn: gone}
		e := open(t, t.TempDir(), inv, cfgs, nil)
		for _, q := range []string{"gone", "gonedlq"} {
			if _, err := e.CreateQueue(context.Background(), acct, q); err != nil {
				t.Fatal(err)
			}
		}
		enqueue(t, e, "f", "req-g", `{"k":1}`)
		r := receiveOne(t, e, "gone")
		if r.RequestContext.RequestID != "req-g" || r.ResponseContext != nil || string(r.RequestPayload) != `{"k":1}` {
			t.Errorf("record %+v", r)
		}
		if got := receiveBody(t, e, "gonedlq"); got != `{"k":1}` {
			t.Errorf("dead-letter body %q", got)
		}
		if n := inv.count("f", "req-g"); n != 1 {
			t.Errorf("%d invokes, want 1 (no retry)", n)
		}
	})
	t.Run("without destination", func(t *testing.T) {
		inv := &scripted{fn: gone}
		e := open(t, t.TempDir(), inv, staticConfigs{}, nil)
		enqueue(t, e, "f", "req-h", `{}`)
		waitFor(t, "the event dropped", 10*time.Second, func() bool { return e.stats.Dropped.Load() == 1 })
		waitFor(t, "the queue empty", 10*time.Second, func() bool { return e.Stats(context.Background()).QueueDepth == 0 })
		if n, g := inv.count("f", "req-h"), e.stats.FunctionGone.Load(); n != 1 || g != 1 {
			t.Errorf("%d invokes, FunctionGone %d; want 1 and 1", n, g)
		}
		if n := e.stats.SystemRetries.Load(); n != 0 {
			t.Errorf("SystemRetries = %d, want 0", n)
		}
	})
}
