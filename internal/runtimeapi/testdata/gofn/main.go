// Command gofn is a function built with aws-lambda-go that the runtimeapi
// tests run as a provided runtime's bootstrap. It lives under testdata so
// that `go vet ./...` and `go test ./...` leave it alone.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Action string `json:"action"`
	Size   int    `json:"size"`
	Value  string `json:"value"`
}

// failingReader yields some bytes, then fails: aws-lambda-go reports that
// through the /response trailers.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		k := min(r.n, len(p))
		for i := range k {
			p[i] = 'y'
		}
		r.n -= k
		return k, nil
	}
	return 0, errors.New("stream broke")
}

func handler(ctx context.Context, ev event) (any, error) {
	switch ev.Action {
	case "error":
		return nil, errors.New("boom")
	case "panic":
		panic("kaboom")
	case "ctx":
		lc, _ := lambdacontext.FromContext(ctx)
		dl, _ := ctx.Deadline()
		return map[string]any{
			"requestId":     lc.AwsRequestID,
			"arn":           lc.InvokedFunctionArn,
			"deadlineMs":    dl.UnixMilli(),
			"functionName":  lambdacontext.FunctionName,
			"version":       lambdacontext.FunctionVersion,
			"memory":        lambdacontext.MemoryLimitInMB,
			"logGroup":      lambdacontext.LogGroupName,
			"trace":         os.Getenv("_X_AMZN_TRACE_ID"),
			"custom":        lc.ClientContext.Custom,
			"identityId":    lc.Identity.CognitoIdentityID,
			"greeting":      os.Getenv("GREETING"),
			"serverPortSet": os.Getenv("_LAMBDA_SERVER_PORT") != "",
		}, nil
	case "big":
		return strings.Repeat("x", ev.Size), nil
	case "stream-fail":
		return io.Reader(&failingReader{n: 10}), nil
	case "sleep":
		time.Sleep(time.Duration(ev.Size) * time.Millisecond)
		return "slept", nil
	case "exit":
		os.Exit(3)
	}
	return ev, nil
}

func main() {
	// WithEnableSIGTERM makes aws-lambda-go register an internal extension,
	// which exercises the Extensions API.
	lambda.StartWithOptions(handler, lambda.WithEnableSIGTERM(func() {}))
}
