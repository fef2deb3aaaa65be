package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/workermgr"
)

const sleepyPy = `import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True, "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
`

// TestReservedConcurrencySDK drives the concurrency API and throttles
// through aws-sdk-go-v2 against a real server.
func TestReservedConcurrencySDK(t *testing.T) {
	ctx := context.Background()
	srv, c, admin := startSDK(t, Config{}, "f", "g")
	unreserved := func() int32 {
		t.Helper()
		out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		if out.AccountLimit.ConcurrentExecutions != 1000 {
			t.Fatalf("ConcurrentExecutions = %d", out.AccountLimit.ConcurrentExecutions)
		}
		if out.AccountUsage == nil || out.AccountUsage.FunctionCount < 1 {
			t.Fatalf("AccountUsage = %+v", out.AccountUsage)
		}
		return *out.AccountLimit.UnreservedConcurrentExecutions
	}
	invoke := func(sleep string) error {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"sleep":` + sleep + `}`)})
		return err
	}
	got, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("f")})
	if err != nil || got.ReservedConcurrentExecutions != nil {
		t.Fatalf("GetFunctionConcurrency before any: %+v %v", got, err)
	}
	if u := unreserved(); u != 1000 {
		t.Fatalf("unreserved = %d", u)
	}
	put, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("f"), ReservedConcurrentExecutions: aws.Int32(1)})
	if err != nil || aws.ToInt32(put.ReservedConcurrentExecutions) != 1 {
		t.Fatalf("PutFunctionConcurrency: %+v %v", put, err)
	}
	fn, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f")})
	if err != nil || fn.Concurrency == nil || aws.ToInt32(fn.Concurrency.ReservedConcurrentExecutions) != 1 {
		t.Fatalf("GetFunction Concurrency: %+v %v", fn.Concurrency, err)
	}
	if u := unreserved(); u != 999 {
		t.Fatalf("unreserved = %d", u)
	}
	_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("g"), ReservedConcurrentExecutions: aws.Int32(900)})
	var ipe *types.InvalidParameterValueException
	if !errors.As(err, &ipe) || aws.ToString(ipe.Message) != "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]." {
		t.Fatalf("over-reserving: %v", err)
	}
	_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("nope"), ReservedConcurrentExecutions: aws.Int32(1)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("unknown function: %v", err)
	}

	// Reserved 1: a second concurrent invoke is throttled at once.
	if err := invoke("0"); err != nil { // warm it
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var longErr error
	go func() { defer wg.Done(); longErr = invoke("1.5") }()
	time.Sleep(400 * time.Millisecond)
	t0 := time.Now()
	wantThrottle(t, invoke("0"), types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded)
	if el := time.Since(t0); el > 300*time.Millisecond {
		t.Fatalf("throttle took %v; it must be decided at once", el)
	}
	wg.Wait()
	if longErr != nil {
		t.Fatal(longErr)
	}
	if err := invoke("0"); err != nil {
		t.Fatalf("after the slot freed: %v", err)
	}

	// Reserved 0 stops the function.
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("f"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	wantThrottle(t, invoke("0"), types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded)
	if _, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("f")}); err != nil {
		t.Fatal(err)
	}
	if err := invoke("0"); err != nil {
		t.Fatalf("after DeleteFunctionConcurrency: %v", err)
	}

	// The operator's account limit (Kiln route), then deleting a function
	// frees its reservation.
	if st := kilnPut(t, srv.Addr(), admin, "/2026-01-01/kiln/accounts/"+adminAccount(srv)+"/concurrency", `{"ConcurrentExecutions":300}`); st != 200 {
		t.Fatalf("set account limit: %d", st)
	}
	if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("g"), ReservedConcurrentExecutions: aws.Int32(200)}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || out.AccountLimit.ConcurrentExecutions != 300 || aws.ToInt32(out.AccountLimit.UnreservedConcurrentExecutions) != 100 {
		t.Fatalf("account settings: %+v %v", out.AccountLimit, err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("g")}); err != nil {
		t.Fatal(err)
	}
	out, err = c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || aws.ToInt32(out.AccountLimit.UnreservedConcurrentExecutions) != 300 {
		t.Fatalf("after deleting the reserved function: %+v %v", out.AccountLimit, err)
	}
}

// startSDK starts a server, deploys the sleepy Python function under each
// name and returns an SDK client that does not retry.
func startSDK(t *testing.T, cfg Config, names ...string) (*Server, *lambda.Client, aws.Credentials) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for sandboxes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", filepath.Join(dir, "kiln")
	srv, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	var admin aws.Credentials
	for _, a := range srv.Control().Accounts() {
		if a.Admin {
			admin = aws.Credentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey}
		}
	}
	c := lambda.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: admin}},
		func(o *lambda.Options) {
			o.BaseEndpoint = aws.String("http://" + srv.Addr())
			o.RetryMaxAttempts = 1 // see the throttle, not the SDK's retries
		})
	code := filepath.Join(dir, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(code, "app.py"), []byte(sleepyPy), 0o644); err != nil {
		t.Fatal(err)
	}
	zip, err := codepkg.ZipDir(code)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
			Role: aws.String("arn:aws:iam::123456789012:role/t"), Code: &types.FunctionCode{ZipFile: zip},
			Timeout: aws.Int32(10),
		}); err != nil {
			t.Fatal(err)
		}
	}
	return srv, c, admin
}

func wantThrottle(t *testing.T, err error, reason types.ThrottleReason) {
	t.Helper()
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) {
		t.Fatalf("want TooManyRequestsException, got %v", err)
	}
	if tm.Reason != reason || aws.ToString(tm.RetryAfterSeconds) == "" {
		t.Fatalf("throttle reason %q retryAfter %q, want %q", tm.Reason, aws.ToString(tm.RetryAfterSeconds), reason)
	}
}

// TestScalingRate: with a burst of 2 new environments, a third concurrent
// cold start is throttled; warm invokes never take from the bucket.
func TestScalingRate(t *testing.T) {
	ctx := context.Background()
	_, c, _ := startSDK(t, Config{ScaleBurst: 2, ScaleWindow: 20 * time.Second}, "s")
	invoke := func(sleep string) error {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("s"), Payload: []byte(`{"sleep":` + sleep + `}`)})
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = invoke("2") }()
	}
	time.Sleep(700 * time.Millisecond) // both are past Reserve, busy sleeping
	wantThrottle(t, invoke("0"), types.ThrottleReasonFunctionInvocationRateLimitExceeded)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ { // two warm sandboxes now: no new environments needed
		if err := invoke("0"); err != nil {
			t.Fatalf("warm invoke %d: %v", i, err)
		}
	}
}

func adminAccount(srv *Server) string {
	for _, a := range srv.Control().Accounts() {
		if a.Admin {
			return a.ID
		}
	}
	return ""
}

func kilnPut(t *testing.T, addr string, creds aws.Credentials, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestProvisionedConcurrency: a config on an alias pre-initialises sandboxes
// (IN_PROGRESS → READY), invokes use them first and spill over to
// on-demand, and keep-alive reclaims only the on-demand ones.
func TestProvisionedConcurrency(t *testing.T) {
	ctx := context.Background()
	srv, c, _ := startSDK(t, Config{KeepAlive: 300 * time.Millisecond}, "p")
	v, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("p"), Name: aws.String("live"), FunctionVersion: v.Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("p"), Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(1)}); err == nil {
		t.Fatal("provisioned concurrency on $LATEST accepted")
	}
	put, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{
		FunctionName: aws.String("p"), Qualifier: aws.String("live"), ProvisionedConcurrentExecutions: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(put.RequestedProvisionedConcurrentExecutions) != 2 || put.Status != types.ProvisionedConcurrencyStatusEnumInProgress {
		t.Fatalf("put: requested %d status %s", aws.ToInt32(put.RequestedProvisionedConcurrentExecutions), put.Status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("p"), Qualifier: aws.String("live")})
		if err != nil {
			t.Fatal(err)
		}
		if g.Status == types.ProvisionedConcurrencyStatusEnumReady {
			if aws.ToInt32(g.AllocatedProvisionedConcurrentExecutions) != 2 || aws.ToInt32(g.AvailableProvisionedConcurrentExecutions) != 2 {
				t.Fatalf("READY with counts %d/%d", aws.ToInt32(g.AllocatedProvisionedConcurrentExecutions), aws.ToInt32(g.AvailableProvisionedConcurrentExecutions))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never READY: %s", g.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	list, err := c.ListProvisionedConcurrencyConfigs(ctx, &lambda.ListProvisionedConcurrencyConfigsInput{FunctionName: aws.String("p")})
	if err != nil || len(list.ProvisionedConcurrencyConfigs) != 1 || !strings.HasSuffix(aws.ToString(list.ProvisionedConcurrencyConfigs[0].FunctionArn), ":p:live") {
		t.Fatalf("list: %+v %v", list, err)
	}

	initTypes := make([]string, 3)
	var wg sync.WaitGroup
	for i := range initTypes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("p"), Qualifier: aws.String("live"), Payload: []byte(`{"sleep":0.8}`)})
			if err != nil {
				t.Error(err)
				return
			}
			var r struct{ Init string }
			_ = json.Unmarshal(out.Payload, &r)
			initTypes[i] = r.Init
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	counts := map[string]int{}
	for _, it := range initTypes {
		counts[it]++
	}
	if counts["provisioned-concurrency"] != 2 || counts["on-demand"] != 1 {
		t.Fatalf("init types %v: want 2 provisioned, 1 on-demand spill-over", initTypes)
	}
	key := func() workermgr.Stats { return srv.Sandboxes().Stats("") }
	time.Sleep(1500 * time.Millisecond) // several keep-alive periods
	if st := key(); st.Idle != 2 {
		t.Fatalf("after keep-alive: %+v, want only the 2 provisioned left", st)
	}
	// Moving the alias moves its provisioned concurrency to the new version.
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("p"), Description: aws.String("v2")}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, "p")
	v2, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("p")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("p"), Name: aws.String("live"), FunctionVersion: v2.Version}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("p"), Qualifier: aws.String("live"), Payload: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Init string }
		_ = json.Unmarshal(out.Payload, &r)
		if aws.ToString(out.ExecutedVersion) == aws.ToString(v2.Version) && r.Init == "provisioned-concurrency" && key().Idle == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provisioned concurrency did not follow the alias: version %s init %s %+v", aws.ToString(out.ExecutedVersion), r.Init, key())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String("p"), Qualifier: aws.String("live")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("p"), Qualifier: aws.String("live")})
	var nf *types.ProvisionedConcurrencyConfigNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("after delete: %v", err)
	}
	if st := key(); st.Idle != 0 {
		t.Fatalf("after delete: %+v sandboxes left", st)
	}
}

// waitActive waits for a function's last update to finish.
func waitActive(t *testing.T, c *lambda.Client, name string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		out, err := c.GetFunctionConfiguration(context.Background(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if out.LastUpdateStatus != types.LastUpdateStatusInProgress {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("function update never finished")
}
