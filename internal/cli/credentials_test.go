package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

const (
	kilnCredsDefault = "[default]\naws_access_key_id = AKIDKILNDEFAULT\naws_secret_access_key = kilnsecret\n"
	kilnCredsTeam    = "[team]\naws_access_key_id = AKIDKILNTEAM\naws_secret_access_key = teamsecret\n"
	awsCredsDefault  = "[default]\naws_access_key_id = AKIDAWSDEFAULT\naws_secret_access_key = awssecret\n"
	awsCredsDev      = "[dev]\naws_access_key_id = AKIDAWSDEV\naws_secret_access_key = devsecret\n"
)

func TestResolveCredentials(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares HOME and the working directory (both empty).
		setup       func(t *testing.T, home, work string)
		flags       commonFlags
		wantKey     string
		wantRegion  string
		wantErrText []string // when set, resolution must fail with these
	}{
		{
			name:       "environment variables",
			setup:      func(t *testing.T, home, work string) { setEnvCreds(t, "AKIDENV") },
			wantKey:    "AKIDENV",
			wantRegion: "us-east-1",
		},
		{
			name: "environment beats ./.kiln",
			setup: func(t *testing.T, home, work string) {
				setEnvCreds(t, "AKIDENV")
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
			},
			wantKey:    "AKIDENV",
			wantRegion: "us-east-1",
		},
		{
			name: "shared credentials file, default profile",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
			},
			wantKey:    "AKIDAWSDEFAULT",
			wantRegion: "us-east-1",
		},
		{
			name: "AWS_SHARED_CREDENTIALS_FILE elsewhere",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
				p := writeFile(t, t.TempDir(), "creds", strings.ReplaceAll(awsCredsDefault, "AKIDAWSDEFAULT", "AKIDFROMFILEENV"))
				t.Setenv("AWS_SHARED_CREDENTIALS_FILE", p)
			},
			wantKey:    "AKIDFROMFILEENV",
			wantRegion: "us-east-1",
		},
		{
			name: "AWS files beat ./.kiln",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
			},
			wantKey:    "AKIDAWSDEFAULT",
			wantRegion: "us-east-1",
		},
		{
			name: "AWS_PROFILE selects a profile",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault+awsCredsDev)
				t.Setenv("AWS_PROFILE", "dev")
			},
			wantKey:    "AKIDAWSDEV",
			wantRegion: "us-east-1",
		},
		{
			name: "--profile beats AWS_PROFILE and env keys",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault+awsCredsDev)
				t.Setenv("AWS_PROFILE", "default")
				setEnvCreds(t, "AKIDENV")
			},
			flags:      commonFlags{profile: "dev"},
			wantKey:    "AKIDAWSDEV",
			wantRegion: "us-east-1",
		},
		{
			name: "fallback to ./.kiln/credentials default",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
			},
			wantKey:    "AKIDKILNDEFAULT",
			wantRegion: "us-east-1",
		},
		{
			name: "fallback reads ./.kiln/config region",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
				writeFile(t, work, ".kiln/config", "[default]\nregion = eu-central-1\n")
			},
			wantKey:    "AKIDKILNDEFAULT",
			wantRegion: "eu-central-1",
		},
		{
			name: "fallback: env region beats ./.kiln/config",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
				writeFile(t, work, ".kiln/config", "[default]\nregion = eu-central-1\n")
				t.Setenv("AWS_REGION", "ap-south-1")
			},
			wantKey:    "AKIDKILNDEFAULT",
			wantRegion: "ap-south-1",
		},
		{
			name: "fallback uses AWS_PROFILE's name in ./.kiln",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault+kilnCredsTeam)
				t.Setenv("AWS_PROFILE", "team")
			},
			wantKey:    "AKIDKILNTEAM",
			wantRegion: "us-east-1",
		},
		{
			name: "fallback uses --profile's name in ./.kiln",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault+kilnCredsTeam)
			},
			flags:      commonFlags{profile: "team"},
			wantKey:    "AKIDKILNTEAM",
			wantRegion: "us-east-1",
		},
		{
			name: "assume-role profile never reaches STS and falls back",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/config", "[default]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = base\n")
				writeFile(t, home, ".aws/credentials", "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
			},
			wantKey:    "AKIDKILNDEFAULT",
			wantRegion: "us-east-1",
		},
		{
			name: "assume-role profile without fallback says why",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/config", "[default]\nregion = us-east-1\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = base\n")
				writeFile(t, home, ".aws/credentials", "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
			},
			wantErrText: []string{"Unable to locate credentials", "AWS credential chain", errNetworkCredentials.Error()},
		},
		{
			name:        "nothing anywhere",
			setup:       func(t *testing.T, home, work string) {},
			wantErrText: []string{"Unable to locate credentials", ".kiln/credentials"},
		},
		{
			name: "./.kiln lacks the profile",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, work, ".kiln/credentials", kilnCredsDefault)
			},
			flags:       commonFlags{profile: "nope"},
			wantErrText: []string{"Unable to locate credentials", "nope"},
		},
		{
			name: "region: AWS_DEFAULT_REGION",
			setup: func(t *testing.T, home, work string) {
				setEnvCreds(t, "AKIDENV")
				t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
			},
			wantKey:    "AKIDENV",
			wantRegion: "eu-west-1",
		},
		{
			name: "region: AWS_REGION beats AWS_DEFAULT_REGION",
			setup: func(t *testing.T, home, work string) {
				setEnvCreds(t, "AKIDENV")
				t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
				t.Setenv("AWS_REGION", "eu-west-2")
			},
			wantKey:    "AKIDENV",
			wantRegion: "eu-west-2",
		},
		{
			name: "region: profile's",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
				writeFile(t, home, ".aws/config", "[default]\nregion = sa-east-1\n")
			},
			wantKey:    "AKIDAWSDEFAULT",
			wantRegion: "sa-east-1",
		},
		{
			name: "region: --region beats everything",
			setup: func(t *testing.T, home, work string) {
				writeFile(t, home, ".aws/credentials", awsCredsDefault)
				writeFile(t, home, ".aws/config", "[default]\nregion = sa-east-1\n")
				t.Setenv("AWS_REGION", "eu-west-2")
			},
			flags:      commonFlags{region: "us-west-2"},
			wantKey:    "AKIDAWSDEFAULT",
			wantRegion: "us-west-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := isolate(t)
			tt.setup(t, os.Getenv("HOME"), work)
			cfg, err := resolveConfig(context.Background(), &tt.flags)
			if tt.wantErrText != nil {
				var ce *credentialsError
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want a credentialsError", err)
				}
				for _, want := range tt.wantErrText {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if creds.AccessKeyID != tt.wantKey {
				t.Errorf("access key = %q, want %q", creds.AccessKeyID, tt.wantKey)
			}
			if cfg.Region != tt.wantRegion {
				t.Errorf("region = %q, want %q", cfg.Region, tt.wantRegion)
			}
		})
	}
}

