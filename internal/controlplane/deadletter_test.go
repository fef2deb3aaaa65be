package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

func dlqOf(c *types.DeadLetterConfig) string {
	if c == nil || c.TargetArn == nil {
		return ""
	}
	return *c.TargetArn
}

func TestDeadLetterConfigSDK(t *testing.T) {
	for _, viaSnapshot := range []bool{false, true} {
		name := "log replay"
		if viaSnapshot {
			name = "snapshot"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEnv(t, dir)
			a, _ := e.sdkClients(t)
			ctx := context.Background()
			q1 := "arn:aws:sqs:us-east-1:" + acctA + ":dlq-1"
			q2 := "arn:aws:sqs:us-east-1:" + acctA + ":dlq_2"
			cr, err := a.CreateFunction(ctx, &lambda.CreateFunctionInput{
				FunctionName: aws.String("f"), Runtime: types.RuntimePython312, Role: aws.String(role),
				Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t, "1")},
				DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(q1)},
			})
			if err != nil {
				t.Fatal(err)
			}
			if dlqOf(cr.DeadLetterConfig) != q1 {
				t.Fatalf("create reply DeadLetterConfig %+v", cr.DeadLetterConfig)
			}
			if arn, ok := e.svc.DeadLetterTarget(acctA, "f", ""); !ok || arn != q1 {
				t.Fatalf("DeadLetterTarget %q %v", arn, ok)
			}
			// Publishing snapshots the DLQ into the version; changing it
			// afterwards changes $LATEST only and makes a new version publishable.
			if _, err := a.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("f")}); err != nil {
				t.Fatal(err)
			}
			up, err := a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
				FunctionName: aws.String("f"), DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(q2)},
			})
			if err != nil || dlqOf(up.DeadLetterConfig) != q2 {
				t.Fatalf("update %+v %v", up, err)
			}
			// An update that does not name DeadLetterConfig keeps it.
			if up, err := a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("f"), Timeout: aws.Int32(9)}); err != nil || dlqOf(up.DeadLetterConfig) != q2 {
				t.Fatalf("unrelated update %+v %v", up, err)
			}
			v2, err := a.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("f")})
			if err != nil || *v2.Version != "2" || dlqOf(v2.DeadLetterConfig) != q2 {
				t.Fatalf("publish after DLQ change %+v %v", v2, err)
			}

			errCases := []struct{ name, arn string }{
				{"not an arn", "dlq-1"},
				{"sns topic", "arn:aws:sns:us-east-1:" + acctA + ":topic"},
				{"function", "arn:aws:lambda:us-east-1:" + acctA + ":function:g"},
				{"other account", "arn:aws:sqs:us-east-1:" + acctB + ":dlq"},
				{"other region", "arn:aws:sqs:eu-west-1:" + acctA + ":dlq"},
				{"bad queue name", "arn:aws:sqs:us-east-1:" + acctA + ":a.b"},
				{"fifo queue", "arn:aws:sqs:us-east-1:" + acctA + ":q.fifo"},
			}
			for _, tc := range errCases {
				t.Run(tc.name, func(t *testing.T) {
					_, err := a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
						FunctionName: aws.String("f"), DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(tc.arn)},
					})
					var ae smithy.APIError
					if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" {
						t.Fatalf("update: %v, want InvalidParameterValueException", err)
					}
					_, err = a.CreateFunction(ctx, &lambda.CreateFunctionInput{
						FunctionName: aws.String("g"), Runtime: types.RuntimePython312, Role: aws.String(role),
						Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t, "1")},
						DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(tc.arn)},
					})
					if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValueException" {
						t.Fatalf("create: %v, want InvalidParameterValueException", err)
					}
				})
			}

			state := snapshotOf(t, e)
			if viaSnapshot {
				if err := e.node.Snapshot(ctx); err != nil {
					t.Fatal(err)
				}
			}
			e.Close()
			e = newEnv(t, dir)
			defer e.Close()
			if got := snapshotOf(t, e); got != state {
				t.Fatalf("state after restart differs:\n%s\n%s", got, state)
			}
			a, _ = e.sdkClients(t)
			for q, want := range map[string]string{"": q2, "$LATEST": q2, "1": q1, "2": q2} {
				in := &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("f")}
				if q != "" {
					in.Qualifier = aws.String(q)
				}
				g, err := a.GetFunctionConfiguration(ctx, in)
				if err != nil || dlqOf(g.DeadLetterConfig) != want {
					t.Fatalf("after restart, %q: %+v %v, want %s", q, g, err, want)
				}
				if arn, ok := e.svc.DeadLetterTarget(acctA, "f", q); !ok || arn != want {
					t.Fatalf("DeadLetterTarget(%q) = %q %v", q, arn, ok)
				}
			}
			// An empty TargetArn removes the setting.
			up, err = a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
				FunctionName: aws.String("f"), DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("")},
			})
			if err != nil || up.DeadLetterConfig != nil && up.DeadLetterConfig.TargetArn != nil {
				t.Fatalf("clear %+v %v", up.DeadLetterConfig, err)
			}
			if _, ok := e.svc.DeadLetterTarget(acctA, "f", ""); ok {
				t.Fatal("DeadLetterTarget still set after clearing")
			}
		})
	}
}

