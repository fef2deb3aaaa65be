package cli

// These tests run the verbs against fakeKiln, the boundary fake of the Kiln
// server in fakeserver_test.go (signatures verified for real, recorded
// Lambda replies).

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/sigv4"
)

// codeDir writes a small function directory and returns its path.
func codeDir(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, dir, "app.py", "def handler(event, context):\n    return event\n")
	return dir
}

func methods(reqs []seenRequest) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.method+" "+r.path)
	}
	return out
}

func TestDeployCreates(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"POST /2015-03-31/functions": recorded(http.StatusCreated, "create_function.json"),
	})
	r := run(t, context.Background(), "", "deploy", "hello", codeDir(t),
		"--runtime", "python3.12", "--handler", "app.handler", "--endpoint-url", f.url(),
		"--memory", "256", "--timeout", "30", "--env", "STAGE=prod", "--env", "DSN=a=b", "--description", "hi")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "Status:      created\n" +
		"FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:hello\n" +
		"CodeSha256:  YFgDgEKG3ugvF1+pX64gV6tu9qNuIYNUdgJm8nCxsm4=\n" +
		"Version:     $LATEST\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests: %v", methods(reqs))
	}
	var body struct {
		FunctionName, Role, Runtime, Handler, Description string
		MemorySize, Timeout                               int
		Code                                              struct{ ZipFile []byte }
		Environment                                       struct{ Variables map[string]string }
	}
	if err := json.Unmarshal(reqs[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if body.FunctionName != "hello" || body.Role != defaultRole || body.Runtime != "python3.12" ||
		body.Handler != "app.handler" || body.MemorySize != 256 || body.Timeout != 30 || body.Description != "hi" {
		t.Errorf("CreateFunction body = %+v", body)
	}
	if body.Environment.Variables["STAGE"] != "prod" || body.Environment.Variables["DSN"] != "a=b" {
		t.Errorf("environment = %v", body.Environment.Variables)
	}
	zr, err := zip.NewReader(bytes.NewReader(body.Code.ZipFile), int64(len(body.Code.ZipFile)))
	if err != nil {
		t.Fatalf("ZipFile is not a zip: %v", err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "app.py" {
		t.Errorf("zip holds %v", zr.File)
	}
	if reqs[0].account != userAccount {
		t.Errorf("signed as account %q", reqs[0].account)
	}
}

func TestDeployUpdatesExisting(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"POST /2015-03-31/functions":                    apiError(errdefs.ResourceConflict("Function already exist: hello")),
		"PUT /2015-03-31/functions/hello/code":          recorded(http.StatusOK, "update_code_inprogress.json"),
		"PUT /2015-03-31/functions/hello/configuration": recorded(http.StatusOK, "update_configuration.json"),
		"GET /2015-03-31/functions/hello/configuration": func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, n int) {
			if n < 2 {
				writeRecorded(w, http.StatusOK, "get_configuration_inprogress.json")
				return
			}
			writeRecorded(w, http.StatusOK, "get_configuration_successful.json")
		},
	})
	zipPath := writeFile(t, t.TempDir(), "fn.zip", string(mustZip(t)))
	r := run(t, context.Background(), "", "deploy", "--endpoint-url", f.url(), "hello", zipPath,
		"--runtime", "python3.12", "--handler", "app.main", "--memory", "256", "--env", "STAGE=prod")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	wantSeq := []string{
		"POST /2015-03-31/functions",
		"PUT /2015-03-31/functions/hello/code",
		"GET /2015-03-31/functions/hello/configuration",
		"GET /2015-03-31/functions/hello/configuration",
		"GET /2015-03-31/functions/hello/configuration",
		"PUT /2015-03-31/functions/hello/configuration",
	}
	if got := methods(f.requests()); strings.Join(got, "\n") != strings.Join(wantSeq, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantSeq, "\n"))
	}
	reqs := f.requests()
	var code struct{ ZipFile []byte }
	_ = json.Unmarshal(reqs[1].body, &code)
	if !bytes.Equal(code.ZipFile, mustZip(t)) {
		t.Error("UpdateFunctionCode did not send the .zip file as is")
	}
	var cfg map[string]any
	_ = json.Unmarshal(reqs[5].body, &cfg)
	if cfg["Handler"] != "app.main" || cfg["MemorySize"] != float64(256) || cfg["Runtime"] != "python3.12" {
		t.Errorf("UpdateFunctionConfiguration body = %v", cfg)
	}
	if _, ok := cfg["Role"]; ok {
		t.Errorf("an update without --role must keep the role, sent %v", cfg["Role"])
	}
	if !strings.Contains(r.stdout, "Status:      updated") ||
		!strings.Contains(r.stdout, "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestDeployUpdateFails(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"POST /2015-03-31/functions":                    apiError(errdefs.ResourceConflict("Function already exist: hello")),
		"PUT /2015-03-31/functions/hello/code":          recorded(http.StatusOK, "update_code_inprogress.json"),
		"GET /2015-03-31/functions/hello/configuration": recorded(http.StatusOK, "get_configuration_failed.json"),
	})
	r := run(t, context.Background(), "", "deploy", "hello", codeDir(t), "--runtime", "python3.12",
		"--handler", "app.handler", "--endpoint-url", f.url())
	if r.code != exitFail {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "Unzipped size must be smaller than 262144000 bytes (InvalidZipFileException)") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestDeployServiceError(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"POST /2015-03-31/functions": apiError(errdefs.InvalidParameter("The runtime parameter of cobol is not supported")),
	})
	r := run(t, context.Background(), "", "deploy", "hello", codeDir(t), "--runtime", "cobol",
		"--handler", "x", "--endpoint-url", f.url())
	want := "An error occurred (InvalidParameterValueException) when calling the CreateFunction operation: The runtime parameter of cobol is not supported\n"
	if r.code != exitFail || r.stderr != want {
		t.Errorf("exit %d stderr %q, want %q", r.code, r.stderr, want)
	}
}

func mustZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("app.py")
	_, _ = w.Write([]byte("def main(e, c):\n    return 1\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// echoInvoke answers Invoke with the request payload, as a function
// returning its event would, honouring the log and invocation-type headers.
func echoInvoke(w http.ResponseWriter, r *http.Request, body []byte, _ sigv4.Identity, _ int) {
	if r.Header.Get("X-Amz-Invocation-Type") == "Event" {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if r.Header.Get("X-Amz-Log-Type") == "Tail" {
		log := "START RequestId: 1 Version: $LATEST\nEND RequestId: 1\nREPORT RequestId: 1\tDuration: 1.00 ms\n"
		w.Header().Set("X-Amz-Log-Result", base64.StdEncoding.EncodeToString([]byte(log)))
	}
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func TestInvoke(t *testing.T) {
	isolate(t)
	asUser(t)
	fnErr := func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, _ int) {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		_, _ = w.Write([]byte(`{"errorMessage":"boom","errorType":"ValueError"}`))
	}
	f := newFakeKiln(t, map[string]route{
		"POST /2015-03-31/functions/echo/invocations":        echoInvoke,
		"POST /2015-03-31/functions/echo%3Aprod/invocations": echoInvoke,
		"POST /2015-03-31/functions/bad/invocations":         fnErr,
		"POST /2015-03-31/functions/gone/invocations": apiError(errdefs.ResourceNotFound(
			"Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone")),
	})
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string // substring of stderr
		wantHeader map[string]string
		wantQuery  string
		wantBody   string
	}{
		{name: "default payload", args: []string{"invoke", "echo"}, wantOut: "{}\n", wantBody: "{}"},
		{name: "payload argument", args: []string{"invoke", "echo", `{"a":1}`}, wantOut: "{\"a\":1}\n", wantBody: `{"a":1}`},
		{name: "payload from stdin", stdin: "{\"b\":2}\n", args: []string{"invoke", "echo", "-"}, wantOut: "{\"b\":2}\n", wantBody: "{\"b\":2}\n"},
		{name: "qualifier", args: []string{"invoke", "--qualifier", "prod", "echo"}, wantOut: "{}\n", wantQuery: "Qualifier=prod"},
		{name: "name with qualifier is escaped", args: []string{"invoke", "echo:prod"}, wantOut: "{}\n"},
		{
			name: "tail", args: []string{"invoke", "echo", "--tail"}, wantOut: "{}\n",
			wantErr:    "REPORT RequestId: 1\tDuration: 1.00 ms\n",
			wantHeader: map[string]string{"X-Amz-Log-Type": "Tail"},
		},
		{
			name: "event", args: []string{"invoke", "echo", "--event", `{"x":1}`}, wantOut: "",
			wantHeader: map[string]string{"X-Amz-Invocation-Type": "Event"},
		},
		{
			name: "function error", args: []string{"invoke", "bad"}, wantCode: exitFail,
			wantOut: `{"errorMessage":"boom","errorType":"ValueError"}` + "\n", wantErr: "the function returned an error (Unhandled)",
		},
		{
			name: "not found", args: []string{"invoke", "gone"}, wantCode: exitFail,
			wantErr: "An error occurred (ResourceNotFoundException) when calling the Invoke operation: Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.requests())
			r := run(t, context.Background(), tt.stdin, append(tt.args, "--endpoint-url", f.url())...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.wantCode, r.stderr)
			}
			if r.stdout != tt.wantOut {
				t.Errorf("stdout = %q, want %q", r.stdout, tt.wantOut)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr = %q, want %q in it", r.stderr, tt.wantErr)
			}
			reqs := f.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			for k, v := range tt.wantHeader {
				if got := reqs[0].header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if reqs[0].query != tt.wantQuery {
				t.Errorf("query = %q, want %q", reqs[0].query, tt.wantQuery)
			}
			if tt.wantBody != "" && string(reqs[0].body) != tt.wantBody {
				t.Errorf("body = %q, want %q", reqs[0].body, tt.wantBody)
			}
		})
	}
}

func TestLs(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"GET /2015-03-31/functions": func(w http.ResponseWriter, r *http.Request, _ []byte, _ sigv4.Identity, _ int) {
			if r.URL.Query().Get("Marker") == "bWFya2VyLTI=" {
				writeRecorded(w, http.StatusOK, "list_functions_page2.json")
				return
			}
			writeRecorded(w, http.StatusOK, "list_functions_page1.json")
		},
	})
	r := run(t, context.Background(), "", "ls", "--endpoint-url", f.url())
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "" +
		"NAME                   RUNTIME          MEMORY  TIMEOUT  LAST MODIFIED\n" +
		"alpha                  nodejs20.x       128MB   3s       2026-01-09T10:00:00.000+0000\n" +
		"beta-with-a-long-name  provided.al2023  1024MB  900s     2026-01-10T11:30:00.000+0000\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if n := len(f.requests()); n != 2 {
		t.Errorf("%d requests, want 2 pages", n)
	}
}

