package acceptance

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

var (
	kilnBin   string // the kiln binary under test
	goFnZip   []byte // the aws-lambda-go function, zipped with its bootstrap
	buildDir  string
	buildOnce sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-acceptance-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles kiln and the Go test function once per test binary.
func build(t *testing.T) {
	t.Helper()
	var err error
	buildOnce.Do(func() {
		kilnBin = filepath.Join(buildDir, "kiln")
		cmd := exec.Command("go", "build", "-o", kilnBin, "../../cmd/kiln")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("build kiln: %v\n%s", e, out)
			return
		}
		boot := filepath.Join(buildDir, "gofn", "bootstrap")
		cmd = exec.Command("go", "build", "-o", boot, "./testdata/gofn")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("build go function: %v\n%s", e, out)
			return
		}
		goFnZip, err = zipDir(filepath.Dir(boot))
	})
	if err != nil || kilnBin == "" {
		t.Fatalf("build: %v", err)
	}
	if goFnZip == nil {
		t.Fatal("build failed earlier")
	}
}

// server is one `kiln server` process.
type server struct {
	t        *testing.T
	cmd      *exec.Cmd
	dataDir  string
	endpoint string
	akid     string
	secret   string
	out      *syncBuffer
	done     chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var addrRE = regexp.MustCompile(`serving the AWS Lambda API on (http://[0-9.:]+)`)

// startServer runs kiln server on a fresh (or given) data dir.
func startServer(t *testing.T, dataDir string, args ...string) *server {
	t.Helper()
	build(t)
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{t: t, dataDir: dataDir, out: &syncBuffer{}, done: make(chan struct{})}
	full := append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, args...)
	s.cmd = exec.Command(kilnBin, full...)
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start kiln: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.out.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case s.endpoint = <-found:
	case <-s.done:
		t.Fatalf("kiln server exited early:\n%s", s.out.String())
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatalf("kiln server did not start:\n%s", s.out.String())
	}
	s.akid, s.secret = readCredentials(t, filepath.Join(dataDir, "credentials"))
	t.Cleanup(s.stop)
	return s
}

func readCredentials(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	var akid, secret string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			akid = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if akid == "" || secret == "" {
		t.Fatalf("credentials file lacks keys:\n%s", b)
	}
	return akid, secret
}

// stop ends the server gracefully (SIGTERM), then hard.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.kill()
	}
}

// kill SIGKILLs the server, as a crash would.
func (s *server) kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// client is an aws-sdk-go-v2 lambda client for the server's admin account.
func (s *server) client(t *testing.T) *lambda.Client {
	return s.clientFor(t, s.akid, s.secret)
}

func (s *server) clientFor(t *testing.T, akid, secret string, opts ...func(*lambda.Options)) *lambda.Client {
	t.Helper()
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
		HTTPClient:  &http.Client{Timeout: 60 * time.Second},
	}
	return lambda.NewFromConfig(cfg, append([]func(*lambda.Options){func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(s.endpoint)
		o.RetryMaxAttempts = 1
	}}, opts...)...)
}

// zipDir zips a directory's files (flat or nested), keeping modes.
func zipDir(dir string) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Method = zip.Deflate
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mustZip(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := zipDir(dir)
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
		{"go", "provided.al2023", "bootstrap", func(t *testing.T) []byte { build(t); return goFnZip }},
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
