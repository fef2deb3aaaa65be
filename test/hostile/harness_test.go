package hostile

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/test/kilnproc"
)

const testRole = "arn:aws:iam::000000000000:role/kiln"

func TestMain(m *testing.M) { os.Exit(kilnproc.RunTests(m)) }

// server is one `kiln server` (isolated, with sandbox egress: its
// defaults) process.
type server struct {
	*kilnproc.Server
	dataDir  string
	endpoint string
	bridge   string // its sandbox bridge's name
	outPort  int    // of the listeners in the outside namespace
}

// startServer starts a server on a data dir whose sandbox subnet is free,
// with the outside namespace (egress_test.go) in place first, so even a
// broken rule never lets a sandbox's packet reach the real network.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root; CI runs as root")
	}
	dir, bridge, subnet := egressDataDir(t)
	port := outsideServer(t, subnet)
	p := kilnproc.Start(t, dir, append([]string{"--keep-alive", "1m"}, args...)...)
	return &server{Server: p, dataDir: p.DataDir, endpoint: p.Endpoint, bridge: bridge, outPort: port}
}

// newAccount creates another account with the kiln CLI.
func (s *server) newAccount(t *testing.T) *lambda.Client {
	t.Helper()
	return s.ClientFor(s.NewAccount(t))
}

func (s *server) client() *lambda.Client { return s.Client() }

var (
	probeZipOnce sync.Once
	probeZip     []byte
)

func probeCode(t *testing.T) []byte {
	t.Helper()
	probeZipOnce.Do(func() {
		src, err := os.ReadFile("testdata/probe/app.py")
		if err != nil {
			t.Fatal(err)
		}
		probeZip = zipOf(t, "app.py", src)
	})
	return probeZip
}

func zipOf(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fnOpts struct {
	memoryMB int32
	timeout  int32
	code     []byte
}

// deploy creates a Python function and returns its code's host directory.
func deploy(t *testing.T, s *server, c *lambda.Client, name string, o fnOpts) string {
	t.Helper()
	if o.memoryMB == 0 {
		o.memoryMB = 256
	}
	if o.timeout == 0 {
		o.timeout = 10
	}
	if o.code == nil {
		o.code = probeCode(t)
	}
	out, err := c.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Role: aws.String(testRole), Code: &types.FunctionCode{ZipFile: o.code},
		MemorySize: aws.Int32(o.memoryMB), Timeout: aws.Int32(o.timeout),
	})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	sha, err := decodeSha(aws.ToString(out.CodeSha256))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(s.dataDir, "worker", "code", sha)
}

type result struct {
	payload  map[string]any
	raw      string
	funcErr  string
	duration time.Duration
}

func invoke(t *testing.T, c *lambda.Client, name string, event map[string]any) result {
	t.Helper()
	b, _ := json.Marshal(event)
	start := time.Now()
	out, err := c.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
	if err != nil {
		t.Fatalf("invoke %s %v: %v", name, event, err)
	}
	r := result{raw: string(out.Payload), funcErr: aws.ToString(out.FunctionError), duration: time.Since(start)}
	_ = json.Unmarshal(out.Payload, &r.payload)
	return r
}
