package acceptance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

func ctx() context.Context { return context.Background() }

// TestFunctionLifecycle drives CRUD, versions and aliases with aws-sdk-go-v2.
func TestFunctionLifecycle(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	py := fixtures()[1]
	zip := py.zip(t)
	sum := sha256.Sum256(zip)

	out := createFunction(t, c, "life", py, func(in *lambda.CreateFunctionInput) {
		in.Description = aws.String("first")
		in.Code.ZipFile = zip
	})
	if got, want := aws.ToString(out.CodeSha256), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Errorf("CodeSha256 = %s, want %s", got, want)
	}
	if out.CodeSize != int64(len(zip)) {
		t.Errorf("CodeSize = %d, want %d", out.CodeSize, len(zip))
	}
	if out.State != types.StateActive || out.LastUpdateStatus != types.LastUpdateStatusSuccessful {
		t.Errorf("State %s LastUpdateStatus %s", out.State, out.LastUpdateStatus)
	}
	if !strings.HasPrefix(aws.ToString(out.FunctionArn), "arn:aws:lambda:us-east-1:") || !strings.HasSuffix(aws.ToString(out.FunctionArn), ":function:life") {
		t.Errorf("FunctionArn = %s", aws.ToString(out.FunctionArn))
	}

	// The waiters the CLI and SDK users rely on.
	if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String("life")}, 10*time.Second); err != nil {
		t.Fatalf("FunctionActiveV2 waiter: %v", err)
	}

	got, err := c.GetFunction(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String("life")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.Configuration.Description) != "first" || got.Configuration.Runtime != types.RuntimePython312 {
		t.Errorf("GetFunction config: %+v", got.Configuration)
	}

	// Duplicate create → ResourceConflictException.
	_, err = c.CreateFunction(ctx(), &lambda.CreateFunctionInput{FunctionName: aws.String("life"), Runtime: types.RuntimePython312,
		Handler: aws.String("app.handler"), Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: zip}})
	var conflict *types.ResourceConflictException
	if !errors.As(err, &conflict) || conflict.Message == nil {
		t.Errorf("duplicate create: %v", err)
	}

	// Update configuration with a stale RevisionId → PreconditionFailed.
	_, err = c.UpdateFunctionConfiguration(ctx(), &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("life"),
		RevisionId: aws.String("00000000-0000-0000-0000-000000000000"), Description: aws.String("x")})
	var pre *types.PreconditionFailedException
	if !errors.As(err, &pre) {
		t.Errorf("stale RevisionId: %v", err)
	}

	// Versions.
	v1, err := c.PublishVersion(ctx(), &lambda.PublishVersionInput{FunctionName: aws.String("life")})
	if err != nil || aws.ToString(v1.Version) != "1" {
		t.Fatalf("PublishVersion: %v %v", err, v1)
	}
	if _, err := c.UpdateFunctionConfiguration(ctx(), &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("life"),
		Environment: &types.Environment{Variables: map[string]string{"GREETING": "v2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(c).Wait(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String("life")}, 10*time.Second); err != nil {
		t.Fatalf("FunctionUpdatedV2 waiter: %v", err)
	}
	v2, err := c.PublishVersion(ctx(), &lambda.PublishVersionInput{FunctionName: aws.String("life")})
	if err != nil || aws.ToString(v2.Version) != "2" {
		t.Fatalf("PublishVersion 2: %v %v", err, v2)
	}
	vers, err := c.ListVersionsByFunction(ctx(), &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("life")})
	if err != nil || len(vers.Versions) != 3 {
		t.Fatalf("ListVersionsByFunction: %v %d", err, len(vers.Versions))
	}

	// Each version keeps its own configuration; invoke by name:qualifier, ?Qualifier and ARN.
	for _, tc := range []struct {
		name, qualifier, wantEnv, wantVersion string
	}{
		{"life:1", "", "hello from python", "1"},
		{"life", "2", "v2", "2"},
		{aws.ToString(out.FunctionArn) + ":1", "", "hello from python", "1"},
		{aws.ToString(out.FunctionArn), "", "v2", "$LATEST"},
	} {
		r := invoke(t, c, tc.name, map[string]any{}, func(in *lambda.InvokeInput) {
			if tc.qualifier != "" {
				in.Qualifier = aws.String(tc.qualifier)
			}
		})
		if r.Response["env"] != tc.wantEnv || r.Version != tc.wantVersion {
			t.Errorf("invoke %s q=%s: env %v version %s; want %s %s", tc.name, tc.qualifier, r.Response["env"], r.Version, tc.wantEnv, tc.wantVersion)
		}
	}

	// Aliases with weighted routing to a second version.
	if _, err := c.CreateAlias(ctx(), &lambda.CreateAliasInput{FunctionName: aws.String("life"), Name: aws.String("live"),
		FunctionVersion: aws.String("1"),
		RoutingConfig:   &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.5}}}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		r := invoke(t, c, "life:live", map[string]any{})
		seen[r.Version]++
		if want := map[string]string{"1": "hello from python", "2": "v2"}[r.Version]; r.Response["env"] != want {
			t.Fatalf("alias routed to %s but ran %v", r.Version, r.Response["env"])
		}
	}
	if seen["1"] == 0 || seen["2"] == 0 || seen["1"]+seen["2"] != 40 {
		t.Errorf("weighted routing split: %v", seen)
	}
	a, err := c.GetAlias(ctx(), &lambda.GetAliasInput{FunctionName: aws.String("life"), Name: aws.String("live")})
	if err != nil || aws.ToString(a.FunctionVersion) != "1" || a.RoutingConfig.AdditionalVersionWeights["2"] != 0.5 {
		t.Fatalf("GetAlias: %v %+v", err, a)
	}
	if _, err := c.UpdateAlias(ctx(), &lambda.UpdateAliasInput{FunctionName: aws.String("life"), Name: aws.String("live"),
		FunctionVersion: aws.String("2"), RoutingConfig: &types.AliasRoutingConfiguration{}}); err != nil {
		t.Fatal(err)
	}
	if r := invoke(t, c, "life", map[string]any{}, func(in *lambda.InvokeInput) { in.Qualifier = aws.String("live") }); r.Version != "2" {
		t.Errorf("updated alias ran version %s", r.Version)
	}
	al, err := c.ListAliases(ctx(), &lambda.ListAliasesInput{FunctionName: aws.String("life")})
	if err != nil || len(al.Aliases) != 1 {
		t.Fatalf("ListAliases: %v %v", err, al)
	}
	// A version an alias points to cannot be deleted.
	_, err = c.DeleteFunction(ctx(), &lambda.DeleteFunctionInput{FunctionName: aws.String("life"), Qualifier: aws.String("2")})
	if !errors.As(err, &conflict) {
		t.Errorf("deleting an aliased version: %v", err)
	}
	if _, err := c.DeleteAlias(ctx(), &lambda.DeleteAliasInput{FunctionName: aws.String("life"), Name: aws.String("live")}); err != nil {
		t.Fatal(err)
	}

	// Delete, then everything is gone.
	if _, err := c.DeleteFunction(ctx(), &lambda.DeleteFunctionInput{FunctionName: aws.String("life")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunction(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String("life")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || nf.Message == nil || !strings.Contains(*nf.Message, "Function not found") {
		t.Errorf("after delete: %v", err)
	}
	_, err = c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("life")})
	if !errors.As(err, &nf) {
		t.Errorf("invoke after delete: %v", err)
	}
}

