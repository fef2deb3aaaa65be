package runtimeapi

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/test/fnbuild"
)

// sandbox is a runtime process started against a real Server, the way the
// worker does it (minus the isolation).
type sandbox struct {
	s       *Server
	out     *syncBuffer
	alive   context.Context // ends when the process exits
	exited  chan struct{}
	exitErr error
}

type sandboxSpec struct {
	runtime  string
	handler  string
	taskRoot string
	argv     []string // default: the runtime's Command
	user     map[string]string
}

func startSandbox(t *testing.T, spec sandboxSpec) *sandbox {
	t.Helper()
	rt, ok := runtimes.Lookup(spec.runtime)
	if !ok {
		t.Fatalf("unknown runtime %s", spec.runtime)
	}
	rtDir := t.TempDir()
	if err := runtimes.Install(rtDir); err != nil {
		t.Fatal(err)
	}
	argv := spec.argv
	if argv == nil {
		var err error
		if argv, err = rt.Command(spec.taskRoot, rtDir); err != nil {
			t.Skipf("runtime unavailable: %v", err)
		}
	}
	s, url := startServer(t, Config{FunctionName: "e2e-fn", FunctionVersion: "$LATEST", Handler: spec.handler})
	env := runtimes.Environment(runtimes.EnvParams{
		Runtime: rt, FunctionName: "e2e-fn", FunctionVersion: "$LATEST", Handler: spec.handler,
		Region: "us-east-1", MemoryMB: 256, RuntimeAPI: strings.TrimPrefix(url, "http://"),
		TaskRoot: spec.taskRoot, RuntimeDir: rtDir, LogGroup: "/aws/lambda/e2e-fn",
		LogStream: "2025/01/02/[$LATEST]0123abcd", InitType: "on-demand", User: spec.user,
	})
	sb := &sandbox{s: s, out: newSyncBuffer(), exited: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = spec.taskRoot
	cmd.Stdout, cmd.Stderr = sb.out, sb.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	alive, cancel := context.WithCancel(context.Background())
	sb.alive = alive
	go func() {
		sb.exitErr = cmd.Wait()
		cancel()
		close(sb.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-sb.exited
		if t.Failed() || os.Getenv("KILN_SHOW_RUNTIME_OUTPUT") != "" {
			t.Logf("runtime output:\n%s", sb.out)
		}
	})
	return sb
}

func (sb *sandbox) waitInit(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(sb.alive, 10*time.Second)
	defer cancel()
	return sb.s.WaitInit(ctx)
}

func (sb *sandbox) invoke(t *testing.T, inv *Invocation, timeout time.Duration) (*Result, error) {
	t.Helper()
	if inv.Deadline.IsZero() {
		inv.Deadline = time.Now().Add(timeout)
	}
	ctx, cancel := context.WithDeadline(sb.alive, inv.Deadline)
	defer cancel()
	return sb.s.Invoke(ctx, inv)
}

// output waits until the runtime's output (copied by a goroutine of
// os/exec) satisfies ok, and returns it.
func (sb *sandbox) output(ok func(string) bool) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := sb.out.String()
		if ok(out) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitExit waits for the process to end and returns its exit code.
func (sb *sandbox) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-sb.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("runtime did not exit")
	}
	var ee *exec.ExitError
	if errors.As(sb.exitErr, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return m
}

func wantFields(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		gv, _ := json.Marshal(got[k])
		wv, _ := json.Marshal(v)
		if string(gv) != string(wv) {
			t.Errorf("%s = %s, want %s", k, gv, wv)
		}
	}
}

const (
	testArn   = "arn:aws:lambda:us-east-1:123456789012:function:e2e-fn:live"
	testTrace = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
)

func ctxInvocation(id string) *Invocation {
	return &Invocation{
		RequestID: id, Payload: []byte(`{"action":"ctx"}`), InvokedFunctionArn: testArn, TraceID: testTrace,
		ClientContext:   `{"custom":{"k":"v"},"env":{},"client":{}}`,
		CognitoIdentity: `{"cognitoIdentityId":"us-east-1:abc","cognitoIdentityPoolId":"us-east-1:pool"}`,
		Deadline:        time.Now().Add(30 * time.Second).Truncate(time.Millisecond),
	}
}

// ---- Go (aws-lambda-go, provided runtime) ----------------------------------

func buildGoFunction(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	fnbuild.Binary(t, "./testdata/gofn", dir)
	return dir
}

