package controlplane

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// TestSDKLifecycle drives the whole management API with the real
// aws-sdk-go-v2 Lambda client.
func TestSDKLifecycle(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	a, _ := e.sdkClients(t)
	ctx := context.Background()

	zip1, zip2 := pyZip(t, "1"), pyZip(t, "2")
	created, err := a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdk-fn"),
		Role:         aws.String(role),
		Runtime:      types.RuntimePython312,
		Handler:      aws.String("index.handler"),
		Code:         &types.FunctionCode{ZipFile: zip1},
		MemorySize:   aws.Int32(256),
		Environment:  &types.Environment{Variables: map[string]string{"GREETING": "hi"}},
		Tags:         map[string]string{"team": "kiln"},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	if aws.ToString(created.Version) != "$LATEST" || created.State != types.StateActive ||
		created.LastUpdateStatus != types.LastUpdateStatusSuccessful || aws.ToInt32(created.MemorySize) != 256 ||
		created.PackageType != types.PackageTypeZip || aws.ToInt64(&created.CodeSize) != int64(len(zip1)) {
		t.Fatalf("CreateFunction output %+v", created)
	}

	got, err := a.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdk-fn")})
	if err != nil {
		t.Fatalf("GetFunction: %v", err)
	}
	if aws.ToString(got.Configuration.CodeSha256) != aws.ToString(created.CodeSha256) || got.Tags["team"] != "kiln" ||
		aws.ToString(got.Code.RepositoryType) != "S3" || got.Configuration.Environment.Variables["GREETING"] != "hi" {
		t.Fatalf("GetFunction %+v", got)
	}

	// Typed errors, each with its message decoded.
	_, err = a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdk-fn"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: zip1},
	})
	var conflict *types.ResourceConflictException
	if !errors.As(err, &conflict) || conflict.Message == nil || *conflict.Message != "Function already exist: sdk-fn" {
		t.Fatalf("duplicate create: %v", err)
	}
	_, err = a.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || nf.Message == nil || *nf.Message != "Function not found: arn:aws:lambda:us-east-1:111111111111:function:missing" {
		t.Fatalf("missing function: %v", err)
	}
	_, err = a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("arm"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: zip1},
		Architectures: []types.Architecture{otherArch(e.svc.hostArch)},
	})
	var inv *types.InvalidParameterValueException
	if !errors.As(err, &inv) || inv.Message == nil {
		t.Fatalf("foreign architecture: %v", err)
	}
	_, err = a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("bad name"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: zip1},
	})
	var generic *smithy.GenericAPIError
	if !errors.As(err, &generic) || generic.Code != "ValidationException" || generic.Message == "" {
		t.Fatalf("bad name: %v", err)
	}
	_, err = a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("badzip"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: []byte("not a zip")},
	})
	if !errors.As(err, &inv) || aws.ToString(inv.Message) != "Could not unzip uploaded file. Please check your file, then try to upload again." {
		t.Fatalf("bad zip: %v", err)
	}

	// Update code, then a stale RevisionId is refused.
	upd, err := a.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("sdk-fn"), ZipFile: zip2})
	if err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	if aws.ToString(upd.CodeSha256) == aws.ToString(created.CodeSha256) || aws.ToString(upd.RevisionId) == aws.ToString(created.RevisionId) {
		t.Fatal("code update changed neither CodeSha256 nor RevisionId")
	}
	_, err = a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("sdk-fn"), RevisionId: created.RevisionId, Timeout: aws.Int32(10),
	})
	var pre *types.PreconditionFailedException
	if !errors.As(err, &pre) || pre.Message == nil {
		t.Fatalf("stale RevisionId: %v", err)
	}
	cfg, err := a.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("sdk-fn"), RevisionId: upd.RevisionId, Timeout: aws.Int32(10),
	})
	if err != nil || aws.ToInt32(cfg.Timeout) != 10 || aws.ToInt32(cfg.MemorySize) != 256 {
		t.Fatalf("UpdateFunctionConfiguration: %v %+v", err, cfg)
	}

	// Versions: publishing an unchanged $LATEST returns the same version.
	v1, err := a.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sdk-fn"), Description: aws.String("first")})
	if err != nil || aws.ToString(v1.Version) != "1" || aws.ToString(v1.Description) != "first" {
		t.Fatalf("PublishVersion: %v %+v", err, v1)
	}
	again, err := a.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sdk-fn")})
	if err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("republish unchanged: %v %+v", err, again)
	}
	// Re-uploading the same zip changes nothing that a version captures.
	same, err := a.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("sdk-fn"), ZipFile: zip2, Publish: true})
	if err != nil || aws.ToString(same.Version) != "1" {
		t.Fatalf("publish identical code: %v %+v", err, same)
	}
	v2, err := a.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("sdk-fn"), ZipFile: zip1, Publish: true})
	if err != nil || aws.ToString(v2.Version) != "2" || aws.ToString(v2.FunctionArn) != "arn:aws:lambda:us-east-1:111111111111:function:sdk-fn:2" {
		t.Fatalf("update+publish: %v %+v", err, v2)
	}
	var versions []string
	vp := lambda.NewListVersionsByFunctionPaginator(a, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("sdk-fn"), MaxItems: aws.Int32(1)})
	for vp.HasMorePages() {
		page, err := vp.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListVersionsByFunction: %v", err)
		}
		for _, v := range page.Versions {
			versions = append(versions, aws.ToString(v.Version))
		}
	}
	if !slices.Equal(versions, []string{"$LATEST", "1", "2"}) {
		t.Fatalf("versions %v", versions)
	}

	// Aliases with weighted routing.
	al, err := a.CreateAlias(ctx, &lambda.CreateAliasInput{
		FunctionName: aws.String("sdk-fn"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.25}},
	})
	if err != nil || aws.ToString(al.AliasArn) != "arn:aws:lambda:us-east-1:111111111111:function:sdk-fn:live" ||
		al.RoutingConfig.AdditionalVersionWeights["2"] != 0.25 {
		t.Fatalf("CreateAlias: %v %+v", err, al)
	}
	_, err = a.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("live"), FunctionVersion: aws.String("1")})
	if !errors.As(err, &conflict) || conflict.Message == nil {
		t.Fatalf("duplicate alias: %v", err)
	}
	ga, err := a.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("live")})
	if err != nil || aws.ToString(ga.RevisionId) != aws.ToString(al.RevisionId) {
		t.Fatalf("GetAlias: %v", err)
	}
	ua, err := a.UpdateAlias(ctx, &lambda.UpdateAliasInput{
		FunctionName: aws.String("sdk-fn"), Name: aws.String("live"), FunctionVersion: aws.String("2"),
		RevisionId:    al.RevisionId,
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{}},
	})
	if err != nil || aws.ToString(ua.FunctionVersion) != "2" || ua.RoutingConfig != nil && len(ua.RoutingConfig.AdditionalVersionWeights) != 0 {
		t.Fatalf("UpdateAlias: %v %+v", err, ua)
	}
	_, err = a.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("live"), RevisionId: al.RevisionId})
	if !errors.As(err, &pre) || pre.Message == nil {
		t.Fatalf("UpdateAlias stale revision: %v", err)
	}
	if _, err := a.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("old"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	la, err := a.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("sdk-fn")})
	if err != nil || len(la.Aliases) != 2 || aws.ToString(la.Aliases[0].Name) != "live" {
		t.Fatalf("ListAliases: %v %+v", err, la)
	}
	la, err = a.ListAliases(ctx, &lambda.ListAliasesInput{FunctionName: aws.String("sdk-fn"), FunctionVersion: aws.String("1")})
	if err != nil || len(la.Aliases) != 1 || aws.ToString(la.Aliases[0].Name) != "old" {
		t.Fatalf("ListAliases by version: %v %+v", err, la)
	}
	_, err = a.GetAlias(ctx, &lambda.GetAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("gone")})
	if !errors.As(err, &nf) || nf.Message == nil {
		t.Fatalf("missing alias: %v", err)
	}

	// A version an alias points to cannot be deleted.
	_, err = a.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdk-fn"), Qualifier: aws.String("1")})
	if !errors.As(err, &conflict) || conflict.Message == nil {
		t.Fatalf("delete aliased version: %v", err)
	}
	if _, err := a.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("sdk-fn"), Name: aws.String("old")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdk-fn"), Qualifier: aws.String("1")}); err != nil {
		t.Fatalf("delete version: %v", err)
	}
	_, err = a.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("sdk-fn"), Qualifier: aws.String("1")})
	if !errors.As(err, &nf) || aws.ToString(nf.Message) != "Function not found: arn:aws:lambda:us-east-1:111111111111:function:sdk-fn:1" {
		t.Fatalf("deleted version: %v", err)
	}

	// ListFunctions pagination.
	for _, n := range []string{"p1", "p2", "p3", "p4"} {
		if _, err := a.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(n), Role: aws.String(role), Runtime: types.RuntimeNodejs20x,
			Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: zip2},
		}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	lp := lambda.NewListFunctionsPaginator(a, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	for lp.HasMorePages() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListFunctions: %v", err)
		}
		pages++
		for _, f := range page.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if !slices.Equal(names, []string{"p1", "p2", "p3", "p4", "sdk-fn"}) || pages != 3 {
		t.Fatalf("ListFunctions %v in %d pages", names, pages)
	}

	st, err := a.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if err != nil || st.AccountUsage.FunctionCount != 5 || st.AccountLimit.ConcurrentExecutions != 1000 {
		t.Fatalf("GetAccountSettings: %v %+v", err, st)
	}

	if _, err := a.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdk-fn")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
	_, err = a.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdk-fn")})
	if !errors.As(err, &nf) || nf.Message == nil {
		t.Fatalf("after delete: %v", err)
	}
}