// TestListPagination pages through ListFunctions with MaxItems.
func TestListPagination(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	py := fixtures()[1]
	for i := 0; i < 7; i++ {
		createFunction(t, c, fmt.Sprintf("page-%02d", i), py)
	}
	var names []string
	p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(3)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, f := range out.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if len(names) != 7 || pages != 3 {
		t.Fatalf("pages %d names %v", pages, names)
	}
}

// TestErrorShapes checks that every error decodes into the SDK's typed errors
// (or, for codes Lambda's model lacks, the generic API error with the code).
func TestErrorShapes(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	py := fixtures()[1]
	createFunction(t, c, "shapes", py)

	_, err := c.GetFunction(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || aws.ToString(nf.Message) == "" {
		t.Errorf("not found: %v", err)
	}

	// Below the model's minimum: ValidationException, as AWS answers.
	_, err = c.CreateFunction(ctx(), &lambda.CreateFunctionInput{FunctionName: aws.String("bad-mem"), Runtime: types.RuntimePython312,
		Handler: aws.String("app.handler"), Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: py.zip(t)}, MemorySize: aws.Int32(64)})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		t.Errorf("MemorySize 64: %v", err)
	}
	// An unknown runtime: the typed InvalidParameterValueException.
	_, err = c.CreateFunction(ctx(), &lambda.CreateFunctionInput{FunctionName: aws.String("bad-rt"), Runtime: types.Runtime("cobol85"),
		Handler: aws.String("app.handler"), Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: py.zip(t)}})
	var inv *types.InvalidParameterValueException
	if !errors.As(err, &inv) || aws.ToString(inv.Message) == "" {
		t.Errorf("unknown runtime: %v", err)
	}

	_, err = c.CreateFunction(ctx(), &lambda.CreateFunctionInput{FunctionName: aws.String("bad-zip"), Runtime: types.RuntimePython312,
		Handler: aws.String("app.handler"), Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: []byte("not a zip")}})
	if !errors.As(err, &ae) || (ae.ErrorCode() != "InvalidParameterValueException" && ae.ErrorCode() != "InvalidZipFileException") {
		t.Errorf("bad zip: %v", err)
	}

	// An invoke payload over 6 MB → 413.
	big := bytes.Repeat([]byte("a"), 6*1024*1024+10)
	_, err = c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("shapes"), Payload: append(append([]byte(`"`), big...), '"')})
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestEntityTooLargeException" {
		t.Errorf("too large: %v", err)
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() != 413 {
		t.Errorf("too large status %d", re.HTTPStatusCode())
	}

	// A payload that is not JSON → InvalidRequestContentException.
	_, err = c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("shapes"), Payload: []byte{0x97, 'x'}})
	var irc *types.InvalidRequestContentException
	if !errors.As(err, &irc) {
		t.Errorf("bad payload: %v", err)
	}

	// DryRun checks and returns 204 without running.
	out, err := c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("shapes"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || out.StatusCode != 204 {
		t.Errorf("DryRun: %v %v", err, out)
	}
	// Event is accepted (202) once durably queued (issue 5; see async_test.go).
	out, err = c.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String("shapes"), InvocationType: types.InvocationTypeEvent})
	if err != nil || out.StatusCode != 202 {
		t.Errorf("Event: %v %v", err, out)
	}
}

