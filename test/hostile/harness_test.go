package hostile

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

const testRole = "arn:aws:iam::000000000000:role/kiln"

var (
	buildOnce sync.Once
	buildErr  error
	kilnBin   string
	buildDir  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-hostile-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		kilnBin = filepath.Join(buildDir, "kiln")
		cmd := exec.Command("go", "build", "-o", kilnBin, "../../cmd/kiln")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build kiln: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
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

// server is one `kiln server --isolation`.
type server struct {
	cmd      *exec.Cmd
	dataDir  string
	endpoint string
	akid     string
	secret   string
	out      *syncBuffer
	done     chan struct{}
}

var addrRE = regexp.MustCompile(`serving the AWS Lambda API on (http://[0-9.:]+)`)

func startServer(t *testing.T) *server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root; CI runs as root")
	}
	build(t)
	s := &server{dataDir: t.TempDir(), out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(kilnBin, "server", "--listen", "127.0.0.1:0", "--data-dir", s.dataDir, "--log-level", "warn", "--keep-alive", "1m")
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		_ = pw.Close()
		close(s.done)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = s.out.Write([]byte(line + "\n"))
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
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("kiln server did not start:\n%s", s.out.String())
	}
	s.akid, s.secret = readKeys(t, filepath.Join(s.dataDir, "credentials"))
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.out.String())
		}
	})
	return s
}

func readKeys(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return keysIn(t, string(b))
}

func keysIn(t *testing.T, text string) (akid, secret string) {
	t.Helper()
	for l := range strings.Lines(text) {
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
		t.Fatalf("no keys in:\n%s", text)
	}
	return akid, secret
}

// newAccount creates another account with the kiln CLI.
func (s *server) newAccount(t *testing.T) *lambda.Client {
	t.Helper()
	cmd := exec.Command(kilnBin, "account", "create")
	cmd.Env = append(os.Environ(), "KILN_ENDPOINT="+s.endpoint,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.dataDir, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(s.dataDir, "config"), "AWS_PROFILE=default")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("account create: %v\n%s", err, out)
	}
	akid, secret := keysIn(t, string(out))
	return s.clientFor(akid, secret)
}

func (s *server) client() *lambda.Client { return s.clientFor(s.akid, s.secret) }

func (s *server) clientFor(akid, secret string) *lambda.Client {
	return lambda.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
		HTTPClient:  &http.Client{Timeout: 60 * time.Second},
	}, func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(s.endpoint)
		o.RetryMaxAttempts = 1
	})
}

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
