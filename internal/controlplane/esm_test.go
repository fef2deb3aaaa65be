package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

func TestEventSourceMappingsSDK(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "f")); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	a, b := e.sdkClients(t)
	ctx := context.Background()
	src := "arn:aws:sqs:us-east-1:" + acctA + ":jobs"
	cr, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(src), BatchSize: aws.Int32(100),
		MaximumBatchingWindowInSeconds: aws.Int32(2),
		FunctionResponseTypes:          []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		ScalingConfig:                  &types.ScalingConfig{MaximumConcurrency: aws.Int32(3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *cr.State != "Creating" || *cr.BatchSize != 100 || *cr.FunctionArn != "arn:aws:lambda:us-east-1:"+acctA+":function:f" ||
		*cr.EventSourceArn != src || len(cr.FunctionResponseTypes) != 1 || *cr.ScalingConfig.MaximumConcurrency != 3 || cr.LastModified == nil {
		t.Fatalf("create reply %+v", cr)
	}
	ms := e.svc.EventSourceMappings()
	if len(ms) != 1 || !ms[0].Enabled || !ms[0].ReportBatchItemFailures || ms[0].BatchingWindowSeconds != 2 {
		t.Fatalf("mappings %+v", ms)
	}
	g, err := a.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: cr.UUID})
	if err != nil || *g.State != "Enabled" {
		t.Fatalf("get %+v %v", g, err)
	}
	up, err := a.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: cr.UUID, Enabled: aws.Bool(false), BatchSize: aws.Int32(5)})
	if err != nil || *up.BatchSize != 5 || *up.State != "Updating" {
		t.Fatalf("update %+v %v", up, err)
	}
	l, err := a.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("f")})
	if err != nil || len(l.EventSourceMappings) != 1 || *l.EventSourceMappings[0].State != "Disabled" {
		t.Fatalf("list %+v %v", l, err)
	}
	if l, _ := b.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{}); len(l.EventSourceMappings) != 0 {
		t.Fatalf("other account sees %d mappings", len(l.EventSourceMappings))
	}

	errCases := []struct {
		name string
		in   *lambda.CreateEventSourceMappingInput
		code string
	}{
		{"kinesis source", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("f"), EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:" + acctA + ":stream/s")}, "InvalidParameterValueException"},
		{"batch over 10 without window", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("f"), EventSourceArn: aws.String(src), BatchSize: aws.Int32(11)}, "InvalidParameterValueException"},
		{"batch too big", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("f"), EventSourceArn: aws.String(src), BatchSize: aws.Int32(10001), MaximumBatchingWindowInSeconds: aws.Int32(1)}, "ValidationException"},
		{"missing function", &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("nope"), EventSourceArn: aws.String(src)}, "ResourceNotFoundException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			var ae smithy.APIError
			if _, err := a.CreateEventSourceMapping(ctx, tc.in); !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
		})
	}
	if _, err := b.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: cr.UUID}); err == nil {
		t.Fatal("other account can read the mapping")
	}

	e.Close()
	e = newEnv(t, dir)
	defer e.Close()
	if ms := e.svc.EventSourceMappings(); len(ms) != 1 || ms[0].BatchSize != 5 || ms[0].Enabled {
		t.Fatalf("after restart %+v", ms)
	}
	if w := e.do(acctA, "DELETE", "/2015-03-31/event-source-mappings/"+*cr.UUID, nil); w.Code != http.StatusAccepted {
		t.Fatalf("delete %d %s", w.Code, w.Body)
	}
	if ms := e.svc.EventSourceMappings(); len(ms) != 0 {
		t.Fatalf("after delete %+v", ms)
	}
}

// streamSet stands in for package async's stream store (which imports this
// package, so the real one cannot be used here).
type streamSet map[string]bool

func (s streamSet) StreamExists(_ context.Context, account, name string) (bool, error) {
	return s[account+"/"+name], nil
}

