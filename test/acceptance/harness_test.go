package acceptance

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/test/fnbuild"
	"github.com/kiln-dev/kiln/test/kilnproc"
)

func TestMain(m *testing.M) { os.Exit(kilnproc.RunTests(m)) }

// build compiles kiln once per test binary.
func build(t *testing.T) { kilnproc.Binary(t) }

// server is one `kiln server` process (see package kilnproc), with the
// short names these tests use.
type server struct {
	*kilnproc.Server
	dataDir  string
	endpoint string
	akid     string
	secret   string
}

// startServer runs kiln server on a fresh (or given) data dir.
func startServer(t *testing.T, dataDir string, args ...string) *server {
	t.Helper()
	build(t)
	p := kilnproc.Start(t, dataDir, args...)
	return &server{Server: p, dataDir: p.DataDir, endpoint: p.Endpoint, akid: p.AccessKeyID, secret: p.SecretAccessKey}
}

// kill SIGKILLs the server, as a crash would.
func (s *server) kill() { s.Kill() }

// client is an aws-sdk-go-v2 lambda client for the server's admin account.
func (s *server) client(t *testing.T) *lambda.Client {
	return s.clientFor(t, s.akid, s.secret)
}

func (s *server) clientFor(t *testing.T, akid, secret string, opts ...func(*lambda.Options)) *lambda.Client {
	return s.ClientFor(akid, secret, opts...)
}

func mustZip(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := codepkg.ZipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixture is one deployable test function.
type fixture struct {
	name    string
	runtime string
	handler string
	zip     func(t *testing.T) []byte
}

func fixtures() []fixture {
	return []fixture{
		{"go", "provided.al2023", "bootstrap", func(t *testing.T) []byte { return fnbuild.Zip(t, "testdata/gofn") }},
		{"python", "python3.12", "app.handler", func(t *testing.T) []byte { return mustZip(t, "testdata/python") }},
		{"nodecjs", "nodejs20.x", "index.handler", func(t *testing.T) []byte { return mustZip(t, "testdata/nodecjs") }},
		{"nodeesm", "nodejs22.x", "index.handler", func(t *testing.T) []byte { return mustZip(t, "testdata/nodeesm") }},
	}
}

const testRole = "arn:aws:iam::123456789012:role/kiln-test"

func createFunction(t *testing.T, c *lambda.Client, name string, fx fixture, mutate ...func(*lambda.CreateFunctionInput)) *lambda.CreateFunctionOutput {
	t.Helper()
	in := &lambda.CreateFunctionInput{
		FunctionName: aws.String(name),
		Runtime:      types.Runtime(fx.runtime),
		Handler:      aws.String(fx.handler),
		Role:         aws.String(testRole),
		Code:         &types.FunctionCode{ZipFile: fx.zip(t)},
		Timeout:      aws.Int32(10),
		MemorySize:   aws.Int32(128),
		Environment:  &types.Environment{Variables: map[string]string{"GREETING": "hello from " + fx.name}},
	}
	for _, m := range mutate {
		m(in)
	}
	out, err := c.CreateFunction(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateFunction %s: %v", name, err)
	}
	return out
}

type invokeResult struct {
	Status   int32
	FnError  string
	Version  string
	Log      string
	Payload  []byte
	Response map[string]any
}

func invoke(t *testing.T, c *lambda.Client, name string, payload any, opts ...func(*lambda.InvokeInput)) invokeResult {
	t.Helper()
	b, _ := json.Marshal(payload)
	in := &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b, LogType: types.LogTypeTail}
	for _, o := range opts {
		o(in)
	}
	out, err := c.Invoke(context.Background(), in)
	if err != nil {
		t.Fatalf("Invoke %s: %v", name, err)
	}
	r := invokeResult{Status: out.StatusCode, Payload: out.Payload, Version: aws.ToString(out.ExecutedVersion)}
	r.FnError = aws.ToString(out.FunctionError)
	if out.LogResult != nil {
		l, err := decodeB64(*out.LogResult)
		if err != nil {
			t.Fatalf("LogResult not base64: %v", err)
		}
		r.Log = l
	}
	_ = json.Unmarshal(out.Payload, &r.Response)
	return r
}
