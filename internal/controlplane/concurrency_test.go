package controlplane

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/counting"
)

// storeProvisioning is the configuration half of provisioned concurrency
// (the server adds the sandboxes): allocation is reported as requested,
// and failed once the state recorded a failure.
type storeProvisioning struct{ st *counting.Store }

func (p storeProvisioning) status(pc counting.ProvisionedConfig) ProvisionedStatus {
	return ProvisionedStatus{Qualifier: pc.Qualifier, Requested: pc.Requested, Allocated: pc.Requested,
		LastModified: time.UnixMilli(pc.LastModified), StatusReason: pc.Failed}
}

func (p storeProvisioning) PutProvisioned(ctx context.Context, account, function, qualifier string, n int) (ProvisionedStatus, error) {
	if err := p.st.PutProvisioned(ctx, account, function, qualifier, n); err != nil {
		return ProvisionedStatus{}, err
	}
	pc, _ := p.st.Provisioned(account, function, qualifier)
	return p.status(pc), nil
}

func (p storeProvisioning) GetProvisioned(_ context.Context, account, function, qualifier string) (ProvisionedStatus, bool) {
	pc, ok := p.st.Provisioned(account, function, qualifier)
	return p.status(pc), ok
}

func (p storeProvisioning) DeleteProvisioned(ctx context.Context, account, function, qualifier string) error {
	return p.st.DeleteProvisioned(ctx, account, function, qualifier)
}

func (p storeProvisioning) ListProvisioned(_ context.Context, account, function string) []ProvisionedStatus {
	var out []ProvisionedStatus
	for _, pc := range p.st.ListProvisioned(account, function) {
		out = append(out, p.status(pc))
	}
	return out
}

// newCountingEnv is a Service with the real counting state on the same
// single-voter consensus node, as the server wires it.
func newCountingEnv(t *testing.T) (*env, *counting.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	node, err := consensus.Open(ctx, consensus.Config{Dir: dir + "/raft", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2020, 4, 10, 19, 6, 32, 0, time.UTC)}
	svc, err := New(Config{DataDir: dir, Node: node, Logger: testLogger(t), Now: clk.Now})
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	st := counting.NewStore(node)
	node.Register(counting.PartName, st.State)
	svc.SetConcurrency(st)
	svc.SetProvisioning(storeProvisioning{st})
	if err := node.Start(ctx); err != nil {
		node.Close()
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, node: node, svc: svc, clk: clk}
	t.Cleanup(e.Close)
	return e, st
}

