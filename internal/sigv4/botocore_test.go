package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestVerifyBotocore signs requests with botocore (boto3's Lambda client,
// what the AWS CLI uses) and verifies them in a local server. It is skipped
// when python3 with boto3 is not installed.
func TestVerifyBotocore(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if err := exec.Command(py, "-c", "import boto3").Run(); err != nil {
		t.Skip("boto3 not installed")
	}
	rec := newRecorder(NewVerifier(testRegion, testService, testKeys(), nil))
	srv := httptest.NewServer(rec)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/botocore_client.py", srv.URL)
	cmd.Env = botoEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore client: %v\n%s", err, stderr.String())
	}

	results, paths := rec.all()
	var lines []struct{ Name, Error string }
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l struct{ Name, Error string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != len(results) {
		t.Fatalf("%d client calls but %d requests reached the server (%q)\n%s", len(lines), len(results), paths, out)
	}
	for i, l := range lines {
		wantErr := ""
		if l.Name == "wrong secret" {
			wantErr = "InvalidSignatureException"
		}
		if l.Error != wantErr {
			t.Errorf("%s: client saw %q, want %q (server: %v, path %s)", l.Name, l.Error, wantErr, results[i], paths[i])
		}
		if (results[i] != nil) != (wantErr != "") {
			t.Errorf("%s: Verify(%s) = %v", l.Name, paths[i], results[i])
		}
	}
}

// botoEnv keeps the child away from the user's AWS config, instance
// metadata and proxies: it may only talk to the loopback test server.
func botoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.Contains(strings.ToLower(k), "proxy") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"NO_PROXY=*",
	)
}
