package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"
)

// kilnDir holds the fallback credentials and config, relative to the
// working directory: a project-local place that `kiln server` and
// `kiln account create` output can fill without touching ~/.aws.
const kilnDir = ".kiln"

const defaultRegion = "us-east-1"

// errNetworkCredentials is what any credential provider that tries to reach
// the network (STS, SSO, IMDS, container endpoints) gets instead: Kiln keys
// are static, and this machine must not contact AWS or metadata addresses.
var errNetworkCredentials = errors.New("kiln does not let credential providers use the network")

// refuseNetwork is the HTTP client given to the SDK's credential machinery.
type refuseNetwork struct{}

func (refuseNetwork) Do(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("%w (refused %s %s)", errNetworkCredentials, r.Method, r.URL.Redacted())
}

// refusingBuildableClient is the config-wide HTTP client. It must be the
// SDK's BuildableClient because config loading adds $AWS_CA_BUNDLE to it;
// its dialer refuses every address before any DNS lookup or connection.
func refusingBuildableClient() *awshttp.BuildableClient {
	refuse := func(_ context.Context, network, addr string) (net.Conn, error) {
		return nil, fmt.Errorf("%w (refused %s %s)", errNetworkCredentials, network, addr)
	}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = nil
		tr.DialContext = refuse
		tr.DialTLSContext = refuse
	})
}

// credentialsError says no usable credentials were found. It keeps why each
// place failed so the message can point at the real problem.
type credentialsError struct {
	awsErr  error // from the AWS tools' chain
	kilnErr error // from ./.kiln, nil when there was nothing there
}

func (e *credentialsError) Error() string {
	var b strings.Builder
	b.WriteString("Unable to locate credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
		"choose a profile with --profile or AWS_PROFILE, or put a [default] profile in " +
		filepath.Join(kilnDir, "credentials") + " ('kiln account create' prints one).")
	if e.awsErr != nil && !isEndOfChain(e.awsErr) {
		fmt.Fprintf(&b, "\n  AWS credential chain: %v", e.awsErr)
	}
	if e.kilnErr != nil {
		fmt.Fprintf(&b, "\n  %s: %v", kilnDir, e.kilnErr)
	}
	return b.String()
}

func (e *credentialsError) Unwrap() []error { return []error{e.awsErr, e.kilnErr} }

// isEndOfChain reports whether err only says the default chain ran out
// (it ends at the disabled instance-metadata client), which is not worth
// showing to the user.
func isEndOfChain(err error) bool {
	var oe *smithy.OperationError
	return errors.As(err, &oe) && oe.ServiceID == "ec2imds"
}

// loadOptions are the options every config load uses: the user's region and
// profile choices, and no way for any credential provider to use the network.
func loadOptions(cf *commonFlags) []func(*config.LoadOptions) error {
	opts := []func(*config.LoadOptions) error{
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
		config.WithHTTPClient(refusingBuildableClient()),
		config.WithEndpointCredentialOptions(func(o *endpointcreds.Options) {
			o.HTTPClient = refuseNetwork{}
		}),
		config.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) {
			o.Client = imds.New(imds.Options{
				ClientEnableState: imds.ClientDisabled,
				HTTPClient:        refuseNetwork{},
			})
		}),
	}
	if cf.region != "" {
		opts = append(opts, config.WithRegion(cf.region))
	}
	if cf.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cf.profile))
	}
	return opts
}

// resolveConfig finds region and credentials the way the AWS tools do
// (flags, environment, AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE,
// AWS_PROFILE), and when that chain yields no credentials, reads the same
// profile (default "default") from ./.kiln/credentials and ./.kiln/config.
// The returned config always has a region and working credentials.
func resolveConfig(ctx context.Context, cf *commonFlags) (aws.Config, error) {
	cfg, awsErr := config.LoadDefaultConfig(ctx, loadOptions(cf)...)
	if awsErr == nil {
		if awsErr = checkCredentials(ctx, cfg); awsErr == nil {
			return withDefaultRegion(cfg), nil
		}
	}

	credsFile := filepath.Join(kilnDir, "credentials")
	configFile := filepath.Join(kilnDir, "config")
	if !fileExists(credsFile) && !fileExists(configFile) {
		return aws.Config{}, &credentialsError{awsErr: awsErr}
	}
	opts := append(loadOptions(cf),
		config.WithSharedCredentialsFiles([]string{credsFile}),
		config.WithSharedConfigFiles([]string{configFile}),
		config.WithSharedConfigProfile(profileName(cf)),
	)
	cfg, kilnErr := config.LoadDefaultConfig(ctx, opts...)
	if kilnErr == nil {
		if kilnErr = checkCredentials(ctx, cfg); kilnErr == nil {
			return withDefaultRegion(cfg), nil
		}
	}
	return aws.Config{}, &credentialsError{awsErr: awsErr, kilnErr: kilnErr}
}

// profileName is the profile the AWS tools would use.
func profileName(cf *commonFlags) string {
	for _, p := range []string{cf.profile, os.Getenv("AWS_PROFILE"), os.Getenv("AWS_DEFAULT_PROFILE")} {
		if p != "" {
			return p
		}
	}
	return "default"
}

func checkCredentials(ctx context.Context, cfg aws.Config) error {
	if cfg.Credentials == nil {
		return errors.New("no credential provider")
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return err
	}
	if !creds.HasKeys() {
		return errors.New("credentials have no access key")
	}
	return nil
}

func withDefaultRegion(cfg aws.Config) aws.Config {
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	return cfg
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