// Deleting a function deletes its event invoke configs and event-source
// mappings: a function created again under the same name starts clean, and
// another function's settings are untouched. The removal is part of the
// replicated delete, so it holds after a restart.
func TestDeleteFunctionForgetsAsyncSettings(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	a, _ := e.sdkClients(t)
	ctx := context.Background()
	for _, fn := range []string{"f", "keep"} {
		if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, fn)); w.Code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", fn, w.Code, w.Body)
		}
		if _, err := a.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(fn)}); err != nil {
			t.Fatal(err)
		}
		for _, q := range []*string{nil, aws.String("1")} {
			if _, err := a.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
				FunctionName: aws.String(fn), Qualifier: q, MaximumRetryAttempts: aws.Int32(0),
				DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:sqs:us-east-1:" + acctA + ":fails")}},
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
			FunctionName: aws.String(fn), EventSourceArn: aws.String("arn:aws:sqs:us-east-1:" + acctA + ":jobs-" + fn),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("f")}); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, e *env, a *lambda.Client) {
		t.Helper()
		if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "f")); w.Code != http.StatusCreated {
			t.Fatalf("re-create: %d %s", w.Code, w.Body)
		}
		defer e.do(acctA, "DELETE", "/2015-03-31/functions/f", nil)
		var ae smithy.APIError
		if _, err := a.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("f")}); !errors.As(err, &ae) || ae.ErrorCode() != "ResourceNotFoundException" {
			t.Fatalf("re-created function inherited its event invoke config: %v", err)
		}
		l, err := a.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("f")})
		if err != nil || len(l.FunctionEventInvokeConfigs) != 0 {
			t.Fatalf("list configs of re-created function: %+v %v", l, err)
		}
		if _, ok := e.svc.EventInvokeConfig(acctA, "f", "1"); ok {
			t.Fatal("version 1's config survived the delete")
		}
		// Lambda keeps a deleted function's event-source mappings.
		m, err := a.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("f")})
		if err != nil || len(m.EventSourceMappings) != 1 {
			t.Fatalf("mappings of re-created function: %+v %v", m, err)
		}
		// The other function keeps everything.
		if _, ok := e.svc.EventInvokeConfig(acctA, "keep", "$LATEST"); !ok {
			t.Fatal("keep lost its $LATEST config")
		}
		if _, ok := e.svc.EventInvokeConfig(acctA, "keep", "1"); !ok {
			t.Fatal("keep lost its version 1 config")
		}
		if ms := e.svc.EventSourceMappings(); len(ms) != 2 {
			t.Fatalf("mappings %+v", ms)
		}
	}
	check(t, e, a)
	for _, viaSnapshot := range []bool{false, true} {
		if viaSnapshot {
			if err := e.node.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
		}
		e.Close()
		e = newEnv(t, dir)
		a, _ = e.sdkClients(t)
		check(t, e, a)
	}
	e.Close()
}

// FuzzCheckDeadLetter: any TargetArn either fails as
// InvalidParameterValueException or is a same-account, same-region Kiln
// queue ARN with a valid queue name.
func FuzzCheckDeadLetter(f *testing.F) {
	s := &Service{region: "us-east-1"}
	for _, seed := range []string{"", "arn:aws:sqs:us-east-1:" + acctA + ":q", "arn:aws:sns:us-east-1:" + acctA + ":t", "arn:", "arn:aws:sqs:us-east-1:" + acctA + ":"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arn string) {
		got, err := s.checkDeadLetter(acctA, &deadLetterConfig{TargetArn: &arn})
		if err != nil {
			var ae *errdefs.APIError
			if !errors.As(err, &ae) || ae.Code != "InvalidParameterValueException" {
				t.Fatalf("error %v is not InvalidParameterValueException", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), "arn") {
				t.Fatalf("error %v does not name the problem", err)
			}
			return
		}
		if *got != arn {
			t.Fatalf("stored %q for %q", *got, arn)
		}
		if arn == "" {
			return
		}
		name, ok := strings.CutPrefix(arn, "arn:aws:sqs:us-east-1:"+acctA+":")
		if !ok || !validQueueName(name) {
			t.Fatalf("accepted %q", arn)
		}
	})
}