func TestStreamEventSourceMappings(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	e.svc.SetStreams(streamSet{acctA + "/clicks": true, acctA + "/a.b": true})
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "f")); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	a, _ := e.sdkClients(t)
	ctx := context.Background()
	src := "arn:aws:kinesis:us-east-1:" + acctA + ":stream/clicks"
	queue := "arn:aws:sqs:us-east-1:" + acctA + ":jobs"
	fails := "arn:aws:sqs:us-east-1:" + acctA + ":fails"

	def, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(src), StartingPosition: types.EventSourcePositionTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	if *def.BatchSize != 100 || *def.MaximumBatchingWindowInSeconds != 0 || *def.ParallelizationFactor != 1 || *def.MaximumRetryAttempts != -1 ||
		*def.MaximumRecordAgeInSeconds != -1 || *def.BisectBatchOnFunctionError || def.StartingPosition != types.EventSourcePositionTrimHorizon ||
		def.DestinationConfig == nil || def.DestinationConfig.OnFailure == nil || def.DestinationConfig.OnFailure.Destination != nil ||
		*def.TumblingWindowInSeconds != 0 || def.ScalingConfig != nil {
		t.Fatalf("defaults %+v", def)
	}
	full, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String(src), StartingPosition: types.EventSourcePositionLatest,
		BatchSize: aws.Int32(500), ParallelizationFactor: aws.Int32(4), BisectBatchOnFunctionError: aws.Bool(true),
		MaximumRetryAttempts: aws.Int32(3), MaximumRecordAgeInSeconds: aws.Int32(120),
		DestinationConfig:     &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(fails)}},
		FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *full.BatchSize != 500 || *full.ParallelizationFactor != 4 || !*full.BisectBatchOnFunctionError || *full.MaximumRetryAttempts != 3 ||
		*full.MaximumRecordAgeInSeconds != 120 || *full.DestinationConfig.OnFailure.Destination != fails || len(full.FunctionResponseTypes) != 1 ||
		full.StartingPosition != types.EventSourcePositionLatest {
		t.Fatalf("full %+v", full)
	}
	ts := time.Unix(1_700_000_000, 500_000_000)
	at, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("f"), EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:" + acctA + ":stream/a.b"),
		StartingPosition: types.EventSourcePositionAtTimestamp, StartingPositionTimestamp: &ts,
	})
	if err != nil || at.StartingPositionTimestamp == nil || !at.StartingPositionTimestamp.Equal(ts) {
		t.Fatalf("AT_TIMESTAMP %+v %v", at, err)
	}
	// A queue mapping shows none of the stream fields.
	qm, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("f"), EventSourceArn: aws.String(queue)})
	if err != nil || qm.StartingPosition != "" || qm.ParallelizationFactor != nil || qm.MaximumRetryAttempts != nil || qm.DestinationConfig != nil || *qm.BatchSize != 10 {
		t.Fatalf("queue mapping %+v %v", qm, err)
	}

	errCases := []struct {
		name string
		in   *lambda.CreateEventSourceMappingInput
		code string
		msg  string
	}{
		{"no starting position", &lambda.CreateEventSourceMappingInput{}, "InvalidParameterValueException", "StartingPosition is required"},
		{"AT_TIMESTAMP without a timestamp", &lambda.CreateEventSourceMappingInput{StartingPosition: types.EventSourcePositionAtTimestamp}, "InvalidParameterValueException", "StartingPositionTimestamp"},
		{"timestamp without AT_TIMESTAMP", &lambda.CreateEventSourceMappingInput{StartingPosition: types.EventSourcePositionLatest, StartingPositionTimestamp: &ts}, "InvalidParameterValueException", "StartingPositionTimestamp"},
		{"bad starting position", &lambda.CreateEventSourceMappingInput{StartingPosition: "EARLIEST"}, "ValidationException", "startingPosition"},
		{"parallelization 11", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", ParallelizationFactor: aws.Int32(11)}, "ValidationException", "parallelizationFactor"},
		{"retries -2", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", MaximumRetryAttempts: aws.Int32(-2)}, "ValidationException", "maximumRetryAttempts"},
		{"retries 10001", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", MaximumRetryAttempts: aws.Int32(10001)}, "ValidationException", "maximumRetryAttempts"},
		{"record age 30", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", MaximumRecordAgeInSeconds: aws.Int32(30)}, "InvalidParameterValueException", "MaximumRecordAgeInSeconds"},
		{"record age too long", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", MaximumRecordAgeInSeconds: aws.Int32(604801)}, "ValidationException", "maximumRecordAgeInSeconds"},
		{"tumbling window", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", TumblingWindowInSeconds: aws.Int32(60)}, "InvalidParameterValueException", "TumblingWindowInSeconds"},
		{"scaling config", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(5)}}, "InvalidParameterValueException", "ScalingConfig"},
		{"on-success destination", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(fails)}}}, "InvalidParameterValueException", "OnSuccess"},
		{"other account's destination", &lambda.CreateEventSourceMappingInput{StartingPosition: "LATEST", DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:sqs:us-east-1:" + acctB + ":x")}}}, "InvalidParameterValueException", "destination"},
		{"missing stream", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:" + acctA + ":stream/nope"), StartingPosition: "LATEST"}, "InvalidParameterValueException", "Stream not found"},
		{"other account's stream", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String("arn:aws:kinesis:us-east-1:" + acctB + ":stream/clicks"), StartingPosition: "LATEST"}, "InvalidParameterValueException", "Unsupported event source"},
		{"starting position on a queue", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(queue), StartingPosition: "LATEST"}, "InvalidParameterValueException", "StartingPosition is not valid for SQS event sources."},
		{"bisect on a queue", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(queue), BisectBatchOnFunctionError: aws.Bool(true)}, "InvalidParameterValueException", "BisectBatchOnFunctionError is not valid for SQS"},
		{"retries on a queue", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(queue), MaximumRetryAttempts: aws.Int32(1)}, "InvalidParameterValueException", "MaximumRetryAttempts is not valid for SQS"},
		{"parallelization on a queue", &lambda.CreateEventSourceMappingInput{EventSourceArn: aws.String(queue), ParallelizationFactor: aws.Int32(2)}, "InvalidParameterValueException", "ParallelizationFactor is not valid for SQS"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.FunctionName = aws.String("f")
			if tc.in.EventSourceArn == nil {
				tc.in.EventSourceArn = aws.String(src)
			}
			var ae smithy.APIError
			if _, err := a.CreateEventSourceMapping(ctx, tc.in); !errors.As(err, &ae) || ae.ErrorCode() != tc.code || !strings.Contains(ae.ErrorMessage(), tc.msg) {
				t.Fatalf("err %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}

	// Update: 0 retries is stored as 0 (not the default) and survives a restart.
	up, err := a.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: full.UUID, MaximumRetryAttempts: aws.Int32(0),
		ParallelizationFactor: aws.Int32(2), BisectBatchOnFunctionError: aws.Bool(false),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("")}}})
	if err != nil || *up.MaximumRetryAttempts != 0 || *up.ParallelizationFactor != 2 || *up.BisectBatchOnFunctionError || up.DestinationConfig.OnFailure.Destination != nil {
		t.Fatalf("update %+v %v", up, err)
	}
	var ae smithy.APIError
	if _, err := a.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: qm.UUID, MaximumRetryAttempts: aws.Int32(1)}); !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" {
		t.Fatalf("retries on a queue mapping: %v", err)
	}
	e.Close()
	e = newEnv(t, dir)
	defer e.Close()
	a, _ = e.sdkClients(t)
	g, err := a.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: full.UUID})
	if err != nil || *g.MaximumRetryAttempts != 0 || *g.MaximumRecordAgeInSeconds != 120 || *g.ParallelizationFactor != 2 || g.StartingPosition != "LATEST" {
		t.Fatalf("after restart %+v %v", g, err)
	}
	g, err = a.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: def.UUID})
	if err != nil || *g.MaximumRetryAttempts != -1 || *g.MaximumRecordAgeInSeconds != -1 {
		t.Fatalf("defaults after restart %+v %v", g, err)
	}
}

