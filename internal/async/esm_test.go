package async

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/frontend"
)

type staticMappings []controlplane.EventSourceMapping

func (s staticMappings) EventSourceMappings() []controlplane.EventSourceMapping { return s }

type sqsEvent struct {
	Records []sqsRecord `json:"Records"`
}

func TestQueueMappingPartialBatch(t *testing.T) {
	cases := []struct {
		name    string
		partial bool
		// respond decides the function's answer to one batch.
		respond func(ev sqsEvent) (*frontend.InvokeOutput, error)
		// want is how often each body is delivered.
		want func(body string) int
	}{
		{
			name:    "ReportBatchItemFailures re-delivers only the failed item",
			partial: true,
			respond: func(ev sqsEvent) (*frontend.InvokeOutput, error) {
				var fails []map[string]string
				for _, r := range ev.Records {
					if r.Body == "bad" && r.Attributes["ApproximateReceiveCount"] == "1" {
						fails = append(fails, map[string]string{"itemIdentifier": r.MessageID})
					}
				}
				b, _ := json.Marshal(map[string]any{"batchItemFailures": fails})
				return ok(string(b))
			},
			want: func(body string) int {
				if body == "bad" {
					return 2
				}
				return 1
			},
		},
		{
			name: "a function error re-delivers the whole batch",
			respond: func(ev sqsEvent) (*frontend.InvokeOutput, error) {
				for _, r := range ev.Records {
					if r.Body == "bad" && r.Attributes["ApproximateReceiveCount"] == "1" {
						return unhandled()
					}
				}
				return ok(`null`)
			},
			want: nil, // every record of the failed batch comes back: ≥1, bad exactly 2
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := fmt.Sprintf("src%d", i)
			var mu sync.Mutex
			seen := map[string]int{}
			var batches [][]sqsRecord
			inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
				var ev sqsEvent
				if err := json.Unmarshal(in.Payload, &ev); err != nil {
					t.Errorf("event: %v", err)
				}
				mu.Lock()
				for _, r := range ev.Records {
					seen[r.Body]++
				}
				batches = append(batches, ev.Records)
				mu.Unlock()
				return tc.respond(ev)
			}}
			m := controlplane.EventSourceMapping{
				UUID: "m1", Account: acct, EventSourceArn: "arn:aws:sqs:us-east-1:" + acct + ":" + q,
				FunctionName: "consumer", BatchSize: 10, BatchingWindowSeconds: 1, Enabled: true,
				ReportBatchItemFailures: tc.partial, MaximumConcurrency: 2,
			}
			cfg := Config{DataDir: t.TempDir(), Invoker: inv, Mappings: staticMappings{m}, RetryScale: 0.001,
				Lease: time.Second, NoSync: true, MappingSync: 50 * time.Millisecond}
			e, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ctx := context.Background()
			if _, err := e.CreateQueue(ctx, acct, q); err != nil {
				t.Fatal(err)
			}
			bodies := []string{"bad"}
			for j := range 24 {
				bodies = append(bodies, fmt.Sprintf("m%d", j))
			}
			for _, b := range bodies {
				if _, err := e.SendMessage(ctx, acct, q, []byte(b)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "all messages processed", 15*time.Second, func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, b := range bodies {
					if seen[b] == 0 || (b == "bad" && seen[b] < 2) {
						return false
					}
				}
				qs, _ := e.ListQueues(ctx, acct)
				return len(qs) == 1 && qs[0].Messages == 0
			})
			time.Sleep(100 * time.Millisecond) // nothing more may arrive
			mu.Lock()
			defer mu.Unlock()
			if seen["bad"] != 2 {
				t.Errorf("bad delivered %d times, want 2", seen["bad"])
			}
			if tc.want != nil {
				for _, b := range bodies {
					if seen[b] != tc.want(b) {
						t.Errorf("%s delivered %d times, want %d", b, seen[b], tc.want(b))
					}
				}
			}
			r := batches[0][0]
			if r.EventSource != "aws:sqs" || r.EventSourceARN != m.EventSourceArn || r.AWSRegion != "us-east-1" ||
				r.MD5OfBody == "" || r.ReceiptHandle == "" || r.Attributes["SentTimestamp"] == "" {
				t.Errorf("record shape %+v", r)
			}
			for _, b := range batches {
				if len(b) > 10 {
					t.Errorf("batch of %d > BatchSize 10", len(b))
				}
			}
		})
	}
}

func TestBatchItemFailures(t *testing.T) {
	recs := []sqsRecord{{MessageID: "1"}, {MessageID: "2"}}
	cases := []struct {
		payload string
		ids     []string
		ok      bool
	}{
		{``, nil, true},
		{`null`, nil, true},
		{`{"batchItemFailures":[]}`, nil, true},
		{`{"batchItemFailures":[{"itemIdentifier":"2"}]}`, []string{"2"}, true},
		{`{"batchItemFailures":[{"itemIdentifier":"9"}]}`, nil, false},
		{`{"batchItemFailures":[{}]}`, nil, false},
		{`"done"`, nil, true},
	}
	for _, tc := range cases {
		ids, ok := batchItemFailures([]byte(tc.payload), recs)
		if ok != tc.ok || fmt.Sprint(ids) != fmt.Sprint(tc.ids) {
			t.Errorf("%s → %v %v, want %v %v", tc.payload, ids, ok, tc.ids, tc.ok)
		}
	}
}
