package acceptance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

// kiln sends one SigV4-signed request to a Kiln route and decodes the reply.
func (s *server) kiln(t *testing.T, method, path string, body []byte, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, s.endpoint+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.akid, SecretAccessKey: s.secret}
	if err := v4.NewSigner().SignHTTP(ctx(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// awaitSuccesses reads queue until every accepted event's Success record
// arrived or wait ran out, and counts the records per request id. A record
// of an event never accepted, or a failure record, fails the test.
func (s *server) awaitSuccesses(t *testing.T, queue string, accepted map[string]bool, wait time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for deadline := time.Now().Add(wait); len(seen) < len(accepted) && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range s.receive(t, queue) {
			if !accepted[r.RequestContext.RequestID] {
				t.Fatalf("record for an event never accepted: %+v", r)
			}
			if r.RequestContext.Condition != "Success" {
				t.Errorf("event failed: %+v %s", r, r.ResponsePayload)
			}
			seen[r.RequestContext.RequestID]++
		}
	}
	return seen
}

type asyncRecord struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext *struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

func (s *server) receive(t *testing.T, queue string) []asyncRecord {
	t.Helper()
	var out struct{ Messages []struct{ Body string } }
	if code := s.kiln(t, "GET", "/2026-01-01/kiln/queues/"+queue+"/messages?MaxNumberOfMessages=1000", nil, &out); code != 200 {
		t.Fatalf("receive %s: %d", queue, code)
	}
	var recs []asyncRecord
	for _, m := range out.Messages {
		var r asyncRecord
		if err := json.Unmarshal([]byte(m.Body), &r); err != nil {
			t.Fatalf("record %q: %v", m.Body, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func (s *server) createQueue(t *testing.T, name string) string {
	t.Helper()
	var q struct{ QueueArn string }
	if code := s.kiln(t, "POST", "/2026-01-01/kiln/queues", []byte(`{"QueueName":"`+name+`"}`), &q); code != 201 {
		t.Fatalf("create queue %s: %d", name, code)
	}
	return q.QueueArn
}

func invokeEvent(t *testing.T, c *lambda.Client, name string, payload []byte) (string, error) {
	t.Helper()
	out, err := c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: payload, InvocationType: types.InvocationTypeEvent})
	if err != nil {
		return "", err
	}
	if out.StatusCode != 202 {
		t.Fatalf("Event invoke status %d", out.StatusCode)
	}
	id, _ := awsmw.GetRequestIDMetadata(out.ResultMetadata)
	return id, nil
}

func setDestinations(t *testing.T, c *lambda.Client, fn string, retries int32, onSuccess, onFailure string) {
	t.Helper()
	dc := &types.DestinationConfig{}
	if onSuccess != "" {
		dc.OnSuccess = &types.OnSuccess{Destination: aws.String(onSuccess)}
	}
	if onFailure != "" {
		dc.OnFailure = &types.OnFailure{Destination: aws.String(onFailure)}
	}
	if _, err := c.PutFunctionEventInvokeConfig(ctx(), &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String(fn), MaximumRetryAttempts: aws.Int32(retries), DestinationConfig: dc,
	}); err != nil {
		t.Fatal(err)
	}
}

func python() fixture { return fixtures()[1] }

// TestAsyncInvoke covers the accept path's errors, the legacy InvokeAsync
// route, a function error and a timeout reaching the failure destination.
func TestAsyncInvoke(t *testing.T) {
	s := startServer(t, "", "--async-retry-scale", "0.01")
	c := s.client(t)
	createFunction(t, c, "apy", python())
	createFunction(t, c, "aslow", python(), func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(1) })
	okArn := s.createQueue(t, "ok")
	failArn := s.createQueue(t, "fail")
	setDestinations(t, c, "apy", 1, okArn, failArn)
	setDestinations(t, c, "aslow", 0, "", failArn)

	var ae smithy.APIError
	if _, err := invokeEvent(t, c, "nope", []byte(`{}`)); !errors.As(err, &ae) || ae.ErrorCode() != "ResourceNotFoundException" {
		t.Fatalf("unknown function: %v", err)
	}
	big := []byte(`"` + strings.Repeat("x", 1048576) + `"`)
	_, err := invokeEvent(t, c, "apy", big)
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestEntityTooLargeException" ||
		ae.ErrorMessage() != fmt.Sprintf("%d byte payload is too large for the Event invocation type (limit 1048576 bytes)", len(big)) {
		t.Fatalf("1 MB + 2: %v", err)
	}

	okID, err := invokeEvent(t, c, "apy", []byte(`{"action":"echo","n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	errID, err := invokeEvent(t, c, "apy", []byte(`{"action":"error","msg":"always"}`))
	if err != nil {
		t.Fatal(err)
	}
	slowID, err := invokeEvent(t, c, "aslow", []byte(`{"action":"sleep","ms":3000}`))
	if err != nil {
		t.Fatal(err)
	}
	var legacy struct{ Status int }
	if code := s.kiln(t, "POST", "/2014-11-13/functions/apy/invoke-async", []byte(`{"action":"echo","legacy":true}`), &legacy); code != 202 || legacy.Status != 202 {
		t.Fatalf("InvokeAsync: %d %+v", code, legacy)
	}

	got := map[string]asyncRecord{}
	deadline := time.Now().Add(40 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		for _, q := range []string{"ok", "fail"} {
			for _, r := range s.receive(t, q) {
				key := r.RequestContext.RequestID
				if key != okID && key != errID && key != slowID {
					key = "legacy"
				}
				got[key] = r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) != 4 {
		t.Fatalf("records: %d of 4: %+v", len(got), got)
	}
	if r := got[okID]; r.RequestContext.Condition != "Success" || r.ResponseContext.FunctionError != "" || r.RequestContext.ApproximateInvokeCount != 1 {
		t.Errorf("success record %+v", r)
	}
	r := got[errID]
	if r.RequestContext.Condition != "RetriesExhausted" || r.RequestContext.ApproximateInvokeCount != 2 ||
		r.RequestContext.FunctionArn != "arn:aws:lambda:us-east-1:"+strings.Split(okArn, ":")[4]+":function:apy:$LATEST" ||
		r.ResponseContext == nil || r.ResponseContext.FunctionError != "Unhandled" || r.ResponseContext.StatusCode != 200 ||
		r.ResponseContext.ExecutedVersion != "$LATEST" || !strings.Contains(string(r.ResponsePayload), "boom: always") ||
		string(r.RequestPayload) != `{"action":"error","msg":"always"}` {
		t.Errorf("failure record %+v %s", r, r.ResponsePayload)
	}
	if r := got[slowID]; r.RequestContext.Condition != "RetriesExhausted" || !strings.Contains(string(r.ResponsePayload), "Sandbox.Timedout") {
		t.Errorf("timeout record %+v %s", r, r.ResponsePayload)
	}
	if r := got["legacy"]; r.RequestContext.Condition != "Success" || !strings.Contains(string(r.RequestPayload), "legacy") {
		t.Errorf("legacy record %+v", r)
	}
	var m map[string]any
	if code := s.kiln(t, "GET", "/2026-01-01/kiln/async/metrics", nil, &m); code != 200 || m["Accepted"].(float64) != 4 {
		t.Errorf("metrics %d %v", code, m)
	}

	// A queue feeding the function through an event-source mapping drains.
	srcArn := s.createQueue(t, "src")
	if _, err := c.CreateEventSourceMapping(ctx(), &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("apy"), EventSourceArn: aws.String(srcArn), BatchSize: aws.Int32(5),
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		s.kiln(t, "POST", "/2026-01-01/kiln/queues/src/messages", []byte(fmt.Sprintf(`{"n":%d}`, i)), nil)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		var qs struct {
			Queues []struct {
				QueueName string
				Messages  int `json:"ApproximateNumberOfMessages"`
			}
		}
		s.kiln(t, "GET", "/2026-01-01/kiln/queues", nil, &qs)
		var mm map[string]any
		s.kiln(t, "GET", "/2026-01-01/kiln/async/metrics", nil, &mm)
		left := -1
		for _, q := range qs.Queues {
			if q.QueueName == "src" {
				left = q.Messages
			}
		}
		if left == 0 && mm["MappingBatches"].(float64) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mapped queue did not drain: %d left, metrics %v", left, mm)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The kiln queue verbs on the same server.
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "create", "cliq"}, ":cliq"},
		{[]string{"queue", "send", "cliq", `{"hello":"queue"}`}, ""},
		{[]string{"queue", "ls"}, "cliq"},
		{[]string{"queue", "receive", "cliq", "--wait", "1"}, `{"hello":"queue"}`},
		{[]string{"queue", "rm", "cliq"}, ""},
	} {
		out, err := runKiln(t, s, step.args...)
		if err != nil || !strings.Contains(out, step.want) {
			t.Fatalf("kiln %v: %v\n%s", step.args, err, out)
		}
	}
	if out, err := runKiln(t, s, "queue", "receive", "cliq"); err == nil {
		t.Fatalf("receive from a deleted queue succeeded: %s", out)
	}
}

// TestAsyncSigkill kills the server with events queued and running, restarts
// it, and checks that every accepted event ran (reached its destination).
func TestAsyncSigkill(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--async-retry-scale", "0.01", "--async-lease", "2s"}
	s := startServer(t, dir, args...)
	c := s.client(t)
	createFunction(t, c, "akill", python())
	okArn := s.createQueue(t, "done")
	setDestinations(t, c, "akill", 2, okArn, okArn)

	const n = 80
	accepted := map[string]bool{}
	for i := range n {
		id, err := invokeEvent(t, c, "akill", []byte(fmt.Sprintf(`{"action":"sleep","ms":150,"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		accepted[id] = true
	}
	// Let some finish and some start, then crash.
	time.Sleep(400 * time.Millisecond)
	s.kill()

	s2 := startServer(t, dir, args...)
	seen := s2.awaitSuccesses(t, "done", accepted, 60*time.Second)
	if len(seen) != n {
		t.Fatalf("%d of %d accepted events reached a destination after SIGKILL", len(seen), n)
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	var m map[string]any
	s2.kiln(t, "GET", "/2026-01-01/kiln/async/metrics", nil, &m)
	t.Logf("after SIGKILL: %d events, %d duplicate records, metrics %v", n, dups, m)
	// Events leased when the server died are redelivered and counted.
	if d, _ := m["Duplicates"].(float64); d < 1 {
		t.Errorf("no redelivery counted after SIGKILL with events in flight: %v", m)
	}
}
