package controlplane

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// mutate returns a valid CreateFunction body changed by f.
func mutate(t *testing.T, name string, f func(m map[string]any)) map[string]any {
	m := createBody(t, name)
	f(m)
	return m
}

func TestCreateFunctionValidation(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "taken")); w.Code != 201 {
		t.Fatalf("setup create: %d %s", w.Code, w.Body)
	}
	bigEnv := map[string]any{}
	for i := range 100 {
		bigEnv["K"+strings.Repeat("x", 10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("v", 40)
	}
	tests := []struct {
		name   string
		body   any
		status int
		code   string
		msgKey string // "message" or "Message"
		msg    string // substring
	}{
		{"duplicate", createBody(t, "taken"), 409, "ResourceConflictException", "message", "Function already exist: taken"},
		{"bad name", createBody(t, "bad name!"), 400, "ValidationException", "message",
			"1 validation error detected: Value 'bad name!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?"},
		{"long name", createBody(t, strings.Repeat("a", 65)), 400, "ValidationException", "message", "Member must have length less than or equal to 64"},
		{"missing role", mutate(t, "f", func(m map[string]any) { delete(m, "Role") }), 400, "ValidationException", "message", "Value null at 'role' failed to satisfy constraint: Member must not be null"},
		{"bad role", mutate(t, "f", func(m map[string]any) { m["Role"] = "admin" }), 400, "ValidationException", "message", "Value 'admin' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::"},
		{"two errors", mutate(t, "f", func(m map[string]any) { m["MemorySize"] = 64; m["Timeout"] = 0 }), 400, "ValidationException", "message",
			"2 validation errors detected: Value '64' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128; Value '0' at 'timeout'"},
		{"memory too big", mutate(t, "f", func(m map[string]any) { m["MemorySize"] = 10241 }), 400, "ValidationException", "message", "Member must have value less than or equal to 10240"},
		{"timeout too big", mutate(t, "f", func(m map[string]any) { m["Timeout"] = 901 }), 400, "ValidationException", "message", "Member must have value less than or equal to 900"},
		{"ephemeral", mutate(t, "f", func(m map[string]any) { m["EphemeralStorage"] = map[string]any{"Size": 100} }), 400, "ValidationException", "message", "at 'ephemeralStorage.size'"},
		{"description", mutate(t, "f", func(m map[string]any) { m["Description"] = strings.Repeat("d", 257) }), 400, "ValidationException", "message", "Member must have length less than or equal to 256"},
		{"handler spaces", mutate(t, "f", func(m map[string]any) { m["Handler"] = "a b" }), 400, "ValidationException", "message", "at 'handler'"},
		{"unknown runtime", mutate(t, "f", func(m map[string]any) { m["Runtime"] = "python2.7" }), 400, "InvalidParameterValueException", "message", "The runtime parameter of python2.7 is not supported"},
		{"runtime missing", mutate(t, "f", func(m map[string]any) { delete(m, "Runtime") }), 400, "InvalidParameterValueException", "message", "Runtime is required"},
		{"handler missing", mutate(t, "f", func(m map[string]any) { delete(m, "Handler") }), 400, "InvalidParameterValueException", "message", "Handler is required"},
		{"arm64", mutate(t, "f", func(m map[string]any) { m["Architectures"] = []string{"arm64"} }), 400, "InvalidParameterValueException", "message", "Architecture arm64 is not supported on this Kiln host"},
		{"arch enum", mutate(t, "f", func(m map[string]any) { m["Architectures"] = []string{"mips"} }), 400, "ValidationException", "message", "Member must satisfy enum value set: [x86_64, arm64]"},
		{"image", mutate(t, "f", func(m map[string]any) { m["PackageType"] = "Image" }), 400, "InvalidParameterValueException", "message", "PackageType Image is not supported"},
		{"layers", mutate(t, "f", func(m map[string]any) { m["Layers"] = []string{"arn:aws:lambda:us-east-1:111111111111:layer:x:1"} }), 400, "InvalidParameterValueException", "message", "Layers are not supported"},
		{"reserved env", mutate(t, "f", func(m map[string]any) {
			m["Environment"] = map[string]any{"Variables": map[string]string{"AWS_REGION": "x", "OK": "y"}}
		}), 400, "InvalidParameterValueException", "message", "Reserved keys used in this request: AWS_REGION"},
		{"env key pattern", mutate(t, "f", func(m map[string]any) {
			m["Environment"] = map[string]any{"Variables": map[string]string{"1BAD": "x"}}
		}), 400, "ValidationException", "message", "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]"},
		{"env too big", mutate(t, "f", func(m map[string]any) { m["Environment"] = map[string]any{"Variables": bigEnv} }), 400, "InvalidParameterValueException", "message", "exceeded the 4KB limit"},
		{"tracing enum", mutate(t, "f", func(m map[string]any) { m["TracingConfig"] = map[string]any{"Mode": "On"} }), 400, "ValidationException", "message", "at 'tracingConfig.mode'"},
		{"s3 code", mutate(t, "f", func(m map[string]any) { m["Code"] = map[string]any{"S3Bucket": "b", "S3Key": "k"} }), 400, "InvalidParameterValueException", "message", "ZipFile"},
		{"no code", mutate(t, "f", func(m map[string]any) { delete(m, "Code") }), 400, "ValidationException", "message", "Value null at 'code'"},
		{"empty zip", mutate(t, "f", func(m map[string]any) { m["Code"] = map[string]any{} }), 400, "InvalidParameterValueException", "message", "ZipFile"},
		{"qualified name", createBody(t, "f:1"), 400, "InvalidParameterValueException", "message", "qualifier"},
		{"other account arn", createBody(t, "arn:aws:lambda:us-east-1:222222222222:function:f"), 403, "AccessDeniedException", "message", "222222222222"},
		{"not json", "{", 400, "InvalidRequestContentException", "message", "Could not parse request body into json"},
		{"wrong type", `{"FunctionName": 5}`, 400, "InvalidRequestContentException", "message", "Could not parse request body into json"},
		{"bad base64", `{"FunctionName":"f","Role":"` + role + `","Runtime":"python3.12","Handler":"a.b","Code":{"ZipFile":"!!!"}}`, 400, "InvalidRequestContentException", "message", "Could not parse"},
		{"too large", strings.Repeat(" ", MaxCodeBody+1), 413, "RequestEntityTooLargeException", "message", "Request must be smaller than 70167211 bytes for the CreateFunction operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(acctA, "POST", "/2015-03-31/functions", tt.body)
			checkError(t, w, tt.status, tt.code, tt.msgKey, tt.msg)
		})
	}
}

