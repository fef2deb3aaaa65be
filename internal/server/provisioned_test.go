package server

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/codepkg"
)

// initFailPy fails its init only in provisioned environments, as the
// function Lambda's own behaviour was recorded with.
const initFailPy = `import os
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    raise Exception("Intentional failure upon provisioned concurrency initialization")
def handler(event, context):
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
`

// TestProvisionedInitFailureSDK: provisioned concurrency whose environments
// cannot initialise goes IN_PROGRESS → FAILED with Lambda's StatusReason,
// never READY, and the version's invokes run on demand meanwhile and after.
func TestProvisionedInitFailureSDK(t *testing.T) {
	ctx := context.Background()
	srv, c, _ := startSDK(t, Config{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(initFailPy), 0o644); err != nil {
		t.Fatal(err)
	}
	zip, err := codepkg.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("bad"), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::123456789012:role/t"), Code: &types.FunctionCode{ZipFile: zip}, Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	v := fn.Version
	put, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("bad"), Qualifier: v, ProvisionedConcurrentExecutions: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if put.Status != types.ProvisionedConcurrencyStatusEnumInProgress || put.StatusReason != nil {
		t.Fatalf("put: %s %v", put.Status, put.StatusReason)
	}
	initType := func() string {
		t.Helper()
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("bad"), Qualifier: v})
		if err != nil {
			t.Fatal(err)
		}
		if out.FunctionError != nil {
			t.Fatalf("invoke ran in a failed environment: %s", out.Payload)
		}
		var s string
		_ = json.Unmarshal(out.Payload, &s)
		return s
	}
	if it := initType(); it != "on-demand" {
		t.Fatalf("while IN_PROGRESS: %q", it)
	}
	deadline := time.Now().Add(40 * time.Second)
	var g *lambda.GetProvisionedConcurrencyConfigOutput
	for {
		g, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("bad"), Qualifier: v})
		if err != nil {
			t.Fatal(err)
		}
		if g.Status != types.ProvisionedConcurrencyStatusEnumInProgress {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stayed IN_PROGRESS")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g.Status != types.ProvisionedConcurrencyStatusEnumFailed || aws.ToString(g.StatusReason) != "FUNCTION_ERROR_INIT_FAILURE" ||
		aws.ToInt32(g.AllocatedProvisionedConcurrentExecutions) != 0 || aws.ToInt32(g.AvailableProvisionedConcurrentExecutions) != 0 {
		t.Fatalf("after init failures: %s %q allocated %d available %d", g.Status, aws.ToString(g.StatusReason),
			aws.ToInt32(g.AllocatedProvisionedConcurrentExecutions), aws.ToInt32(g.AvailableProvisionedConcurrentExecutions))
	}
	if it := initType(); it != "on-demand" {
		t.Fatalf("after FAILED: %q", it)
	}
	// The failure reaches the replicated state, so every frontend knows.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if pc, _ := srv.counts.Provisioned(adminAccount(srv), "bad", aws.ToString(v)); pc.Failed == "FUNCTION_ERROR_INIT_FAILURE" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("failure never recorded in the counting state")
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("bad")})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 || list.ProvisionedConcurrencyConfigs[0].Status != types.ProvisionedConcurrencyStatusEnumFailed {
		t.Fatalf("list: %+v %v", list, err)
	}
}

// TestProvisionedWithinReservedSDK: provisioned concurrency counts against
// the function's reservation and the account's unreserved concurrency,
// with Lambda's errors as aws-sdk-go-v2 decodes them.
func TestProvisionedWithinReservedSDK(t *testing.T) {
	ctx := context.Background()
	_, c, _ := startSDK(t, Config{}, "r", "u")
	var versions [2]string
	for i, name := range []string{"r", "u"} {
		v, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		versions[i] = aws.ToString(v.Version)
	}
	putProv := func(name, q string, n int32) func() error {
		return func() error {
			_, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
				FunctionName: aws.String(name), Qualifier: aws.String(q), ProvisionedConcurrentExecutions: aws.Int32(n)})
			return err
		}
	}
	putRes := func(name string, n int32) func() error {
		return func() error {
			_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(name), ReservedConcurrentExecutions: aws.Int32(n)})
			return err
		}
	}
	unreserved := func() int32 {
		out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToInt32(out.AccountLimit.UnreservedConcurrentExecutions)
	}
	steps := []struct {
		name       string
		do         func() error
		msg        string
		unreserved int32
	}{
		{"reserve 2", putRes("r", 2), "", 998},
		{"provisioned over the reservation", putProv("r", versions[0], 3), "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function", 998},
		{"provisioned equal to it", putProv("r", versions[0], 2), "", 998},
		{"reservation under provisioned", putRes("r", 1), " ReservedConcurrentExecutions  1 should not be lower than function's total provisioned concurrency [2].", 998},
		{"unreserved function over the pool", putProv("u", versions[1], 999), "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [998].", 998},
		{"unreserved function leaving under 100", putProv("u", versions[1], 899), "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].", 998},
		{"unreserved function provisioned", putProv("u", versions[1], 3), "", 995},
	}
	for _, s := range steps {
		err := s.do()
		var ipe *types.InvalidParameterValueException
		switch {
		case s.msg == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.msg != "" && (!errors.As(err, &ipe) || aws.ToString(ipe.Message) != s.msg):
			t.Fatalf("%s: got %v, want InvalidParameterValueException %q", s.name, err, s.msg)
		}
		if u := unreserved(); u != s.unreserved {
			t.Fatalf("%s: UnreservedConcurrentExecutions %d, want %d", s.name, u, s.unreserved)
		}
	}
	// Reserved == provisioned: nothing is left on demand, so $LATEST is
	// throttled as Lambda throttles it; the provisioned version runs.
	_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("r"), Payload: []byte(`{}`)})
	wantThrottle(t, err, types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded)
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("r"), Qualifier: aws.String(versions[0]), Payload: []byte(`{}`)})
	if err != nil || out.FunctionError != nil {
		t.Fatalf("provisioned version: %v %s", err, out.Payload)
	}
	if !strings.Contains(string(out.Payload), `"ok": true`) {
		t.Fatalf("payload %s", out.Payload)
	}
}
