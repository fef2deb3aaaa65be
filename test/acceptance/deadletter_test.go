package acceptance

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// receiveBodies takes the raw message bodies on a Kiln queue.
func (s *server) receiveBodies(t *testing.T, queue string) []string {
	t.Helper()
	var out struct{ Messages []struct{ Body string } }
	if code := s.kiln(t, "GET", "/2026-01-01/kiln/queues/"+queue+"/messages?MaxNumberOfMessages=1000", nil, &out); code != 200 {
		t.Fatalf("receive %s: %d", queue, code)
	}
	var bodies []string
	for _, m := range out.Messages {
		bodies = append(bodies, m.Body)
	}
	return bodies
}

// TestAsyncDeadLetterAndDelete covers DeadLetterConfig end to end (the
// original event reaches the DLQ, the record reaches OnFailure) and what
// deleting a function does to its async settings and queued events.
func TestAsyncDeadLetterAndDelete(t *testing.T) {
	s := startServer(t, "", "--async-retry-scale", "0.01")
	c := s.client(t)
	dlqArn := s.createQueue(t, "dlq")
	failArn := s.createQueue(t, "dlfail")

	var ae smithy.APIError
	_, err := c.CreateFunction(ctx(), &lambda.CreateFunctionInput{
		FunctionName: aws.String("dlbad"), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: python().zip(t)},
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(strings.Replace(dlqArn, ":sqs:", ":sns:", 1))},
	})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" {
		t.Fatalf("SNS dead-letter target: %v, want InvalidParameterValueException", err)
	}
	createFunction(t, c, "dlfn", python(), func(in *lambda.CreateFunctionInput) {
		in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(dlqArn)}
	})
	g, err := c.GetFunctionConfiguration(ctx(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("dlfn")})
	if err != nil || g.DeadLetterConfig == nil || aws.ToString(g.DeadLetterConfig.TargetArn) != dlqArn {
		t.Fatalf("GetFunctionConfiguration DeadLetterConfig: %+v %v", g, err)
	}
	setDestinations(t, c, "dlfn", 0, "", failArn)

	payload := `{"action":"error","msg":"to the dlq"}`
	id, err := invokeEvent(t, c, "dlfn", []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	var recs []asyncRecord
	for deadline := time.Now().Add(30 * time.Second); (len(bodies) == 0 || len(recs) == 0) && time.Now().Before(deadline); {
		bodies = append(bodies, s.receiveBodies(t, "dlq")...)
		recs = append(recs, s.receive(t, "dlfail")...)
		time.Sleep(100 * time.Millisecond)
	}
	if len(bodies) != 1 || bodies[0] != payload {
		t.Fatalf("dead-letter queue got %q, want the original event %q", bodies, payload)
	}
	if len(recs) != 1 || recs[0].RequestContext.RequestID != id || recs[0].RequestContext.Condition != "RetriesExhausted" {
		t.Fatalf("on-failure records %+v", recs)
	}

	// Delete: the event invoke config goes with the function; its mapping
	// stays (as on Lambda).
	srcArn := s.createQueue(t, "dlsrc")
	if _, err := c.CreateEventSourceMapping(ctx(), &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("dlfn"), EventSourceArn: aws.String(srcArn),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteFunction(ctx(), &lambda.DeleteFunctionInput{FunctionName: aws.String("dlfn")}); err != nil {
		t.Fatal(err)
	}
	createFunction(t, c, "dlfn", python())
	if _, err := c.GetFunctionEventInvokeConfig(ctx(), &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("dlfn")}); !errors.As(err, &ae) || ae.ErrorCode() != "ResourceNotFoundException" {
		t.Fatalf("re-created function inherited an event invoke config: %v", err)
	}
	if l, err := c.ListEventSourceMappings(ctx(), &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("dlfn")}); err != nil || len(l.EventSourceMappings) != 1 {
		t.Fatalf("the mapping did not survive its function's deletion: %+v %v", l, err)
	}
	if g, err := c.GetFunctionConfiguration(ctx(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("dlfn")}); err != nil || g.DeadLetterConfig != nil && g.DeadLetterConfig.TargetArn != nil {
		t.Fatalf("re-created function inherited a DLQ: %+v %v", g, err)
	}

	// Events still queued when their function is deleted fail once, without
	// retries: with reserved concurrency 1 and a slow handler, most of them
	// wait in the queue when the function goes away.
	createFunction(t, c, "dlgone", python())
	if _, err := c.PutFunctionConcurrency(ctx(), &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("dlgone"), ReservedConcurrentExecutions: aws.Int32(1),
	}); err != nil {
		t.Fatal(err)
	}
	setDestinations(t, c, "dlgone", 2, "", failArn)
	for range 5 {
		if _, err := invokeEvent(t, c, "dlgone", []byte(`{"action":"sleep","ms":1500}`)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := c.DeleteFunction(ctx(), &lambda.DeleteFunctionInput{FunctionName: aws.String("dlgone")}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; {
		if code := s.kiln(t, "GET", "/2026-01-01/kiln/async/metrics", nil, &m); code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		if m["FunctionGone"].(float64) >= 1 && m["QueueDepth"].(float64) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued events of a deleted function did not settle: %v", m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The deleted function's config went with it, so nothing reaches its
	// old failure destination.
	if recs := s.receive(t, "dlfail"); len(recs) != 0 {
		t.Fatalf("records of a deleted function's events: %+v", recs)
	}
}
