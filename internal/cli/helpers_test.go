package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// awsEnvVars are the variables the AWS credential and region chain reads;
// isolate clears them so a developer's own AWS setup never leaks into a test.
var awsEnvVars = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCOUNT_ID",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
	"AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL",
	"AWS_ENDPOINT_URL_LAMBDA", "AWS_CA_BUNDLE", "AWS_DEFAULTS_MODE", "AWS_MAX_ATTEMPTS",
	"AWS_RETRY_MODE", "KILN_ENDPOINT",
}

// isolate gives the test an empty HOME and working directory and no AWS
// environment. It returns the working directory.
//
// The SDK computes the default ~/.aws paths once at process start, so
// changing HOME alone would still read the developer's real files; isolate
// points AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE at HOME/.aws instead.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	work := t.TempDir()
	for _, k := range awsEnvVars {
		t.Setenv(k, "")
		os.Unsetenv(k) // t.Setenv restores the old value at cleanup
	}
	t.Setenv("HOME", home)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, ".aws", "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, ".aws", "credentials"))
	t.Chdir(work)
	return work
}

// writeFile writes content to dir/name, creating parent directories.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

// testEnv is Main's env with short waits so no test sleeps for long.
func testEnv(stdin string, stdout, stderr *bytes.Buffer) *env {
	return &env{
		stdin:        strings.NewReader(stdin),
		stdout:       stdout,
		stderr:       stderr,
		httpClient:   newEndpointHTTPClient(),
		pollInterval: 10 * time.Millisecond,
		waitTimeout:  5 * time.Second,
		now:          time.Now,
	}
}

// run runs the kiln client with args and stdin and collects the result.
func run(t *testing.T, ctx context.Context, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := testEnv(stdin, &out, &errb).main(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}
