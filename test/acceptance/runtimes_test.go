package acceptance

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

func decodeB64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

var (
	reportRE = regexp.MustCompile(`REPORT RequestId: [0-9a-f-]{36}\tDuration: [0-9.]+ ms\tBilled Duration: [0-9]+ ms\tMemory Size: 128 MB\tMax Memory Used: [0-9]+ MB\t`)
	initRE   = regexp.MustCompile(`Init Duration: [0-9.]+ ms`)
)

// TestRuntimes runs the same scenarios on every runtime: success with the
// context and environment Lambda gives, a raised error, a timeout, and a
// cold start followed by a warm one.
func TestRuntimes(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	for _, fx := range fixtures() {
		t.Run(fx.name, func(t *testing.T) {
			name := "rt-" + fx.name
			created := createFunction(t, c, name, fx)

			// Cold, then warm: the same sandbox serves the second invoke.
			cold := invoke(t, c, name, map[string]any{"action": "echo", "n": 1})
			if cold.Status != 200 || cold.FnError != "" {
				t.Fatalf("cold invoke: status %d error %q payload %s\nlog:\n%s", cold.Status, cold.FnError, cold.Payload, cold.Log)
			}
			warm := invoke(t, c, name, map[string]any{"action": "echo", "n": 2})
			if warm.FnError != "" {
				t.Fatalf("warm invoke error %q: %s", warm.FnError, warm.Payload)
			}
			if cold.Response["instance"] != warm.Response["instance"] {
				t.Errorf("second invoke did not reuse the warm sandbox: %v vs %v", cold.Response["instance"], warm.Response["instance"])
			}
			if !initRE.MatchString(cold.Log) {
				t.Errorf("cold REPORT lacks Init Duration:\n%s", cold.Log)
			}
			if initRE.MatchString(warm.Log) {
				t.Errorf("warm REPORT has Init Duration:\n%s", warm.Log)
			}
			for _, l := range []string{cold.Log, warm.Log} {
				if !strings.Contains(l, "START RequestId: ") || !strings.Contains(l, "END RequestId: ") || !reportRE.MatchString(l) {
					t.Errorf("log lacks START/END/REPORT in Lambda's format:\n%s", l)
				}
				if !strings.Contains(l, " saw echo") {
					t.Errorf("log lacks the function's own output:\n%s", l)
				}
				if strings.Index(l, " saw echo") > strings.Index(l, "END RequestId") {
					t.Errorf("function output after END:\n%s", l)
				}
			}

			// Context and environment.
			r := cold.Response
			checks := map[string]any{
				"function_name":    name,
				"function_version": "$LATEST",
				"arn":              aws.ToString(created.FunctionArn),
				"env":              "hello from " + fx.name,
				"region":           "us-east-1",
				"log_group":        "/aws/lambda/" + name,
				"handler_env":      fx.handler,
			}
			for k, want := range checks {
				if r[k] != want {
					t.Errorf("%s = %v, want %v", k, r[k], want)
				}
			}
			if r["memory"] != float64(128) {
				t.Errorf("memory = %v", r["memory"])
			}
			if rem, _ := r["remaining"].(float64); rem <= 0 || rem > 10000 {
				t.Errorf("remaining time = %v, want within (0, 10000]", r["remaining"])
			}
			if id, _ := r["request_id"].(string); !strings.Contains(cold.Log, "START RequestId: "+id) {
				t.Errorf("request id %q not the one in the log:\n%s", id, cold.Log)
			}
			if ev, _ := r["event"].(map[string]any); ev["n"] != float64(1) {
				t.Errorf("event not delivered: %v", r["event"])
			}

			// A raised error: 200 with X-Amz-Function-Error and the runtime's JSON.
			fail := invoke(t, c, name, map[string]any{"action": "error", "msg": "x1"})
			if fail.Status != 200 || fail.FnError != "Unhandled" {
				t.Fatalf("error invoke: status %d FunctionError %q", fail.Status, fail.FnError)
			}
			if msg, _ := fail.Response["errorMessage"].(string); !strings.Contains(msg, "boom: x1") {
				t.Errorf("errorMessage = %q", fail.Response["errorMessage"])
			}
			if fail.Response["errorType"] == nil || fail.Response["errorType"] == "" {
				t.Errorf("no errorType in %s", fail.Payload)
			}

			// Timeout: the sandbox is killed and Lambda's body comes back.
			_, err := c.UpdateFunctionConfiguration(ctx(), &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String(name), Timeout: aws.Int32(1)})
			if err != nil {
				t.Fatal(err)
			}
			to := invoke(t, c, name, map[string]any{"action": "sleep", "ms": 3000})
			if to.FnError != "Unhandled" || to.Response["errorType"] != "Sandbox.Timedout" {
				t.Fatalf("timeout: FunctionError %q body %s", to.FnError, to.Payload)
			}
			want := regexp.MustCompile(`^RequestId: [0-9a-f-]{36} Error: Task timed out after 1\.00 seconds$`)
			if msg, _ := to.Response["errorMessage"].(string); !want.MatchString(msg) {
				t.Errorf("timeout message = %q", msg)
			}
			// The function recovers on a new sandbox.
			again := invoke(t, c, name, map[string]any{"action": "echo"})
			if again.FnError != "" {
				t.Fatalf("after timeout: %s", again.Payload)
			}
		})
	}
}