// TestSigV4Rejections checks unknown keys, bad signatures and clock skew.
func TestSigV4Rejections(t *testing.T) {
	s := startServer(t, "")
	var ae smithy.APIError

	_, err := s.clientFor(t, "AKIAUNKNOWNUNKNOWN00", "secret").ListFunctions(ctx(), &lambda.ListFunctionsInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" || ae.ErrorMessage() != "The security token included in the request is invalid." {
		t.Errorf("unknown key: %v", err)
	}

	_, err = s.clientFor(t, s.akid, "wrong-secret").ListFunctions(ctx(), &lambda.ListFunctionsInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSignatureException" {
		t.Errorf("bad secret: %v", err)
	}

	// A request signed 10 minutes ago.
	req, _ := http.NewRequest(http.MethodGet, s.endpoint+"/2015-03-31/functions", nil)
	h := sha256.Sum256(nil)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: s.akid, SecretAccessKey: s.secret}
	if err := signer.SignHTTP(ctx(), creds, req, fmt.Sprintf("%x", h), "lambda", "us-east-1", time.Now().Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-Errortype") != "InvalidSignatureException" {
		t.Errorf("skewed clock: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
	}

	// No signature at all.
	resp, err = http.Get(s.endpoint + "/2015-03-31/functions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("unsigned: %d", resp.StatusCode)
	}
}

// TestAccountIsolation: one account never sees or invokes another's functions.
func TestAccountIsolation(t *testing.T) {
	s := startServer(t, "")
	a := s.client(t)
	fn := createFunction(t, a, "private", fixtures()[1])

	akid, secret := createAccount(t, s)
	b := s.clientFor(t, akid, secret)
	list, err := b.ListFunctions(ctx(), &lambda.ListFunctionsInput{})
	if err != nil || len(list.Functions) != 0 {
		t.Fatalf("B lists A's functions: %v %v", err, list)
	}
	for _, name := range []string{"private", aws.ToString(fn.FunctionArn)} {
		_, err = b.Invoke(ctx(), &lambda.InvokeInput{FunctionName: aws.String(name)})
		var ae smithy.APIError
		if !errors.As(err, &ae) || (ae.ErrorCode() != "ResourceNotFoundException" && ae.ErrorCode() != "AccessDeniedException") {
			t.Errorf("B invokes A's %s: %v", name, err)
		}
		_, err = b.GetFunction(ctx(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err == nil {
			t.Errorf("B reads A's %s", name)
		}
	}
	// B's own function of the same name is B's.
	createFunction(t, b, "private", fixtures()[1])
	r := invoke(t, b, "private", map[string]any{})
	if arn, _ := r.Response["arn"].(string); arn == aws.ToString(fn.FunctionArn) || arn == "" {
		t.Errorf("B's invoke ran with ARN %q", arn)
	}
	if r2 := invoke(t, a, "private", map[string]any{}); r2.Response["instance"] == r.Response["instance"] {
		t.Error("two accounts shared a sandbox")
	}

	// The node's operator metrics (cold-start phases, async counters) are
	// the admin's alone.
	var m struct {
		ColdStartPhases []struct {
			Name      string
			Count     uint64
			P50Micros float64
		}
		Async map[string]any
	}
	if code := s.kiln(t, "GET", "/2026-01-01/kiln/metrics", nil, &m); code != 200 {
		t.Fatalf("admin metrics: %d", code)
	}
	phases := map[string]uint64{}
	for _, p := range m.ColdStartPhases {
		phases[p.Name] = p.Count
	}
	if phases["runtime_init"] < 2 || m.Async == nil {
		t.Errorf("metrics: phases %v, async %v", phases, m.Async)
	}
	other := &server{endpoint: s.endpoint, akid: akid, secret: secret}
	for _, path := range []string{"/2026-01-01/kiln/metrics", "/2026-01-01/kiln/async/metrics"} {
		if code := other.kiln(t, "GET", path, nil, nil); code != 403 {
			t.Errorf("non-admin %s: %d, want 403", path, code)
		}
	}
}

func createAccount(t *testing.T, s *server) (string, string) {
	t.Helper()
	return s.NewAccount(t)
}
