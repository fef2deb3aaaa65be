package acceptance

import (
	"strings"
	"testing"
)

// runKiln runs a client verb against s with the admin credentials.
func runKiln(t *testing.T, s *server, args ...string) (string, error) {
	t.Helper()
	return s.Kiln(t, args...)
}

// TestKilnCLI deploys, invokes, lists, tails logs and removes with the kiln verbs.
func TestKilnCLI(t *testing.T) {
	s := startServer(t, "")
	if out, err := runKiln(t, s, "deploy", "hello", "testdata/python", "--runtime", "python3.12", "--handler", "app.handler"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	out, err := runKiln(t, s, "invoke", "hello", `{"action":"echo","who":"cli"}`, "--tail")
	if err != nil || !strings.Contains(out, `"who": "cli"`) && !strings.Contains(out, `"who":"cli"`) {
		t.Fatalf("invoke: %v\n%s", err, out)
	}
	if !strings.Contains(out, "REPORT RequestId:") {
		t.Errorf("--tail printed no log:\n%s", out)
	}
	// Redeploy updates in place.
	if out, err := runKiln(t, s, "deploy", "hello", "testdata/python", "--runtime", "python3.12", "--handler", "app.handler", "--memory", "256"); err != nil {
		t.Fatalf("redeploy: %v\n%s", err, out)
	}
	out, err = runKiln(t, s, "ls")
	if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "256") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	out, err = runKiln(t, s, "logs", "hello")
	if err != nil || !strings.Contains(out, "START RequestId:") || !strings.Contains(out, "python saw echo") {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	if out, err := runKiln(t, s, "invoke", "hello", `{"action":"error","msg":"cli"}`); err == nil || !strings.Contains(out, "boom: cli") {
		t.Errorf("failed invoke should exit non-zero and print the error: %v\n%s", err, out)
	}
	if out, err := runKiln(t, s, "rm", "hello"); err != nil {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	out, err = runKiln(t, s, "invoke", "hello")
	if err == nil || !strings.Contains(out, "ResourceNotFoundException") {
		t.Errorf("invoke after rm: %v\n%s", err, out)
	}
	if out, err := runKiln(t, s, "deploy", "--help"); err != nil || !strings.Contains(out, "--runtime") {
		t.Errorf("deploy --help: %v\n%s", err, out)
	}
}