func checkError(t *testing.T, w interface {
	Result() *http.Response
}, status int, code, msgKey, msg string) {
	t.Helper()
	res := w.Result()
	defer res.Body.Close()
	var body map[string]any
	if err := jsonDecode(res, &body); err != nil {
		t.Fatalf("error reply not JSON: %v", err)
	}
	if res.StatusCode != status || res.Header.Get("X-Amzn-Errortype") != code {
		t.Fatalf("got %d %s %v; want %d %s", res.StatusCode, res.Header.Get("X-Amzn-Errortype"), body, status, code)
	}
	got, ok := body[msgKey].(string)
	if !ok {
		t.Fatalf("no %q key in %v", msgKey, body)
	}
	if !strings.Contains(got, msg) {
		t.Fatalf("message %q does not contain %q", got, msg)
	}
	if res.Header.Get("X-Amzn-Requestid") == "" {
		t.Error("no x-amzn-RequestId")
	}
}

func TestCreateFunctionReply(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	zip := pyZip(t, "1")
	body := createBody(t, "my-function")
	body["Code"] = map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(zip)}
	body["Environment"] = map[string]any{"Variables": map[string]string{"PREFIX": "inbound"}}
	body["Tags"] = map[string]string{"team": "kiln"}
	w := e.do(acctA, "POST", "/2015-03-31/functions", body)
	if w.Code != 201 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	m := decode(t, w)
	sum := sha256.Sum256(zip)
	want := map[string]any{
		"FunctionName":     "my-function",
		"FunctionArn":      "arn:aws:lambda:us-east-1:111111111111:function:my-function",
		"Runtime":          "python3.12",
		"Role":             role,
		"Handler":          "index.handler",
		"CodeSize":         float64(len(zip)),
		"Timeout":          float64(3),
		"MemorySize":       float64(128),
		"CodeSha256":       base64.StdEncoding.EncodeToString(sum[:]),
		"Version":          "$LATEST",
		"State":            "Active",
		"LastUpdateStatus": "Successful",
		"PackageType":      "Zip",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`).MatchString(m["LastModified"].(string)) {
		t.Errorf("LastModified %q not in Lambda's format", m["LastModified"])
	}
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(m["RevisionId"].(string)) {
		t.Errorf("RevisionId %q is not a UUID", m["RevisionId"])
	}
	if got := m["Architectures"].([]any); len(got) != 1 || got[0] != "x86_64" && got[0] != "arm64" {
		t.Errorf("Architectures %v", got)
	}
	if got := m["EphemeralStorage"].(map[string]any)["Size"]; got != float64(512) {
		t.Errorf("EphemeralStorage.Size %v", got)
	}
	if got := m["Environment"].(map[string]any)["Variables"].(map[string]any)["PREFIX"]; got != "inbound" {
		t.Errorf("Environment %v", m["Environment"])
	}

	// The zip is stored content-addressed.
	hexsum := hexOf(sum[:])
	if _, err := readFile(e.svc.CodePath(hexsum)); err != nil {
		t.Fatalf("code not stored at %s: %v", e.svc.CodePath(hexsum), err)
	}

	// GetFunction adds Code and Tags; the code is downloadable from Location.
	w = e.do(acctA, "GET", "/2015-03-31/functions/my-function", nil)
	g := decode(t, w)
	code := g["Code"].(map[string]any)
	if code["RepositoryType"] != "S3" || !strings.Contains(code["Location"].(string), "/2026-01-01/kiln/functions/my-function/code?Qualifier=%24LATEST") {
		t.Errorf("Code %v", code)
	}
	if g["Tags"].(map[string]any)["team"] != "kiln" {
		t.Errorf("Tags %v", g["Tags"])
	}
	w = e.do(acctA, "GET", "/2026-01-01/kiln/functions/my-function/code?Qualifier=%24LATEST", nil)
	if w.Code != 200 || !bytesEqual(w.Body.Bytes(), zip) || w.Header().Get("Content-Type") != "application/zip" {
		t.Errorf("code download: %d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	if w := e.do(acctB, "GET", "/2026-01-01/kiln/functions/my-function/code", nil); w.Code != 404 {
		t.Errorf("account B downloaded A's code: %d", w.Code)
	}
}

func TestFunctionRefsInPath(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "fn")); w.Code != 201 {
		t.Fatal(w.Body)
	}
	if w := e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", map[string]any{}); w.Code != 201 {
		t.Fatal(w.Body)
	}
	if w := e.do(acctA, "POST", "/2015-03-31/functions/fn/aliases", map[string]any{"Name": "live", "FunctionVersion": "1"}); w.Code != 201 {
		t.Fatal(w.Body)
	}
	tests := []struct {
		name, path string
		status     int
		code       string
		arn        string
		version    string
	}{
		{"name", "/2015-03-31/functions/fn/configuration", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn", "$LATEST"},
		{"escaped qualifier", "/2015-03-31/functions/fn%3A1/configuration", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn:1", "1"},
		{"alias", "/2015-03-31/functions/fn%3Alive/configuration", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn:live", "1"},
		{"query qualifier", "/2015-03-31/functions/fn/configuration?Qualifier=%24LATEST", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn:$LATEST", "$LATEST"},
		{"full arn", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Afunction%3Afn/configuration", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn", "$LATEST"},
		{"partial arn", "/2015-03-31/functions/111111111111%3Afunction%3Afn%3A1/configuration", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn:1", "1"},
		{"qualifiers agree", "/2015-03-31/functions/fn%3A1/configuration?Qualifier=1", 200, "", "arn:aws:lambda:us-east-1:111111111111:function:fn:1", "1"},
		{"qualifiers disagree", "/2015-03-31/functions/fn%3A1/configuration?Qualifier=2", 400, "InvalidParameterValueException", "", ""},
		{"missing version", "/2015-03-31/functions/fn/configuration?Qualifier=7", 404, "ResourceNotFoundException", "", ""},
		{"other account arn", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A222222222222%3Afunction%3Afn", 404, "ResourceNotFoundException", "", ""},
		{"other region arn", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A111111111111%3Afunction%3Afn", 404, "ResourceNotFoundException", "", ""},
		{"bad name", "/2015-03-31/functions/f%20n", 400, "ValidationException", "", ""},
		{"bad qualifier", "/2015-03-31/functions/fn?Qualifier=a%2Fb", 400, "ValidationException", "", ""},
		{"unknown route", "/2015-03-31/functions/fn/nope", 400, "UnknownOperationException", "", ""},
		{"unknown version date", "/2099-01-01/functions", 400, "UnknownOperationException", "", ""},
		{"escaped slash stays in segment", "/2015-03-31/functions/fn%2Fconfiguration", 400, "ValidationException", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(acctA, "GET", tt.path, nil)
			if w.Code != tt.status || w.Header().Get("X-Amzn-Errortype") != tt.code {
				t.Fatalf("%d %s: %s", w.Code, w.Header().Get("X-Amzn-Errortype"), w.Body)
			}
			if tt.status != 200 || !strings.HasSuffix(tt.path, "/configuration") && !strings.Contains(tt.path, "/configuration?") {
				return
			}
			m := decode(t, w)
			if m["FunctionArn"] != tt.arn || m["Version"] != tt.version {
				t.Fatalf("FunctionArn %v Version %v, want %s %s", m["FunctionArn"], m["Version"], tt.arn, tt.version)
			}
		})
	}
	// The not-found message names what was asked for, never another account's data.
	w := e.do(acctA, "GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A222222222222%3Afunction%3Afn", nil)
	checkError(t, w, 404, "ResourceNotFoundException", "Message", "Function not found: arn:aws:lambda:us-east-1:222222222222:function:fn")
	w = e.do(acctA, "GET", "/2015-03-31/functions/fn%3A9", nil)
	checkError(t, w, 404, "ResourceNotFoundException", "Message", "Function not found: arn:aws:lambda:us-east-1:111111111111:function:fn:9")
	// Without an account in the context nothing is served.
	if w := e.do("", "GET", "/2015-03-31/functions", nil); w.Code != 403 {
		t.Fatalf("no account: %d", w.Code)
	}
}

func TestUpdateDeleteAndPreconditions(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "fn"))
	rev := decode(t, w)["RevisionId"].(string)

	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"RevisionId": "nope", "MemorySize": 256})
	checkError(t, w, 412, "PreconditionFailedException", "message", "The Revision Id provided does not match the latest Revision Id")

	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{
		"RevisionId": rev, "MemorySize": 256, "Timeout": 30, "Description": "d",
		"Environment": map[string]any{"Variables": map[string]string{"A1": "b"}},
	})
	if w.Code != 200 {
		t.Fatal(w.Body)
	}
	m := decode(t, w)
	if m["MemorySize"] != float64(256) || m["Timeout"] != float64(30) || m["RevisionId"] == rev || m["Handler"] != "index.handler" {
		t.Fatalf("update config reply %v", m)
	}
	// Clearing the environment.
	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Environment": map[string]any{}})
	if m := decode(t, w); m["Environment"] != nil {
		t.Fatalf("environment not cleared: %v", m["Environment"])
	}

	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn%3A1/configuration", map[string]any{"MemorySize": 256})
	checkError(t, w, 400, "InvalidParameterValueException", "message", "qualified")

	// DryRun validates the zip and stores nothing.
	newZip := pyZip(t, "2")
	before := decode(t, e.do(acctA, "GET", "/2015-03-31/functions/fn/configuration", nil))
	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": newZip, "DryRun": true})
	if w.Code != 200 || decode(t, w)["CodeSha256"] == before["CodeSha256"] {
		t.Fatalf("dry run: %d %s", w.Code, w.Body)
	}
	after := decode(t, e.do(acctA, "GET", "/2015-03-31/functions/fn/configuration", nil))
	if after["CodeSha256"] != before["CodeSha256"] || after["RevisionId"] != before["RevisionId"] {
		t.Fatal("DryRun changed the function")
	}
	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": []byte("not a zip")})
	if w.Code < 400 {
		t.Fatalf("bad zip accepted: %d", w.Code)
	}
	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", strings.Repeat(" ", MaxCodeBody+1))
	checkError(t, w, 413, "RequestEntityTooLargeException", "message", "for the UpdateFunctionCode operation")

	// Publish with a wrong CodeSha256.
	w = e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", map[string]any{"CodeSha256": "abc"})
	checkError(t, w, 400, "InvalidParameterValueException", "message", "CodeSHA256 (abc) is different from current CodeSHA256 in $LATEST")

	// $LATEST cannot be deleted by qualifier; an alias-held version cannot be deleted.
	w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn?Qualifier=%24LATEST", nil)
	checkError(t, w, 400, "InvalidParameterValueException", "message", "$LATEST version cannot be deleted")
	e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", nil)
	e.do(acctA, "POST", "/2015-03-31/functions/fn/aliases", map[string]any{"Name": "prod", "FunctionVersion": "1"})
	w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn?Qualifier=1", nil)
	checkError(t, w, 409, "ResourceConflictException", "message", "Unable to delete version because the following aliases reference it: [prod]")
	w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn/aliases/prod", nil)
	if w.Code != 204 || w.Body.Len() != 0 {
		t.Fatalf("delete alias: %d %q", w.Code, w.Body)
	}
	if w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn%3A1", nil); w.Code != 204 {
		t.Fatalf("delete version: %d %s", w.Code, w.Body)
	}
	w = e.do(acctA, "GET", "/2015-03-31/functions/fn%3A1", nil)
	checkError(t, w, 404, "ResourceNotFoundException", "Message", "Function not found: arn:aws:lambda:us-east-1:111111111111:function:fn:1")
	if w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn", nil); w.Code != 204 {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	w = e.do(acctA, "DELETE", "/2015-03-31/functions/fn", nil)
	checkError(t, w, 404, "ResourceNotFoundException", "Message", "Function not found: arn:aws:lambda:us-east-1:111111111111:function:fn")
}

func TestAliasValidation(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "fn"))
	e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", nil)
	e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": pyZip(t, "2")})
	e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", nil)
	tests := []struct {
		name   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"ok", map[string]any{"Name": "a1", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.5}}}, 201, "", ""},
		{"exists", map[string]any{"Name": "a1", "FunctionVersion": "1"}, 409, "ResourceConflictException", "Alias already exists: arn:aws:lambda:us-east-1:111111111111:function:fn:a1"},
		{"latest ok", map[string]any{"Name": "dev", "FunctionVersion": "$LATEST"}, 201, "", ""},
		{"numeric name", map[string]any{"Name": "12", "FunctionVersion": "1"}, 400, "ValidationException", "at 'name'"},
		{"missing version", map[string]any{"Name": "x", "FunctionVersion": "9"}, 404, "ResourceNotFoundException", "function:fn:9"},
		{"bad version", map[string]any{"Name": "x", "FunctionVersion": "v1"}, 400, "ValidationException", "at 'functionVersion'"},
		{"two weights", map[string]any{"Name": "x", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.1, "3": 0.1}}}, 400, "InvalidParameterValueException", "cannot be greater than 1"},
		{"weight range", map[string]any{"Name": "x", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 1.5}}}, 400, "ValidationException", "Member must have value less than or equal to 1.0"},
		{"same version", map[string]any{"Name": "x", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"1": 0.5}}}, 400, "InvalidParameterValueException", "already included in routing configuration"},
		{"latest weighted", map[string]any{"Name": "x", "FunctionVersion": "$LATEST", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"1": 0.5}}}, 400, "InvalidParameterValueException", "$LATEST is not supported"},
		{"weight key latest", map[string]any{"Name": "x", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"$LATEST": 0.5}}}, 400, "ValidationException", "Map keys must satisfy constraint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(acctA, "POST", "/2015-03-31/functions/fn/aliases", tt.body)
			if tt.status == 201 {
				if w.Code != 201 {
					t.Fatalf("%d %s", w.Code, w.Body)
				}
				return
			}
			key := "message"
			if tt.code == "ResourceNotFoundException" {
				key = "Message"
			}
			checkError(t, w, tt.status, tt.code, key, tt.msg)
		})
	}
	w := e.do(acctA, "GET", "/2015-03-31/functions/fn/aliases/nope", nil)
	checkError(t, w, 404, "ResourceNotFoundException", "Message", "Alias not found: arn:aws:lambda:us-east-1:111111111111:function:fn:nope")
	w = e.do(acctA, "PUT", "/2015-03-31/functions/fn/aliases/a1", map[string]any{"RevisionId": "stale"})
	checkError(t, w, 412, "PreconditionFailedException", "message", "Revision Id")
}

func TestListPaginationAndAccountSettings(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, n)); w.Code != 201 {
			t.Fatal(w.Body)
		}
	}
	e.do(acctA, "POST", "/2015-03-31/functions/b/versions", nil)
	e.do(acctB, "POST", "/2015-03-31/functions", createBody(t, "zzz"))

	collect := func(query string, pageSize int) []string {
		var names []string
		marker := ""
		for page := 0; page < 20; page++ {
			q := "?MaxItems=" + itoa(pageSize) + query
			if marker != "" {
				q += "&Marker=" + marker
			}
			w := e.do(acctA, "GET", "/2015-03-31/functions"+q, nil)
			if w.Code != 200 {
				t.Fatalf("list: %d %s", w.Code, w.Body)
			}
			m := decode(t, w)
			fns := m["Functions"].([]any)
			if len(fns) > pageSize {
				t.Fatalf("page of %d > MaxItems %d", len(fns), pageSize)
			}
			for _, f := range fns {
				fc := f.(map[string]any)
				names = append(names, fc["FunctionName"].(string)+":"+fc["Version"].(string))
			}
			next, _ := m["NextMarker"].(string)
			if next == "" {
				return names
			}
			marker = next
		}
		t.Fatal("pagination does not end")
		return nil
	}
	for _, size := range []int{1, 2, 50} {
		got := strings.Join(collect("", size), ",")
		if got != "a:$LATEST,b:$LATEST,c:$LATEST,d:$LATEST,e:$LATEST" {
			t.Fatalf("MaxItems=%d: %s", size, got)
		}
		got = strings.Join(collect("&FunctionVersion=ALL", size), ",")
		if got != "a:$LATEST,b:$LATEST,b:1,c:$LATEST,d:$LATEST,e:$LATEST" {
			t.Fatalf("ALL MaxItems=%d: %s", size, got)
		}
	}
	for _, bad := range []string{"?MaxItems=0", "?MaxItems=10001", "?FunctionVersion=SOME"} {
		w := e.do(acctA, "GET", "/2015-03-31/functions"+bad, nil)
		checkError(t, w, 400, "ValidationException", "message", "1 validation error detected")
	}
	w := e.do(acctA, "GET", "/2015-03-31/functions?Marker=%21%21", nil)
	checkError(t, w, 400, "InvalidParameterValueException", "message", "marker")

	w = e.do(acctA, "GET", "/2016-08-19/account-settings/", nil)
	m := decode(t, w)
	lim := m["AccountLimit"].(map[string]any)
	if lim["CodeSizeUnzipped"] != float64(262144000) || lim["CodeSizeZipped"] != float64(52428800) ||
		lim["ConcurrentExecutions"] != float64(1000) || lim["TotalCodeSize"] != float64(80530636800) || lim["UnreservedConcurrentExecutions"] != float64(1000) {
		t.Errorf("AccountLimit %v", lim)
	}
	use := m["AccountUsage"].(map[string]any)
	if use["FunctionCount"] != float64(5) || use["TotalCodeSize"].(float64) <= 0 {
		t.Errorf("AccountUsage %v", use)
	}
}

func TestKilnAccountsRoute(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	ctx := t.Context()
	admin, err := e.svc.CreateAccount(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	user, err := e.svc.CreateAccount(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	w := e.do(user.ID, "POST", "/2026-01-01/kiln/accounts", nil)
	checkError(t, w, 403, "AccessDeniedException", "message", "not authorized")
	w = e.do(acctA, "POST", "/2026-01-01/kiln/accounts", nil) // unknown account
	checkError(t, w, 403, "AccessDeniedException", "message", "not authorized")

	w = e.do(admin.ID, "POST", "/2026-01-01/kiln/accounts", map[string]any{})
	if w.Code != 201 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	m := decode(t, w)
	if !regexp.MustCompile(`^\d{12}$`).MatchString(m["AccountId"].(string)) ||
		!regexp.MustCompile(`^AKIA[A-Z0-9]{16}$`).MatchString(m["AccessKeyId"].(string)) ||
		len(m["SecretAccessKey"].(string)) != 40 {
		t.Fatalf("new account %v", m)
	}
	secret, id, err := e.svc.LookupKey(ctx, m["AccessKeyId"].(string))
	if err != nil || id != m["AccountId"] || secret != m["SecretAccessKey"] {
		t.Fatalf("LookupKey: %q %q %v", secret, id, err)
	}
	w = e.do(admin.ID, "GET", "/2026-01-01/kiln/accounts", nil)
	if accts := decode(t, w)["Accounts"].([]any); len(accts) != 3 {
		t.Fatalf("accounts %v", accts)
	}
	if got := e.svc.Accounts(); len(got) != 3 || got[0].ID > got[1].ID {
		t.Fatalf("Accounts() %v", got)
	}
}
