// Package kilnproc runs the real kiln binary as a server process for tests
// that drive Kiln from outside, the way its users do: the acceptance tests,
// the hostile-function suite and the benchmarks that charge only the
// server's CPU. It builds cmd/kiln once per test binary.
package kilnproc

import (
	"bufio"
	"bytes"
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

	"github.com/kiln-dev/kiln/internal/sandbox/linux"
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

// RunTests runs a package's tests and then removes the binary Binary built;
// call it from TestMain: os.Exit(kilnproc.RunTests(m)).
func RunTests(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

// Binary builds cmd/kiln (once per test binary) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "kiln-bin-")
		if buildErr != nil {
			return
		}
		// The directory is reached by the sandboxes' unprivileged init, which
		// re-executes this binary.
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "kiln")
		// Built the way `go build` builds it for users: with cgo when a C
		// compiler is present, so the sandboxes' pid 1 is the C init.
		cmd := exec.Command("go", "build", "-o", binary, "github.com/kiln-dev/kiln/cmd/kiln")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build kiln: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// Server is one `kiln server` process.
type Server struct {
	DataDir         string
	Endpoint        string // http://127.0.0.1:port
	AccessKeyID     string // the admin account's keys, from DataDir/credentials
	SecretAccessKey string

	cmd   *exec.Cmd
	out   syncBuffer
	done  chan struct{}
	found chan string // the served endpoint, from the banner
}

var addrRE = regexp.MustCompile(`serving the AWS Lambda API on (http://[0-9.:]+)`)

// Start runs `kiln server` on dataDir ("" → a fresh temp dir) with extra
// flags, waits until it serves, and stops it when the test ends. A later
// --listen in args overrides the default 127.0.0.1:0.
func Start(t testing.TB, dataDir string, args ...string) *Server {
	t.Helper()
	s := Launch(t, dataDir, args...)
	s.WaitReady(t)
	return s
}

// Launch starts `kiln server` like Start but does not wait for it to serve
// (call WaitReady): a cluster's nodes must all be running before any of
// them can elect a leader and finish starting.
func Launch(t testing.TB, dataDir string, args ...string) *Server {
	t.Helper()
	return launch(t, dataDir, append([]string{"--listen", "127.0.0.1:0"}, args...))
}

// Restart runs `kiln server` on an existing data dir with no flags but
// --data-dir, --log-level and args (not even --listen: a cluster node keeps
// its address there), waits until it serves, and stops it when the test
// ends.
func Restart(t testing.TB, dataDir string, args ...string) *Server {
	t.Helper()
	s := launch(t, dataDir, args)
	s.WaitReady(t)
	return s
}

func launch(t testing.TB, dataDir string, args []string) *Server {
	t.Helper()
	bin := Binary(t)
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &Server{DataDir: dataDir, done: make(chan struct{}), found: make(chan string, 1)}
	full := append([]string{"server", "--data-dir", dataDir, "--log-level", "warn"}, args...)
	s.cmd = exec.Command(bin, full...)
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	s.cmd.Stderr = &s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start kiln: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		_ = pw.Close()
		close(s.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = s.out.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case s.found <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		s.Stop()
		removeCgroups(dataDir)
		if t.Failed() {
			t.Logf("kiln server output:\n%s", s.out.String())
		}
	})
	return s
}

// WaitReady waits until a Launched server serves (at most 60 s) and reads
// its admin keys.
func (s *Server) WaitReady(t testing.TB) {
	t.Helper()
	select {
	case s.Endpoint = <-s.found:
	case <-s.done:
		t.Fatalf("kiln server exited early:\n%s", s.out.String())
	case <-time.After(60 * time.Second):
		s.Kill()
		t.Fatalf("kiln server did not start:\n%s", s.out.String())
	}
	creds, err := os.ReadFile(filepath.Join(s.DataDir, "credentials"))
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	var ok bool
	if s.AccessKeyID, s.SecretAccessKey, ok = KeysIn(string(creds)); !ok {
		t.Fatalf("credentials file lacks keys:\n%s", creds)
	}
}

// Stop ends the server gracefully (SIGTERM), then hard after 15 s.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.Kill()
	}
}

// Kill SIGKILLs the server's process group, as a crash would.
func (s *Server) Kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Pid is the server process's pid.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Output is what the server printed so far.
func (s *Server) Output() string { return s.out.String() }

// Client is an aws-sdk-go-v2 lambda client for the admin account.
func (s *Server) Client(opts ...func(*lambda.Options)) *lambda.Client {
	return s.ClientFor(s.AccessKeyID, s.SecretAccessKey, opts...)
}

// ClientFor is a lambda client for the given keys, without retries so
// tests see every answer.
func (s *Server) ClientFor(akid, secret string, opts ...func(*lambda.Options)) *lambda.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
		HTTPClient:  &http.Client{Timeout: 60 * time.Second},
	}
	return lambda.NewFromConfig(cfg, append([]func(*lambda.Options){func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(s.Endpoint)
		o.RetryMaxAttempts = 1
	}}, opts...)...)
}

// Kiln runs a client verb of the kiln binary against s with the admin
// account's credentials and returns its combined output.
func (s *Server) Kiln(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(),
		"KILN_ENDPOINT="+s.Endpoint,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(s.DataDir, "credentials"),
		"AWS_CONFIG_FILE="+filepath.Join(s.DataDir, "config"),
		"AWS_PROFILE=default",
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// NewAccount creates another account with `kiln account create` and
// returns its keys.
func (s *Server) NewAccount(t testing.TB) (akid, secret string) {
	t.Helper()
	out, err := s.Kiln(t, "account", "create")
	if err != nil {
		t.Fatalf("kiln account create: %v\n%s", err, out)
	}
	akid, secret, ok := KeysIn(out)
	if !ok {
		t.Fatalf("account create printed no keys:\n%s", out)
	}
	return akid, secret
}

// KeysIn finds aws_access_key_id and aws_secret_access_key in
// shared-credentials text.
func KeysIn(text string) (akid, secret string, ok bool) {
	for _, l := range strings.Split(text, "\n") {
		k, v, found := strings.Cut(l, "=")
		if !found {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			akid = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	return akid, secret, akid != "" && secret != ""
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

// removeCgroups removes the empty cgroups a stopped or killed server left
// under its parent (internal/server names it after the data dir). A restart
// on the same data dir would clean them up; a test's temp dir never comes
// back, and leftovers slow every later CPU-quota write on the host. Groups
// that still hold processes stay: rmdir refuses them.
func removeCgroups(dataDir string) {
	parent := linux.CgroupParentFor(dataDir)
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent)) // cgroup v2
	for _, d := range dirs {
		kids, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, k := range kids {
			if k.IsDir() {
				_ = os.Remove(filepath.Join(d, k.Name()))
			}
		}
		_ = os.Remove(d)
	}
}