// TestNodeCallbackHandler covers the callback style of Node handlers.
func TestNodeCallbackHandler(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	fx := fixtures()[2]
	fx.handler = "index.callback"
	createFunction(t, c, "cb", fx)
	ok := invoke(t, c, "cb", map[string]any{"action": "echo"})
	if ok.FnError != "" || ok.Response["runtime"] != "nodejs-cjs" {
		t.Fatalf("callback success: %s", ok.Payload)
	}
	bad := invoke(t, c, "cb", map[string]any{"action": "error"})
	if bad.FnError != "Unhandled" || !strings.Contains(string(bad.Payload), "callback boom") {
		t.Fatalf("callback error: %q %s", bad.FnError, bad.Payload)
	}
}

// TestInitAndCrashErrors covers failures outside the handler: a missing
// module, a missing bootstrap, a runtime that exits mid-invoke and a Go panic.
func TestInitAndCrashErrors(t *testing.T) {
	s := startServer(t, "")
	c := s.client(t)
	fx := fixtures()

	py := fx[1]
	py.handler = "nosuchmodule.handler"
	createFunction(t, c, "py-badmod", py)
	r := invoke(t, c, "py-badmod", map[string]any{})
	if r.FnError != "Unhandled" || r.Response["errorType"] != "Runtime.ImportModuleError" {
		t.Errorf("bad module: %q %s", r.FnError, r.Payload)
	}

	noboot := fx[0]
	noboot.zip = func(t *testing.T) []byte { return mustZip(t, "testdata/python") }
	createFunction(t, c, "no-bootstrap", noboot)
	r = invoke(t, c, "no-bootstrap", map[string]any{})
	if r.Response["errorType"] != "Runtime.InvalidEntrypoint" || !strings.Contains(string(r.Payload), "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]") {
		t.Errorf("no bootstrap: %s", r.Payload)
	}

	createFunction(t, c, "py-exit", fx[1])
	r = invoke(t, c, "py-exit", map[string]any{"action": "exit"})
	if r.Response["errorType"] != "Runtime.ExitError" || !strings.Contains(string(r.Payload), "Runtime exited with error: exit status 3") {
		t.Errorf("exit: %s", r.Payload)
	}
	if r = invoke(t, c, "py-exit", map[string]any{}); r.FnError != "" {
		t.Errorf("after exit the function should recover: %s", r.Payload)
	}

	createFunction(t, c, "go-panic", fx[0])
	r = invoke(t, c, "go-panic", map[string]any{"action": "panic", "msg": "p1"})
	if r.FnError != "Unhandled" || !strings.Contains(string(r.Payload), "go panic: p1") {
		t.Errorf("panic: %s", r.Payload)
	}
	if r = invoke(t, c, "go-panic", map[string]any{}); r.FnError != "" {
		t.Errorf("after panic the function should recover: %s", r.Payload)
	}

	// Memory beyond MemorySize is killed and reported as Runtime.ExitError.
	createFunction(t, c, "py-oom", fx[1])
	r = invoke(t, c, "py-oom", map[string]any{"action": "alloc", "mb": 400})
	if r.FnError != "Unhandled" || r.Response["errorType"] != "Runtime.ExitError" {
		t.Errorf("oom: %q %s\n%s", r.FnError, r.Payload, r.Log)
	}
}