func otherArch(host string) types.Architecture {
	if host == "arm64" {
		return types.ArchitectureX8664
	}
	return types.ArchitectureArm64
}

// TestAccountIsolation: account B cannot see or touch A's function by name,
// ARN or partial ARN, and learns nothing from the error.
func TestAccountIsolation(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	a, b := e.sdkClients(t)
	ctx := context.Background()
	if _, err := a.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("secret"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t, "1")}, Publish: true,
	}); err != nil {
		t.Fatal(err)
	}
	refs := []string{
		"secret",
		"secret:1",
		"arn:aws:lambda:us-east-1:111111111111:function:secret",
		"arn:aws:lambda:us-east-1:111111111111:function:secret:1",
		"111111111111:function:secret",
	}
	for _, ref := range refs {
		_, err := b.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(ref)})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) || nf.Message == nil {
			t.Errorf("B GetFunction(%s): %v", ref, err)
		}
		_, err = b.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(ref)})
		if !errors.As(err, &nf) {
			t.Errorf("B DeleteFunction(%s): %v", ref, err)
		}
		_, err = b.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(ref), Timeout: aws.Int32(5)})
		if err == nil {
			t.Errorf("B UpdateFunctionConfiguration(%s) succeeded", ref)
		}
		if _, err := e.svc.Resolve(ctx, acctB, ref, "", 0); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Resolve as B (%s): %v", ref, err)
		}
	}
	// B's own function of the same name is B's.
	if _, err := b.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("secret"), Role: aws.String(role), Runtime: types.RuntimePython312,
		Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t, "2")},
	}); err != nil {
		t.Fatalf("B creates its own 'secret': %v", err)
	}
	lb, err := b.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(lb.Functions) != 1 || aws.ToString(lb.Functions[0].FunctionArn) != "arn:aws:lambda:us-east-1:222222222222:function:secret" {
		t.Fatalf("B's list: %v %+v", err, lb)
	}
	ga, err := a.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("secret")})
	if err != nil || aws.ToString(ga.Configuration.FunctionArn) != "arn:aws:lambda:us-east-1:111111111111:function:secret" {
		t.Fatalf("A's function changed: %v", err)
	}
	sa, _ := a.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	sb, _ := b.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
	if sa.AccountUsage.FunctionCount != 1 || sb.AccountUsage.FunctionCount != 1 {
		t.Fatalf("usage leaks across accounts: A %d B %d", sa.AccountUsage.FunctionCount, sb.AccountUsage.FunctionCount)
	}
}
