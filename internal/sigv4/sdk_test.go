package sigv4

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

func lambdaClient(endpoint, region string, creds aws.Credentials) *lambda.Client {
	cfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
	}
	return lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.Retryer = aws.NopRetryer{}
	})
}

// TestVerifyRealLambdaClient drives the real aws-sdk-go-v2 Lambda client at
// an httptest server whose handler runs Verify.
func TestVerifyRealLambdaClient(t *testing.T) {
	rec := newRecorder(NewVerifier(testRegion, testService, testKeys(), nil))
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx := context.Background()
	c := lambdaClient(srv.URL, testRegion, defaultCreds())
	sess := lambdaClient(srv.URL, testRegion, aws.Credentials{AccessKeyID: "AKIDSESS", SecretAccessKey: "session-secret", SessionToken: "IQoJb3JpZ2luX2VjEMb//////////wEaCXVz+/="})

	calls := []struct {
		name string
		call func() error
	}{
		{"invoke name:alias with qualifier", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("name:alias"), Qualifier: aws.String("x"), Payload: jsonBody(1024)})
			return err
		}},
		{"invoke ARN", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod"),
				Payload: []byte(`{"k":"v"}`), InvocationType: types.InvocationTypeEvent, LogType: types.LogTypeTail,
				ClientContext: aws.String("eyJjdXN0b20iOnt9fQ==")})
			return err
		}},
		{"invoke empty payload", func() error {
			_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f")})
			return err
		}},
		{"invoke with session token", func() error {
			_, err := sess.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`1`)})
			return err
		}},
		{"list functions with marker", func() error {
			_, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{Marker: aws.String("a b/c+d=="), MaxItems: aws.Int32(50), FunctionVersion: types.FunctionVersionAll})
			return err
		}},
		{"list versions", func() error {
			_, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("123456789012:function:f"), Marker: aws.String("é~!*'()")})
			return err
		}},
		{"get function with $LATEST", func() error {
			_, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f"), Qualifier: aws.String("$LATEST")})
			return err
		}},
		{"create function (JSON body)", func() error {
			_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Role: aws.String("arn:aws:iam::123456789012:role/r"),
				Code: &types.FunctionCode{ZipFile: []byte("PK\x03\x04 not really")}, Runtime: types.RuntimeProvidedal2023, Handler: aws.String("h")})
			return err
		}},
		{"put concurrency", func() error {
			_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("f"), ReservedConcurrentExecutions: aws.Int32(3)})
			return err
		}},
		{"delete alias", func() error {
			_, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("f"), Name: aws.String("live")})
			return err
		}},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatalf("client error: %v", err)
			}
			if err := rec.last(); err != nil {
				_, paths := rec.all()
				t.Fatalf("Verify rejected %s: %v", paths[len(paths)-1], err)
			}
		})
	}
	_, paths := rec.all()
	for _, want := range []string{"/2015-03-31/functions/name%3Aalias/invocations?Qualifier=x", "/2015-03-31/functions/arn%3Aaws%3Alambda%3A"} {
		found := false
		for _, p := range paths {
			found = found || strings.HasPrefix(p, want)
		}
		if !found {
			t.Errorf("no request with path %q; saw %q", want, paths)
		}
	}

	t.Run("wrong secret surfaces InvalidSignatureException", func(t *testing.T) {
		bad := lambdaClient(srv.URL, testRegion, aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: "wrong"})
		_, err := bad.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f")})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSignatureException" || ae.ErrorMessage() != msgMismatch {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong region surfaces InvalidSignatureException", func(t *testing.T) {
		bad := lambdaClient(srv.URL, "eu-central-1", defaultCreds())
		_, err := bad.ListFunctions(ctx, &lambda.ListFunctionsInput{})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSignatureException" || ae.ErrorMessage() != "Credential should be scoped to a valid region." {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown key surfaces UnrecognizedClientException", func(t *testing.T) {
		bad := lambdaClient(srv.URL, testRegion, aws.Credentials{AccessKeyID: "AKIDNOBODY", SecretAccessKey: "x"})
		_, err := bad.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" {
			t.Fatalf("err = %v", err)
		}
	})
}
