package controlplane

import (
	"context"
	"errors"
	"net/http"
	"testing"

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
