package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/codepkg"
)

// defaultRole is sent when --role is not given. The account id is not known
// on the client side; Kiln checks only the ARN's pattern.
const defaultRole = "arn:aws:iam::123456789012:role/kiln"

const deployAbout = `Creates function NAME from PATH, a directory (zipped on the fly) or a .zip
file. If NAME exists, updates its code and then its configuration, waiting for
each update to finish. Prints the function's ARN, CodeSha256 and version.`

type deployFlags struct {
	runtime     string
	handler     string
	memory      int
	timeout     int
	description string
	role        string
	env         envVars
}

func newDeployCommand() (*command, *deployFlags) {
	cmd := newCommand("deploy", "deploy NAME PATH --runtime RT --handler H [flags]", deployAbout, 2, 2, true)
	f := &deployFlags{env: envVars{}}
	cmd.fs.StringVar(&f.runtime, "runtime", "", "runtime `id`, e.g. python3.12, nodejs20.x, provided.al2023 (required)")
	cmd.fs.StringVar(&f.handler, "handler", "", "`handler`, e.g. app.handler (required)")
	cmd.fs.IntVar(&f.memory, "memory", 0, "memory in `MB` (default: the server's, 128)")
	cmd.fs.IntVar(&f.timeout, "timeout", 0, "timeout in `seconds` (default: the server's, 3)")
	cmd.fs.StringVar(&f.description, "description", "", "function `description`")
	cmd.fs.StringVar(&f.role, "role", "", "execution role `ARN` (default "+defaultRole+")")
	cmd.fs.Var(f.env, "env", "environment variable `KEY=VALUE`; repeat for more (replaces the function's variables)")
	return cmd, f
}

func runDeploy(ctx context.Context, e *env, args []string) int {
	cmd, f := newDeployCommand()
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	switch {
	case f.runtime == "":
		return cmd.usageError(e, "--runtime is required")
	case f.handler == "":
		return cmd.usageError(e, "--handler is required")
	case f.memory < 0 || f.memory > 1<<20:
		return cmd.usageError(e, "--memory must be a positive number of MB")
	case f.timeout < 0 || f.timeout > 1<<20:
		return cmd.usageError(e, "--timeout must be a positive number of seconds")
	}
	name, path := pos[0], pos[1]
	zip, err := loadCode(path)
	if err != nil {
		return e.fail("", err)
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	fc, created, err := c.deploy(ctx, e, name, zip, f)
	if err != nil {
		return e.fail("", err)
	}
	status := "updated"
	if created {
		status = "created"
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "Status:\t%s\n", status)
	fmt.Fprintf(tw, "FunctionArn:\t%s\n", aws.ToString(fc.FunctionArn))
	fmt.Fprintf(tw, "CodeSha256:\t%s\n", aws.ToString(fc.CodeSha256))
	fmt.Fprintf(tw, "Version:\t%s\n", aws.ToString(fc.Version))
	_ = tw.Flush()
	return exitOK
}

// loadCode returns the deployment package at path: a directory is zipped, a
// .zip file is read as is. Anything else is refused.
func loadCode(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("code path: %w", err)
	}
	if fi.IsDir() {
		// ZipDir's errors already name the directory.
		return codepkg.ZipDir(path)
	}
	if !fi.Mode().IsRegular() || !strings.EqualFold(filepath.Ext(path), ".zip") {
		return nil, fmt.Errorf("code path %s: want a directory or a .zip file", path)
	}
	zip, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("code path: %w", err)
	}
	if !isZip(zip) {
		return nil, fmt.Errorf("code path %s: not a zip file", path)
	}
	return zip, nil
}

// isZip checks the signature of a local file header, or of the end of
// central directory record for an empty archive.
func isZip(b []byte) bool {
	return bytes.HasPrefix(b, []byte("PK\x03\x04")) || bytes.HasPrefix(b, []byte("PK\x05\x06"))
}