func setEnvCreds(t *testing.T, akid string) {
	t.Setenv("AWS_ACCESS_KEY_ID", akid)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
}

// TestCredentialsNeverUseNetwork points the container-credentials and
// instance-metadata providers at a loopback listener and checks that nothing
// reaches it: those providers must never run, whatever the environment says.
func TestCredentialsNeverUseNetwork(t *testing.T) {
	work := isolate(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"AccessKeyId":"AKIDLEAK","SecretAccessKey":"x","Token":"t","Expiration":"2099-01-01T00:00:00Z"}`))
	}))
	defer srv.Close()
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL+"/creds")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")

	_, err := resolveConfig(context.Background(), &commonFlags{})
	if err == nil || !strings.Contains(err.Error(), "Unable to locate credentials") {
		t.Fatalf("err = %v, want no credentials", err)
	}
	writeFile(t, work, filepath.Join(kilnDir, "credentials"), kilnCredsDefault)
	cfg, err := resolveConfig(context.Background(), &commonFlags{})
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := cfg.Credentials.Retrieve(context.Background())
	if creds.AccessKeyID != "AKIDKILNDEFAULT" {
		t.Errorf("access key = %q, want the ./.kiln one", creds.AccessKeyID)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("credential providers made %d HTTP requests", n)
	}

	// Point every AWS service endpoint (STS, SSO) at the listener too, and
	// configure providers that would call STS: still no request may leave.
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	token := writeFile(t, t.TempDir(), "token", "eyJhbGciOi")
	for _, setup := range []func(){
		func() {
			writeFile(t, os.Getenv("HOME"), ".aws/config", "[default]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = base\n")
			writeFile(t, os.Getenv("HOME"), ".aws/credentials", "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
		},
		func() {
			t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token)
			t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/x")
		},
	} {
		setup()
		if _, err := resolveConfig(context.Background(), &commonFlags{profile: "missing"}); err == nil {
			t.Error("a missing profile resolved")
		}
		if _, err := resolveConfig(context.Background(), &commonFlags{}); err != nil {
			t.Errorf("the ./.kiln fallback failed: %v", err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("credential providers made %d HTTP requests", n)
	}
}

func TestRefuseNetwork(t *testing.T) {
	for name, c := range map[string]interface {
		Do(*http.Request) (*http.Response, error)
	}{"refuseNetwork": refuseNetwork{}, "refusingBuildableClient": refusingBuildableClient()} {
		for _, u := range []string{"http://169.254.169.254/latest/api/token", "https://sts.amazonaws.com/", "http://127.0.0.1:1/"} {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if !errors.Is(err, errNetworkCredentials) {
				t.Errorf("%s: %s: err = %v", name, u, err)
			}
		}
	}
}
