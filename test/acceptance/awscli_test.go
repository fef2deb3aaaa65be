package acceptance

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLI drives Kiln with the AWS CLI: create, list, invoke with
// --log-type Tail, delete a Python function.
func TestAWSCLI(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the AWS CLI is not installed; .ci/run installs it")
		}
		t.Skip("aws CLI not installed")
	}
	s := startServer(t, "")
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "fn.zip")
	if err := os.WriteFile(zipPath, mustZip(t, "testdata/python"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventPath := filepath.Join(dir, "event.json")
	if err := os.WriteFile(eventPath, []byte(`{"action":"echo","from":"awscli"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(awsBin, append(args, "--endpoint-url", s.endpoint, "--output", "json")...)
		cmd.Env = append(os.Environ(),
			"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.dataDir, "credentials"),
			"AWS_CONFIG_FILE="+filepath.Join(s.dataDir, "config"),
			"AWS_PROFILE=default", "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
		)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("aws %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String()
	}
	var created map[string]any
	out := run("lambda", "create-function", "--function-name", "cli-fn", "--runtime", "python3.12", "--handler", "app.handler",
		"--role", testRole, "--zip-file", "fileb://"+zipPath)
	if err := json.Unmarshal([]byte(out), &created); err != nil || created["FunctionName"] != "cli-fn" {
		t.Fatalf("create-function: %v\n%s", err, out)
	}
	out = run("lambda", "list-functions")
	if !strings.Contains(out, `"cli-fn"`) {
		t.Fatalf("list-functions:\n%s", out)
	}
	respPath := filepath.Join(dir, "resp.json")
	out = run("lambda", "invoke", "--function-name", "cli-fn", "--payload", "fileb://"+eventPath, "--log-type", "Tail", respPath)
	var meta struct {
		StatusCode      int
		LogResult       string
		ExecutedVersion string
	}
	if err := json.Unmarshal([]byte(out), &meta); err != nil || meta.StatusCode != 200 || meta.ExecutedVersion != "$LATEST" {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	logs, _ := base64.StdEncoding.DecodeString(meta.LogResult)
	if !strings.Contains(string(logs), "REPORT RequestId:") || !strings.Contains(string(logs), "python saw echo") {
		t.Errorf("log tail:\n%s", logs)
	}
	resp, _ := os.ReadFile(respPath)
	if !strings.Contains(string(resp), `"from": "awscli"`) && !strings.Contains(string(resp), `"from":"awscli"`) {
		t.Errorf("response: %s", resp)
	}
	run("lambda", "delete-function", "--function-name", "cli-fn")
	out = run("lambda", "list-functions")
	if strings.Contains(out, `"cli-fn"`) {
		t.Errorf("function still listed after delete:\n%s", out)
	}
}
