// A Lambda function written against aws-lambda-go, run unmodified by Kiln.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

var instance = func() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

type event struct {
	Action string `json:"action"`
	Msg    string `json:"msg"`
	Ms     int    `json:"ms"`
}

func handle(ctx context.Context, ev map[string]any) (map[string]any, error) {
	var e event
	if a, ok := ev["action"].(string); ok {
		e.Action = a
	}
	if m, ok := ev["msg"].(string); ok {
		e.Msg = m
	}
	if ms, ok := ev["ms"].(float64); ok {
		e.Ms = int(ms)
	}
	switch e.Action {
	case "error":
		return nil, errors.New("boom: " + e.Msg)
	case "sleep":
		time.Sleep(time.Duration(e.Ms) * time.Millisecond)
	case "panic":
		panic("go panic: " + e.Msg)
	}
	fmt.Println("go saw", e.Action)
	lc, _ := lambdacontext.FromContext(ctx)
	dl, _ := ctx.Deadline()
	return map[string]any{
		"runtime":          "go",
		"instance":         instance,
		"event":            ev,
		"request_id":       lc.AwsRequestID,
		"function_name":    lambdacontext.FunctionName,
		"function_version": lambdacontext.FunctionVersion,
		"arn":              lc.InvokedFunctionArn,
		"memory":           lambdacontext.MemoryLimitInMB,
		"remaining":        time.Until(dl).Milliseconds(),
		"log_group":        lambdacontext.LogGroupName,
		"log_stream":       lambdacontext.LogStreamName,
		"env":              os.Getenv("GREETING"),
		"region":           os.Getenv("AWS_REGION"),
		"handler_env":      os.Getenv("_HANDLER"),
	}, nil
}

func main() { lambda.Start(handle) }