func TestGoFunctionEndToEnd(t *testing.T) {
	taskRoot := buildGoFunction(t)
	start := func(t *testing.T) *sandbox {
		sb := startSandbox(t, sandboxSpec{runtime: "provided.al2023", handler: "bootstrap", taskRoot: taskRoot,
			user: map[string]string{"GREETING": "hi", "_LAMBDA_SERVER_PORT": "9999"}})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		return sb
	}

	t.Run("warm invokes", func(t *testing.T) {
		sb := start(t)
		tests := []struct {
			name      string
			inv       *Invocation
			funcErr   bool
			errType   string
			payload   string   // exact, if set
			contains  []string // substrings otherwise
			checkJSON map[string]any
		}{
			{name: "echo", inv: &Invocation{RequestID: "go-1", Payload: []byte(`{"action":"echo","value":"hi"}`)},
				payload: `{"action":"echo","size":0,"value":"hi"}`},
			{name: "context", inv: ctxInvocation("go-2"), checkJSON: map[string]any{
				"requestId": "go-2", "arn": testArn, "functionName": "e2e-fn", "version": "$LATEST", "memory": 256,
				"logGroup": "/aws/lambda/e2e-fn", "trace": testTrace, "custom": map[string]any{"k": "v"},
				"identityId": "us-east-1:abc", "greeting": "hi", "serverPortSet": false}},
			{name: "returned error", inv: &Invocation{RequestID: "go-3", Payload: []byte(`{"action":"error"}`)},
				funcErr: true, errType: "errorString", contains: []string{`"errorMessage":"boom"`, `"errorType":"errorString"`}},
			{name: "reader fails mid-stream (trailers)", inv: &Invocation{RequestID: "go-4", Payload: []byte(`{"action":"stream-fail"}`)},
				funcErr: true, errType: "errorString", contains: []string{`"errorMessage":"stream broke"`}},
			{name: "still warm", inv: &Invocation{RequestID: "go-5", Payload: []byte(`{"action":"echo","value":"again"}`)},
				payload: `{"action":"echo","size":0,"value":"again"}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := sb.invoke(t, tt.inv, 10*time.Second)
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if res.FunctionError != tt.funcErr || res.ErrorType != tt.errType {
					t.Errorf("FunctionError=%v ErrorType=%q, want %v %q (payload %s)", res.FunctionError, res.ErrorType, tt.funcErr, tt.errType, res.Payload)
				}
				if tt.payload != "" && string(res.Payload) != tt.payload {
					t.Errorf("payload %s, want %s", res.Payload, tt.payload)
				}
				if sub, ok := contains(string(res.Payload), tt.contains...); !ok {
					t.Errorf("payload %s lacks %s", res.Payload, sub)
				}
				if tt.checkJSON != nil {
					got := decode(t, res.Payload)
					wantFields(t, got, tt.checkJSON)
					if got["deadlineMs"] != float64(tt.inv.Deadline.UnixMilli()) {
						t.Errorf("deadlineMs %v, want %d", got["deadlineMs"], tt.inv.Deadline.UnixMilli())
					}
				}
			})
		}
		// aws-lambda-go's WithEnableSIGTERM registered its internal extension.
		sb.s.mu.Lock()
		n := len(sb.s.extensions)
		sb.s.mu.Unlock()
		if n != 1 {
			t.Errorf("%d extensions registered, want 1", n)
		}
	})

	t.Run("panic exits the process", func(t *testing.T) {
		sb := start(t)
		res, err := sb.invoke(t, &Invocation{RequestID: "go-p", Payload: []byte(`{"action":"panic"}`)}, 10*time.Second)
		if err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		if !res.FunctionError || res.ErrorType != "string" || !strings.Contains(string(res.Payload), "kaboom") {
			t.Errorf("result %+v %s", res, res.Payload)
		}
		if code := sb.waitExit(t); code == 0 {
			t.Error("process exited 0 after a panic")
		}
	})

	t.Run("oversized response", func(t *testing.T) {
		sb := start(t)
		res, err := sb.invoke(t, &Invocation{RequestID: "go-big", Payload: []byte(`{"action":"big","size":7000000}`)}, 10*time.Second)
		if err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		want := `{"errorMessage":"Response payload size (7000002 bytes) exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`
		if !res.FunctionError || string(res.Payload) != want {
			t.Errorf("result %+v %s", res, res.Payload)
		}
		// aws-lambda-go treats the 413 as fatal, as in Lambda.
		sb.waitExit(t)
	})

	t.Run("timeout abandons the invoke", func(t *testing.T) {
		sb := start(t)
		_, err := sb.invoke(t, &Invocation{RequestID: "go-slow", Payload: []byte(`{"action":"sleep","size":300}`)}, 50*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Invoke = %v, want DeadlineExceeded", err)
		}
		// Its late response gets 400, which makes aws-lambda-go exit.
		sb.waitExit(t)
	})

	t.Run("process exit during invoke", func(t *testing.T) {
		sb := start(t)
		_, err := sb.invoke(t, &Invocation{RequestID: "go-exit", Payload: []byte(`{"action":"exit"}`)}, 10*time.Second)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Invoke = %v, want Canceled (process died)", err)
		}
		if code := sb.waitExit(t); code != 3 {
			t.Errorf("exit code %d", code)
		}
	})
}

// ---- python ---------------------------------------------------------------

func testdataDir(t *testing.T, name string) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPythonEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	root := testdataDir(t, "python")

	t.Run("warm invokes", func(t *testing.T) {
		sb := startSandbox(t, sandboxSpec{runtime: "python3.12", handler: "app.handler", taskRoot: root,
			user: map[string]string{"GREETING": "hello", "AWS_REGION": "mars-1"}})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		tests := []struct {
			name      string
			inv       *Invocation
			funcErr   bool
			errType   string
			payload   string
			contains  []string
			checkJSON map[string]any
		}{
			{name: "echo", inv: &Invocation{RequestID: "py-1", Payload: []byte(`{"action": "echo", "n": [1, 2]}`)},
				payload: `{"action": "echo", "n": [1, 2]}`},
			{name: "none is null", inv: &Invocation{RequestID: "py-2", Payload: []byte(`{"action":"none"}`)}, payload: `null`},
			{name: "context and env", inv: ctxInvocation("py-3"), checkJSON: map[string]any{
				"requestId": "py-3", "functionName": "e2e-fn", "functionVersion": "$LATEST", "arn": testArn,
				"memory": "256", "logGroup": "/aws/lambda/e2e-fn", "logStream": "2025/01/02/[$LATEST]0123abcd",
				"custom": map[string]any{"k": "v"}, "identityId": "us-east-1:abc"}},
			{name: "raised error", inv: &Invocation{RequestID: "py-4", Payload: []byte(`{"action":"error"}`)},
				funcErr: true, errType: "ValueError", contains: []string{
					`"errorMessage": "boom"`, `"errorType": "ValueError"`, `"requestId": "py-4"`,
					`"stackTrace": ["  File \"` + root + `/app.py\", line 17, in handler\n    raise ValueError(\"boom\")\n"]`}},
			{name: "unserializable result", inv: &Invocation{RequestID: "py-5", Payload: []byte(`{"action":"unserializable"}`)},
				funcErr: true, errType: "Runtime.MarshalError", contains: []string{`Unable to marshal response: Object of type set is not JSON serializable`}},
			{name: "bad event", inv: &Invocation{RequestID: "py-6", Payload: []byte(`{not json`)},
				funcErr: true, errType: "Runtime.UnmarshalError", contains: []string{`Unable to unmarshal input`}},
			{name: "oversized response", inv: &Invocation{RequestID: "py-8", Payload: []byte(`{"action":"big","size":7000000}`)},
				funcErr: true, errType: "Function.ResponseSizeTooLarge", contains: []string{`Response payload size (7000002 bytes) exceeded`}},
			{name: "logging, still warm", inv: &Invocation{RequestID: "py-7", Payload: []byte(`{"action":"log"}`)}, payload: `"logged"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := sb.invoke(t, tt.inv, 10*time.Second)
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if res.FunctionError != tt.funcErr || res.ErrorType != tt.errType {
					t.Errorf("FunctionError=%v ErrorType=%q, want %v %q (payload %s)", res.FunctionError, res.ErrorType, tt.funcErr, tt.errType, res.Payload)
				}
				if tt.payload != "" && string(res.Payload) != tt.payload {
					t.Errorf("payload %s, want %s", res.Payload, tt.payload)
				}
				if sub, ok := contains(string(res.Payload), tt.contains...); !ok {
					t.Errorf("payload %s lacks %s", res.Payload, sub)
				}
				if tt.checkJSON != nil {
					got := decode(t, res.Payload)
					wantFields(t, got, tt.checkJSON)
					if r, _ := got["remaining"].(float64); r <= 0 || r > 30000 {
						t.Errorf("remaining %v", got["remaining"])
					}
					wantFields(t, got["env"].(map[string]any), map[string]any{
						"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": root,
						"TZ": ":UTC", "LANG": "en_US.UTF-8", "AWS_LAMBDA_FUNCTION_NAME": "e2e-fn", "AWS_REGION": "us-east-1",
						"GREETING": "hello", "_X_AMZN_TRACE_ID": testTrace, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
						"_LAMBDA_SERVER_PORT": nil,
					})
				}
			})
		}
		// print() stays raw; logging gets Lambda's format with the request id.
		out := sb.output(func(o string) bool { return strings.Contains(o, "\thello world") })
		if !strings.Contains(out, "raw print\n") {
			t.Errorf("print output missing:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tpy-7\thello world$`).MatchString(out) {
			t.Errorf("logging line missing or misformatted:\n%s", out)
		}
		if !strings.Contains(out, "[ERROR] ValueError: boom") {
			t.Errorf("error log missing:\n%s", out)
		}
	})

	t.Run("handler in a package dir", func(t *testing.T) {
		sb := startSandbox(t, sandboxSpec{runtime: "python3.9", handler: "pkg/mod.handler", taskRoot: root})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		res, err := sb.invoke(t, &Invocation{RequestID: "py-pkg", Payload: []byte(`{}`)}, 10*time.Second)
		if err != nil || string(res.Payload) != `{"nested": true, "module": "pkg.mod"}` {
			t.Fatalf("Invoke = %v %s", err, res.Payload)
		}
	})

	initErrors := []struct {
		handler string
		errType string
		message string
	}{
		{"nomod.handler", "Runtime.ImportModuleError", "Unable to import module 'nomod': No module named 'nomod'"},
		{"badimport.handler", "Runtime.ImportModuleError", "Unable to import module 'badimport': No module named 'not_a_real_dependency'"},
		{"app.missing", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'app'"},
		{"syntaxerr.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'syntaxerr': "},
		{"nodot", "Runtime.MalformedHandlerName", "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"},
	}
	for _, tt := range initErrors {
		t.Run("init error "+tt.handler, func(t *testing.T) {
			sb := startSandbox(t, sandboxSpec{runtime: "python3.11", handler: tt.handler, taskRoot: root})
			var ie *InitError
			if err := sb.waitInit(t); !errors.As(err, &ie) {
				t.Fatalf("WaitInit = %v, want *InitError", err)
			}
			body := decode(t, ie.Payload)
			msg, _ := body["errorMessage"].(string)
			if ie.ErrorType != tt.errType || body["errorType"] != tt.errType || !strings.HasPrefix(msg, tt.message) {
				t.Errorf("InitError %q %s", ie.ErrorType, ie.Payload)
			}
			if code := sb.waitExit(t); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if !strings.Contains(sb.out.String(), "[ERROR] "+tt.errType+": "+tt.message) {
				t.Errorf("stderr lacks the [ERROR] line:\n%s", sb.out)
			}
		})
	}
}

// ---- nodejs ---------------------------------------------------------------

func TestNodeEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	root := testdataDir(t, "nodejs")

	type invokeCase struct {
		name      string
		inv       *Invocation
		funcErr   bool
		errType   string
		payload   string
		contains  []string
		checkJSON map[string]any
		minDur    time.Duration
		maxDur    time.Duration
	}
	run := func(t *testing.T, sb *sandbox, tests []invokeCase) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				start := time.Now()
				res, err := sb.invoke(t, tt.inv, 10*time.Second)
				d := time.Since(start)
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if res.FunctionError != tt.funcErr || res.ErrorType != tt.errType {
					t.Errorf("FunctionError=%v ErrorType=%q, want %v %q (payload %s)", res.FunctionError, res.ErrorType, tt.funcErr, tt.errType, res.Payload)
				}
				if tt.payload != "" && string(res.Payload) != tt.payload {
					t.Errorf("payload %s, want %s", res.Payload, tt.payload)
				}
				if sub, ok := contains(string(res.Payload), tt.contains...); !ok {
					t.Errorf("payload %s lacks %s", res.Payload, sub)
				}
				if tt.minDur > 0 && d < tt.minDur {
					t.Errorf("answered after %v, want at least %v", d, tt.minDur)
				}
				if tt.maxDur > 0 && d > tt.maxDur {
					t.Errorf("answered after %v, want at most %v", d, tt.maxDur)
				}
				if tt.checkJSON != nil {
					got := decode(t, res.Payload)
					wantFields(t, got, tt.checkJSON)
					if r, _ := got["remaining"].(float64); r <= 0 || r > 30000 {
						t.Errorf("remaining %v", got["remaining"])
					}
					wantFields(t, got["env"].(map[string]any), map[string]any{
						"AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x", "_HANDLER": "index.asyncHandler", "LAMBDA_TASK_ROOT": root,
						"TZ": ":UTC", "AWS_LAMBDA_FUNCTION_NAME": "e2e-fn", "GREETING": "hello", "_X_AMZN_TRACE_ID": testTrace,
					})
				}
			})
		}
	}

	t.Run("async handler", func(t *testing.T) {
		sb := startSandbox(t, sandboxSpec{runtime: "nodejs20.x", handler: "index.asyncHandler", taskRoot: root,
			user: map[string]string{"GREETING": "hello"}})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		run(t, sb, []invokeCase{
			{name: "echo", inv: &Invocation{RequestID: "js-1", Payload: []byte(`{"action":"echo","n":[1,2]}`)}, payload: `{"action":"echo","n":[1,2]}`},
			{name: "undefined is null", inv: &Invocation{RequestID: "js-2", Payload: []byte(`{"action":"undefined"}`)}, payload: `null`},
			{name: "context and env", inv: ctxInvocation("js-3"), checkJSON: map[string]any{
				"requestId": "js-3", "functionName": "e2e-fn", "functionVersion": "$LATEST", "arn": testArn,
				"memory": "256", "logGroup": "/aws/lambda/e2e-fn", "logStream": "2025/01/02/[$LATEST]0123abcd",
				"custom": map[string]any{"k": "v"}, "identityId": "us-east-1:abc", "waits": true}},
			{name: "thrown error", inv: &Invocation{RequestID: "js-4", Payload: []byte(`{"action":"error"}`)},
				funcErr: true, errType: "Error", contains: []string{`"errorType":"Error"`, `"errorMessage":"boom"`, `"trace":["Error: boom","    at `, root + `/index.js:`}},
			{name: "rejected with a string", inv: &Invocation{RequestID: "js-5", Payload: []byte(`{"action":"reject-string"}`)},
				funcErr: true, errType: "string", payload: `{"errorType":"string","errorMessage":"plain string","trace":[]}`},
			{name: "oversized response", inv: &Invocation{RequestID: "js-big", Payload: []byte(`{"action":"big","size":7000000}`)},
				funcErr: true, errType: "Function.ResponseSizeTooLarge", contains: []string{`Response payload size (7000002 bytes) exceeded`}},
			{name: "console, still warm", inv: &Invocation{RequestID: "js-6", Payload: []byte(`{"action":"log"}`)}, payload: `"logged"`},
		})
		out := sb.output(func(o string) bool { return strings.Contains(o, "\tcareful") })
		if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tjs-6\tINFO\thello { a: 1 }$`).MatchString(out) {
			t.Errorf("console.log line missing or misformatted:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^\S+Z\tjs-6\tWARN\tcareful$`).MatchString(out) {
			t.Errorf("console.warn line missing:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^\S+Z\tjs-4\tERROR\tInvoke Error \{"errorType":"Error","errorMessage":"boom"`).MatchString(out) {
			t.Errorf("invoke error line missing:\n%s", out)
		}
	})

	t.Run("callback handler", func(t *testing.T) {
		sb := startSandbox(t, sandboxSpec{runtime: "nodejs18.x", handler: "index.cbHandler", taskRoot: root})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		run(t, sb, []invokeCase{
			{name: "echo", inv: &Invocation{RequestID: "cb-1", Payload: []byte(`{"action":"echo"}`)}, payload: `{"action":"echo"}`},
			{name: "waits for the event loop", inv: &Invocation{RequestID: "cb-2", Payload: []byte(`{"action":"wait"}`)},
				payload: `"cb-wait"`, minDur: 700 * time.Millisecond},
			{name: "callbackWaitsForEmptyEventLoop false", inv: &Invocation{RequestID: "cb-3", Payload: []byte(`{"action":"nowait"}`)},
				payload: `"cb-nowait"`, maxDur: 700 * time.Millisecond},
			{name: "callback error", inv: &Invocation{RequestID: "cb-4", Payload: []byte(`{"action":"error"}`)},
				funcErr: true, errType: "TypeError", contains: []string{`"errorType":"TypeError","errorMessage":"bad type"`}},
			{name: "context.succeed", inv: &Invocation{RequestID: "cb-5", Payload: []byte(`{"action":"succeed"}`)}, payload: `{"via":"succeed"}`},
			{name: "context.fail", inv: &Invocation{RequestID: "cb-6", Payload: []byte(`{"action":"fail"}`)},
				funcErr: true, errType: "Error", contains: []string{`"errorMessage":"failed via context"`}},
			{name: "context.done", inv: &Invocation{RequestID: "cb-7", Payload: []byte(`{"action":"done"}`)}, payload: `"done-result"`},
			{name: "no callback", inv: &Invocation{RequestID: "cb-8", Payload: []byte(`{"action":"never"}`)}, payload: `null`},
			{name: "bad event", inv: &Invocation{RequestID: "cb-9", Payload: []byte(`{nope`)},
				funcErr: true, errType: "SyntaxError"},
		})
	})

	t.Run("uncaught exception during invoke", func(t *testing.T) {
		sb := startSandbox(t, sandboxSpec{runtime: "nodejs22.x", handler: "index.cbHandler", taskRoot: root})
		if err := sb.waitInit(t); err != nil {
			t.Fatalf("WaitInit: %v", err)
		}
		res, err := sb.invoke(t, &Invocation{RequestID: "cb-x", Payload: []byte(`{"action":"throw-later"}`)}, 10*time.Second)
		if err != nil {
			t.Fatalf("Invoke: %v", err)
		}
		if !res.FunctionError || res.ErrorType != "RangeError" || !strings.Contains(string(res.Payload), `"errorMessage":"late"`) {
			t.Errorf("result %+v %s", res, res.Payload)
		}
		if code := sb.waitExit(t); code != 129 {
			t.Errorf("exit code %d, want 129", code)
		}
	})

	for _, tt := range []struct{ handler, payload string }{
		{"index.nested.fn", `"nested-ok"`},
		{"esm.handler", `{"esm":true,"event":{"x":1}}`},
		{"esmpkg/app.handler", `"esm-pkg/"`},
		{"lib/util.handler", `"subdir-cjs"`},
	} {
		t.Run("module "+tt.handler, func(t *testing.T) {
			sb := startSandbox(t, sandboxSpec{runtime: "nodejs20.x", handler: tt.handler, taskRoot: root})
			if err := sb.waitInit(t); err != nil {
				t.Fatalf("WaitInit: %v", err)
			}
			res, err := sb.invoke(t, &Invocation{RequestID: "m", Payload: []byte(`{"x":1}`)}, 10*time.Second)
			if err != nil || res.FunctionError || string(res.Payload) != tt.payload {
				t.Fatalf("Invoke = %v %+v %s", err, res, res.Payload)
			}
		})
	}

	initErrors := []struct {
		handler string
		errType string
		message string
	}{
		{"missing.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'missing'\nRequire stack:\n- "},
		{"badrequire.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'not-a-real-dependency'"},
		{"index.nope", "Runtime.HandlerNotFound", "index.nope is undefined or not exported"},
		{"index.notfn", "Runtime.HandlerNotFound", "index.notfn is not a function"},
		{"syntax.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: Unexpected token '}'"},
		{"nodot", "Runtime.MalformedHandlerName", "Bad handler"},
	}
	for _, tt := range initErrors {
		t.Run("init error "+tt.handler, func(t *testing.T) {
			sb := startSandbox(t, sandboxSpec{runtime: "nodejs20.x", handler: tt.handler, taskRoot: root})
			var ie *InitError
			if err := sb.waitInit(t); !errors.As(err, &ie) {
				t.Fatalf("WaitInit = %v, want *InitError", err)
			}
			body := decode(t, ie.Payload)
			msg, _ := body["errorMessage"].(string)
			if ie.ErrorType != tt.errType || body["errorType"] != tt.errType || !strings.HasPrefix(msg, tt.message) {
				t.Errorf("InitError %q %s", ie.ErrorType, ie.Payload)
			}
			if _, ok := body["trace"].([]any); !ok {
				t.Errorf("no trace in %s", ie.Payload)
			}
			if code := sb.waitExit(t); code != 129 {
				t.Errorf("exit code %d, want 129", code)
			}
			if !regexp.MustCompile(`\tundefined\tERROR\tUncaught Exception \{"errorType":"` + regexp.QuoteMeta(tt.errType)).MatchString(sb.out.String()) {
				t.Errorf("log lacks the Uncaught Exception line:\n%s", sb.out)
			}
		})
	}
}