// deploy creates the function, or updates it when it already exists. It
// returns the function's configuration once it is ready for invokes.
func (c *client) deploy(ctx context.Context, e *env, name string, zip []byte, f *deployFlags) (*types.FunctionConfiguration, bool, error) {
	role := f.role
	if role == "" {
		role = defaultRole
	}
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Role:         aws.String(role),
		Runtime:      types.Runtime(f.runtime),
		Handler:      aws.String(f.handler),
		Code:         &types.FunctionCode{ZipFile: zip},
		MemorySize:   optInt32(f.memory),
		Timeout:      optInt32(f.timeout),
	}
	if f.description != "" {
		in.Description = aws.String(f.description)
	}
	if len(f.env) > 0 {
		in.Environment = &types.Environment{Variables: f.env}
	}
	out, err := c.lambda.CreateFunction(ctx, in)
	if err == nil {
		fc := createdConfig(out)
		if fc.State == types.StatePending {
			fc, err = c.waitReady(ctx, e, name)
		}
		return fc, true, err
	}
	var conflict *types.ResourceConflictException
	if !errors.As(err, &conflict) {
		return nil, false, err
	}

	// The function exists. AWS refuses a configuration update while the code
	// update is still in progress, so wait in between.
	codeOut, err := c.lambda.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{
		FunctionName: aws.String(name),
		ZipFile:      zip,
	})
	if err != nil {
		return nil, false, err
	}
	if codeOut.LastUpdateStatus == types.LastUpdateStatusInProgress || codeOut.State == types.StatePending {
		if _, err := c.waitReady(ctx, e, name); err != nil {
			return nil, false, err
		}
	}
	upd := &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String(name),
		Runtime:      types.Runtime(f.runtime),
		Handler:      aws.String(f.handler),
		MemorySize:   optInt32(f.memory),
		Timeout:      optInt32(f.timeout),
	}
	if f.role != "" {
		upd.Role = aws.String(f.role)
	}
	if f.description != "" {
		upd.Description = aws.String(f.description)
	}
	if len(f.env) > 0 {
		upd.Environment = &types.Environment{Variables: f.env}
	}
	cfgOut, err := c.lambda.UpdateFunctionConfiguration(ctx, upd)
	if err != nil {
		return nil, false, err
	}
	fc := updatedConfig(cfgOut)
	if fc.LastUpdateStatus == types.LastUpdateStatusInProgress || fc.State == types.StatePending {
		fc, err = c.waitReady(ctx, e, name)
	}
	return fc, false, err
}

// waitReady polls the function's configuration until it is neither Pending
// nor InProgress, as the SDK's FunctionActiveV2 / FunctionUpdatedV2 waiters
// do, and fails when the state or the last update failed.
func (c *client) waitReady(ctx context.Context, e *env, name string) (*types.FunctionConfiguration, error) {
	ctx, cancel := context.WithTimeout(ctx, e.waitTimeout)
	defer cancel()
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	for {
		out, err := c.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{
			FunctionName: aws.String(name),
		})
		if err != nil {
			return nil, err
		}
		fc := getConfig(out)
		switch {
		case fc.State == types.StateFailed:
			return nil, fmt.Errorf("function %s failed: %s (%s)", name, aws.ToString(fc.StateReason), fc.StateReasonCode)
		case fc.LastUpdateStatus == types.LastUpdateStatusFailed:
			return nil, fmt.Errorf("update of function %s failed: %s (%s)", name,
				aws.ToString(fc.LastUpdateStatusReason), fc.LastUpdateStatusReasonCode)
		case fc.State != types.StatePending && fc.LastUpdateStatus != types.LastUpdateStatusInProgress:
			return fc, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for function %s to be ready: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func optInt32(v int) *int32 {
	if v == 0 {
		return nil
	}
	return aws.Int32(int32(v))
}

// The SDK returns the same FunctionConfiguration fields under three output
// types; these copy the ones deploy uses.

func createdConfig(o *lambda.CreateFunctionOutput) *types.FunctionConfiguration {
	return &types.FunctionConfiguration{
		FunctionArn: o.FunctionArn, CodeSha256: o.CodeSha256, Version: o.Version,
		State: o.State, StateReason: o.StateReason, StateReasonCode: o.StateReasonCode,
		LastUpdateStatus: o.LastUpdateStatus,
	}
}

func updatedConfig(o *lambda.UpdateFunctionConfigurationOutput) *types.FunctionConfiguration {
	return &types.FunctionConfiguration{
		FunctionArn: o.FunctionArn, CodeSha256: o.CodeSha256, Version: o.Version,
		State: o.State, StateReason: o.StateReason, StateReasonCode: o.StateReasonCode,
		LastUpdateStatus: o.LastUpdateStatus,
	}
}

func getConfig(o *lambda.GetFunctionConfigurationOutput) *types.FunctionConfiguration {
	return &types.FunctionConfiguration{
		FunctionArn: o.FunctionArn, CodeSha256: o.CodeSha256, Version: o.Version,
		State: o.State, StateReason: o.StateReason, StateReasonCode: o.StateReasonCode,
		LastUpdateStatus:           o.LastUpdateStatus,
		LastUpdateStatusReason:     o.LastUpdateStatusReason,
		LastUpdateStatusReasonCode: o.LastUpdateStatusReasonCode,
	}
}