// TestProvisionedConcurrencyLimitsSDK drives reserved and provisioned
// concurrency through the management API with aws-sdk-go-v2, checking
// Lambda's exceptions and messages as the SDK decodes them and
// GetAccountSettings' UnreservedConcurrentExecutions after every step.
func TestProvisionedConcurrencyLimitsSDK(t *testing.T) {
	ctx := context.Background()
	e, st := newCountingEnv(t)
	c, _ := e.sdkClients(t)
	for _, name := range []string{"r", "u"} {
		if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimePython312,
			Role: aws.String(role), Handler: aws.String("index.handler"), Code: &types.FunctionCode{ZipFile: pyZip(t, `1`)}, Publish: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("r"), ZipFile: pyZip(t, `2`), Publish: true}); err != nil {
		t.Fatal(err)
	}
	for alias, v := range map[string]string{"live": "2", "old": "1"} {
		if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("r"), Name: aws.String(alias), FunctionVersion: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
	}
	prov := func(fn, q string, n int32) func() error {
		return func() error {
			_, err := c.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String(fn), Qualifier: aws.String(q), ProvisionedConcurrentExecutions: aws.Int32(n)})
			return err
		}
	}
	res := func(fn string, n int32) func() error {
		return func() error {
			_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(fn), ReservedConcurrentExecutions: aws.Int32(n)})
			return err
		}
	}
	delRes := func(fn string) func() error {
		return func() error {
			_, err := c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String(fn)})
			return err
		}
	}
	const ipv = "InvalidParameterValueException"
	steps := []struct {
		name       string
		do         func() error
		msg        string // "" → success
		unreserved int32
		code       string // "" → InvalidParameterValueException when msg is set
	}{
		{"reserve r 10", res("r", 10), "", 990, ""},
		{"version 1 takes 6 of it", prov("r", "1", 6), "", 990, ""},
		{"alias live over the rest", prov("r", "live", 5), "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function", 990, ""},
		{"alias live takes the rest", prov("r", "live", 4), "", 990, ""},
		{"version 2 is under alias live's config", prov("r", "2", 1), "Version is pointed by a Provisioned Concurrency alias", 990, "ResourceConflictException"},
		{"alias old points at provisioned version 1", prov("r", "old", 1), "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version", 990, "ResourceConflictException"},
		{"reservation under the total", res("r", 9), " ReservedConcurrentExecutions  9 should not be lower than function's total provisioned concurrency [10].", 990, ""},
		{"reservation removed: provisioned leaves the unreserved pool", delRes("r"), "", 990, ""},
		{"reserve again", res("r", 10), "", 990, ""},
		{"u: more than the unreserved pool", prov("u", "1", 991), "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [990].", 990, ""},
		{"u: would leave under 100", prov("u", "1", 891), "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].", 990, ""},
		{"u: leaves exactly 100", prov("u", "1", 890), "", 100, ""},
		{"a reservation elsewhere is now refused", res("u", 891), "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].", 100, ""},
		{"reserving u keeps its provisioned", res("u", 890), "", 100, ""},
	}
	for _, s := range steps {
		err := s.do()
		if s.code == "" {
			s.code = ipv
		}
		var ae smithy.APIError
		switch {
		case s.msg == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.msg != "" && (!errors.As(err, &ae) || ae.ErrorCode() != s.code || ae.ErrorMessage() != s.msg):
			t.Fatalf("%s: got %v, want %s %q", s.name, err, s.code, s.msg)
		}
		out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		if u := aws.ToInt32(out.AccountLimit.UnreservedConcurrentExecutions); u != s.unreserved {
			t.Fatalf("%s: UnreservedConcurrentExecutions %d, want %d", s.name, u, s.unreserved)
		}
	}
	// A failed allocation reads FAILED with Lambda's reason.
	pc, _ := st.Provisioned(acctA, "r", "live")
	if err := st.MarkProvisionedFailed(ctx, acctA, "r", "live", pc.LastModified, counting.StatusReasonInitFailure); err != nil {
		t.Fatal(err)
	}
	g, err := c.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("r"), Qualifier: aws.String("live")})
	if err != nil || g.Status != types.ProvisionedConcurrencyStatusEnumFailed || aws.ToString(g.StatusReason) != "FUNCTION_ERROR_INIT_FAILURE" {
		t.Fatalf("failed config: %+v %v", g, err)
	}
}

func TestProvisionedOutputStatus(t *testing.T) {
	tests := []struct {
		st             ProvisionedStatus
		status, reason string
		alloc          int
	}{
		{ProvisionedStatus{Requested: 3}, "IN_PROGRESS", "", 0},
		{ProvisionedStatus{Requested: 3, Allocated: 2}, "IN_PROGRESS", "", 2},
		{ProvisionedStatus{Requested: 3, Allocated: 3}, "READY", "", 3},
		{ProvisionedStatus{Requested: 3, Allocated: 5}, "READY", "", 3}, // lowered: the extra ones are going
		{ProvisionedStatus{Requested: 3, StatusReason: "FUNCTION_ERROR_INIT_FAILURE"}, "FAILED", "FUNCTION_ERROR_INIT_FAILURE", 0},
	}
	for _, tt := range tests {
		out := provisionedOutput(tt.st, "")
		if out.Status != tt.status || out.StatusReason != tt.reason || out.AllocatedProvisionedConcurrentExecutions != tt.alloc {
			t.Errorf("%+v → %+v", tt.st, out)
		}
	}
}