func TestRm(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"DELETE /2015-03-31/functions/hello": func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, _ int) {
			w.WriteHeader(http.StatusNoContent)
		},
		"DELETE /2015-03-31/functions/gone": apiError(errdefs.ResourceNotFound("Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone")),
	})
	r := run(t, context.Background(), "", "rm", "hello", "--qualifier", "3", "--endpoint-url", f.url())
	if r.code != exitOK || r.stdout != "deleted hello:3\n" {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if q := f.requests()[0].query; q != "Qualifier=3" {
		t.Errorf("query = %q", q)
	}
	r = run(t, context.Background(), "", "rm", "gone", "--endpoint-url", f.url())
	want := "An error occurred (ResourceNotFoundException) when calling the DeleteFunction operation: Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone\n"
	if r.code != exitFail || r.stderr != want {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestLogs(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKiln(t, map[string]route{
		"GET /2026-01-01/kiln/functions/hello/logs": jsonReply(http.StatusOK,
			`{"Events":[{"Timestamp":1767225600000,"Message":"START RequestId: 1 Version: $LATEST\n"},`+
				`{"Timestamp":1767225600001,"Message":"hello world"},`+
				`{"Timestamp":1767225600002,"Message":"END RequestId: 1\n"}]}`),
		"GET /2026-01-01/kiln/functions/hello%3Alive/logs": jsonReply(http.StatusOK, `{"Events":[]}`),
		"GET /2026-01-01/kiln/functions/gone/logs": apiError(errdefs.ResourceNotFound(
			"Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone")),
	})
	r := run(t, context.Background(), "", "logs", "hello", "--limit", "3", "--endpoint-url", f.url())
	want := "START RequestId: 1 Version: $LATEST\nhello world\nEND RequestId: 1\n"
	if r.code != exitOK || r.stdout != want {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	req := f.requests()[0]
	if req.query != "Limit=3" || req.account != userAccount {
		t.Errorf("query %q account %q", req.query, req.account)
	}

	r = run(t, context.Background(), "", "logs", "hello:live", "--endpoint-url", f.url())
	if r.code != exitOK || r.stdout != "" {
		t.Errorf("escaped name: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	r = run(t, context.Background(), "", "logs", "gone", "--endpoint-url", f.url())
	wantErr := "An error occurred (ResourceNotFoundException) when calling the GetFunctionLogs operation: Function not found: arn:aws:lambda:us-east-1:111122223333:function:gone\n"
	if r.code != exitFail || r.stderr != wantErr {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestLogsFollow(t *testing.T) {
	isolate(t)
	asUser(t)
	// Each poll returns the latest window of two events; the window slides
	// and holds a line repeated at the same millisecond.
	windows := []string{
		`{"Events":[{"Timestamp":1,"Message":"a\n"},{"Timestamp":2,"Message":"b\n"}]}`,
		`{"Events":[{"Timestamp":1,"Message":"a\n"},{"Timestamp":2,"Message":"b\n"}]}`,
		`{"Events":[{"Timestamp":2,"Message":"b\n"},{"Timestamp":3,"Message":"c\n"}]}`,
		`{"Events":[{"Timestamp":3,"Message":"c\n"},{"Timestamp":3,"Message":"c\n"}]}`,
		`{"Events":[{"Timestamp":3,"Message":"c\n"},{"Timestamp":4,"Message":"d"}]}`,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := newFakeKiln(t, map[string]route{
		"GET /2026-01-01/kiln/functions/hello/logs": func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, n int) {
			if n >= len(windows) {
				cancel() // the client has printed every window by now
				n = len(windows) - 1
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprint(w, windows[n])
		},
	})
	r := run(t, ctx, "", "logs", "hello", "--follow", "--endpoint-url", f.url())
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := "a\nb\nc\nc\nd\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

func TestAccountCreate(t *testing.T) {
	work := isolate(t)
	f := newFakeKiln(t, map[string]route{
		"POST /2026-01-01/kiln/accounts": func(w http.ResponseWriter, _ *http.Request, body []byte, id sigv4.Identity, _ int) {
			if id.AccountID != adminAccount {
				apiError(errdefs.AccessDenied("Only the admin account may create accounts."))(w, nil, body, id, 0)
				return
			}
			jsonReply(http.StatusCreated, `{"AccountId":"444455556666","AccessKeyId":"AKIDNEWACCOUNT","SecretAccessKey":"new/secret"}`)(w, nil, body, id, 0)
		},
	})
	asAdmin(t)
	r := run(t, context.Background(), "", "account", "create", "--endpoint-url", f.url())
	want := "# Kiln account 444455556666\n[kiln-444455556666]\naws_access_key_id = AKIDNEWACCOUNT\naws_secret_access_key = new/secret\naws_account_id = 444455556666\n"
	if r.code != exitOK || r.stdout != want {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if req := f.requests()[0]; string(req.body) != "{}" || req.header.Get("Content-Type") != "application/json" {
		t.Errorf("body %q content-type %q", req.body, req.header.Get("Content-Type"))
	}

	// The printed block is a working credentials file for the AWS chain.
	writeFile(t, work, ".kiln/credentials", r.stdout)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	cfg, err := resolveConfig(context.Background(), &commonFlags{profile: "kiln-444455556666"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKIDNEWACCOUNT" || creds.SecretAccessKey != "new/secret" || creds.AccountID != "444455556666" {
		t.Errorf("round trip: %+v, %v", creds, err)
	}
	asAdmin(t)

	r = run(t, context.Background(), "", "account", "create", "--profile", "bob", "--endpoint-url", f.url())
	if r.code != exitOK || !strings.Contains(r.stdout, "\n[bob]\n") {
		t.Errorf("--profile: exit %d stdout %q", r.code, r.stdout)
	}

	asUser(t)
	r = run(t, context.Background(), "", "account", "create", "--endpoint-url", f.url())
	wantErr := "An error occurred (AccessDeniedException) when calling the CreateAccount operation: Only the admin account may create accounts.\n"
	if r.code != exitFail || r.stderr != wantErr {
		t.Errorf("non-admin: exit %d stderr %q", r.code, r.stderr)
	}
}

// TestSignatureIsChecked sends requests with a wrong secret or an unknown key
// to show the fake really verifies signatures, and that the verifier's
// errors print the AWS way.
func TestSignatureIsChecked(t *testing.T) {
	isolate(t)
	f := newFakeKiln(t, map[string]route{
		"GET /2015-03-31/functions":                 jsonReply(http.StatusOK, `{"Functions":[]}`),
		"GET /2026-01-01/kiln/functions/hello/logs": jsonReply(http.StatusOK, `{"Events":[]}`),
	})
	t.Setenv("AWS_ACCESS_KEY_ID", userKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	for _, args := range [][]string{{"ls"}, {"logs", "hello"}} {
		r := run(t, context.Background(), "", append(args, "--endpoint-url", f.url())...)
		if r.code != exitFail || !strings.Contains(r.stderr, "An error occurred (InvalidSignatureException)") {
			t.Errorf("%v with a wrong secret: exit %d stderr %q", args, r.code, r.stderr)
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
	r := run(t, context.Background(), "", "ls", "--endpoint-url", f.url())
	if r.code != exitFail || !strings.Contains(r.stderr, "An error occurred (UnrecognizedClientException) when calling the ListFunctions operation") {
		t.Errorf("unknown key: exit %d stderr %q", r.code, r.stderr)
	}
	// A different signing region is refused too.
	asUser(t)
	r = run(t, context.Background(), "", "logs", "hello", "--region", "eu-west-1", "--endpoint-url", f.url())
	if r.code != exitFail || !strings.Contains(r.stderr, "An error occurred (") {
		t.Errorf("wrong region: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestEndpointFromEnvAndCredentialsFromKilnDir(t *testing.T) {
	work := isolate(t)
	f := newFakeKiln(t, map[string]route{
		"GET /2026-01-01/kiln/functions/hello/logs": jsonReply(http.StatusOK, `{"Events":[{"Timestamp":1,"Message":"x"}]}`),
	})
	writeFile(t, work, ".kiln/credentials", fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", userKey, userSecret))
	t.Setenv("KILN_ENDPOINT", f.url())
	r := run(t, context.Background(), "", "logs", "hello")
	if r.code != exitOK || r.stdout != "x\n" {
		t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestNoServer(t *testing.T) {
	isolate(t)
	asUser(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, args := range [][]string{{"ls"}, {"logs", "x"}} {
		r := run(t, context.Background(), "", append(args, "--endpoint-url", "http://"+addr)...)
		if r.code != exitFail || !strings.Contains(r.stderr, `Could not connect to the endpoint URL: "http://`+addr+`/`) {
			t.Errorf("%v: exit %d stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	isolate(t)
	r := run(t, context.Background(), "", "ls", "--endpoint-url", "http://127.0.0.1:1")
	if r.code != exitFail || !strings.HasPrefix(r.stderr, "Unable to locate credentials.") {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

// TestCABundle checks that an https endpoint is trusted through
// $AWS_CA_BUNDLE, as with the AWS tools, and refused without it.
func TestCABundle(t *testing.T) {
	isolate(t)
	asUser(t)
	f := newFakeKilnTLS(t, map[string]route{
		"GET /2015-03-31/functions": jsonReply(http.StatusOK, `{"Functions":[]}`),
	})
	r := run(t, context.Background(), "", "ls", "--endpoint-url", f.url())
	if r.code != exitFail || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("untrusted certificate: exit %d stderr %q", r.code, r.stderr)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	t.Setenv("AWS_CA_BUNDLE", writeFile(t, t.TempDir(), "ca.pem", string(pemBytes)))
	r = run(t, context.Background(), "", "ls", "--endpoint-url", f.url())
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "NAME") {
		t.Errorf("with AWS_CA_BUNDLE: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Setenv("AWS_CA_BUNDLE", writeFile(t, t.TempDir(), "empty.pem", "nothing"))
	r = run(t, context.Background(), "", "ls", "--endpoint-url", f.url())
	if r.code != exitFail {
		t.Errorf("bad AWS_CA_BUNDLE: exit %d stderr %q", r.code, r.stderr)
	}
}