// FuzzStreamMappingBody sends arbitrary CreateEventSourceMapping bodies
// through the real Handler: replies are AWS-shaped, and whatever is
// accepted obeys Lambda's stream rules (or carries no stream field at all
// for a queue source).
func FuzzStreamMappingBody(f *testing.F) {
	e := newEnv(f, f.TempDir())
	defer e.Close()
	e.svc.SetStreams(streamSet{acctA + "/s": true})
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(f, "fz")); w.Code != 201 {
		f.Fatal(w.Body)
	}
	src := `"arn:aws:kinesis:us-east-1:` + acctA + `:stream/s"`
	f.Add([]byte(`{"FunctionName":"fz","EventSourceArn":` + src + `,"StartingPosition":"LATEST","ParallelizationFactor":10,"MaximumRetryAttempts":-1}`))
	f.Add([]byte(`{"FunctionName":"fz","EventSourceArn":` + src + `,"StartingPosition":"AT_TIMESTAMP","StartingPositionTimestamp":1700000000.5}`))
	f.Add([]byte(`{"FunctionName":"fz","EventSourceArn":"arn:aws:sqs:us-east-1:` + acctA + `:q","BisectBatchOnFunctionError":false}`))
	f.Add([]byte(`{"FunctionName":"fz","EventSourceArn":` + src + `,"StartingPosition":"TRIM_HORIZON","DestinationConfig":{"OnFailure":{"Destination":"arn:aws:lambda:us-east-1:` + acctA + `:function:fz"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := e.do(acctA, "POST", "/2015-03-31/event-source-mappings", body)
		checkShape(t, w)
		if w.Code != http.StatusAccepted {
			return
		}
		var out struct{ UUID string }
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		defer e.do(acctA, "DELETE", "/2015-03-31/event-source-mappings/"+out.UUID, nil)
		for _, m := range e.svc.EventSourceMappings() {
			if m.UUID != out.UUID {
				continue
			}
			if !m.IsStream() {
				if m.StartingPosition != "" || m.ParallelizationFactor != 0 || m.MaximumRetryAttempts != 0 || m.OnFailure != "" || m.BisectBatchOnFunctionError {
					t.Fatalf("queue mapping with stream fields: %+v", m)
				}
				return
			}
			if (m.StartingPosition != "TRIM_HORIZON" && m.StartingPosition != "LATEST" && m.StartingPosition != "AT_TIMESTAMP") ||
				m.ParallelizationFactor < 1 || m.ParallelizationFactor > 10 || m.MaximumRetryAttempts < -1 || m.MaximumRetryAttempts > 10000 ||
				(m.MaximumRecordAgeInSeconds != -1 && (m.MaximumRecordAgeInSeconds < 60 || m.MaximumRecordAgeInSeconds > 604800)) ||
				m.BatchSize < 1 || m.BatchSize > 10000 {
				t.Fatalf("accepted %s as %+v", body, m)
			}
		}
	})
}
