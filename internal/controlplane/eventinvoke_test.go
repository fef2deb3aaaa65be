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

func TestEventInvokeConfigSDK(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "f")); w.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	a, b := e.sdkClients(t)
	ctx := context.Background()
	onFail := "arn:aws:sqs:us-east-1:" + acctA + ":failures"
	put, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             aws.String("f"),
		MaximumRetryAttempts:     aws.Int32(1),
		MaximumEventAgeInSeconds: aws.Int32(120),
		DestinationConfig:        &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(onFail)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *put.FunctionArn != "arn:aws:lambda:us-east-1:"+acctA+":function:f:$LATEST" || *put.MaximumRetryAttempts != 1 ||
		*put.MaximumEventAgeInSeconds != 120 || *put.DestinationConfig.OnFailure.Destination != onFail || put.LastModified == nil {
		t.Fatalf("put reply %+v", put)
	}
	got, ok := e.svc.EventInvokeConfig(acctA, "f", "$LATEST")
	if !ok || *got.MaximumRetryAttempts != 1 || got.OnFailure != onFail {
		t.Fatalf("config %+v %v", got, ok)
	}
	// Update changes only what it names.
	up, err := a.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{
		FunctionName: aws.String("f"), MaximumRetryAttempts: aws.Int32(0),
	})
	if err != nil || *up.MaximumRetryAttempts != 0 || *up.MaximumEventAgeInSeconds != 120 || *up.DestinationConfig.OnFailure.Destination != onFail {
		t.Fatalf("update %+v %v", up, err)
	}
	// Put replaces the whole config.
	if _, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("f"), MaximumRetryAttempts: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	g, err := a.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("f")})
	if err != nil || g.MaximumEventAgeInSeconds != nil || g.DestinationConfig.OnFailure.Destination != nil {
		t.Fatalf("get after put %+v %v", g, err)
	}
	l, err := a.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("f")})
	if err != nil || len(l.FunctionEventInvokeConfigs) != 1 {
		t.Fatalf("list %+v %v", l, err)
	}

	errCases := []struct {
		name string
		call func() error
		code string
	}{
		{"retries too high", func() error {
			_, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("f"), MaximumRetryAttempts: aws.Int32(3)})
			return err
		}, "ValidationException"},
		{"age too low", func() error {
			_, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("f"), MaximumEventAgeInSeconds: aws.Int32(59)})
			return err
		}, "ValidationException"},
		{"foreign destination", func() error {
			_, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("f"),
				DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sqs:us-east-1:" + acctB + ":q")}}})
			return err
		}, "InvalidParameterValueException"},
		{"missing function", func() error {
			_, err := a.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException"},
		{"missing qualifier", func() error {
			_, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("f"), Qualifier: aws.String("7")})
			return err
		}, "ResourceNotFoundException"},
		{"other account", func() error {
			_, err := b.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("f")})
			return err
		}, "ResourceNotFoundException"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			var ae smithy.APIError
			if err := tc.call(); !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
		})
	}

	// The config is replicated state: it survives a restart.
	e.Close()
	e = newEnv(t, dir)
	defer e.Close()
	if got, ok := e.svc.EventInvokeConfig(acctA, "f", "$LATEST"); !ok || *got.MaximumRetryAttempts != 2 {
		t.Fatalf("after restart %+v %v", got, ok)
	}
	if w := e.do(acctA, "DELETE", "/2019-09-25/functions/f/event-invoke-config", nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete %d %s", w.Code, w.Body)
	}
	if w := e.do(acctA, "GET", "/2019-09-25/functions/f/event-invoke-config", nil); w.Code != http.StatusNotFound {
		t.Fatalf("get after delete %d %s", w.Code, w.Body)
	}
}
