package controlplane

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/tenant"
)

const (
	acctA = "111111111111"
	acctB = "222222222222"
	role  = "arn:aws:iam::111111111111:role/lambda-role"
)

// env is a real Service on a real single-voter consensus node in dir.
type env struct {
	t    testing.TB
	dir  string
	node *consensus.Node
	svc  *Service
	clk  *clock

	mu      sync.Mutex
	retired []string
}

// clock is a settable test clock; every reading advances it 1 ms so
// successive writes get distinct, ordered times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newEnv(t testing.TB, dir string) *env {
	t.Helper()
	return newEnvRand(t, dir, nil)
}

func newEnvRand(t testing.TB, dir string, rnd io.Reader) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := consensus.Open(ctx, consensus.Config{Dir: dir + "/raft", Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("consensus.Open: %v", err)
	}
	clk := &clock{t: time.Date(2020, 4, 10, 19, 6, 32, 0, time.UTC)}
	svc, err := New(Config{DataDir: dir, Node: node, Logger: testLogger(t), Now: clk.Now, Rand: rnd})
	if err != nil {
		node.Close()
		t.Fatalf("New: %v", err)
	}
	e := &env{t: t, dir: dir, node: node, svc: svc, clk: clk}
	svc.OnRetire(func(k string) {
		e.mu.Lock()
		e.retired = append(e.retired, k)
		e.mu.Unlock()
	})
	if err := node.Start(ctx); err != nil {
		node.Close()
		t.Fatalf("node.Start: %v", err)
	}
	return e
}

func (e *env) Close() {
	if err := e.node.Close(); err != nil {
		e.t.Errorf("node.Close: %v", err)
	}
}

func (e *env) takeRetired() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.retired
	e.retired = nil
	return r
}

// do sends one request straight to the Handler as account acct.
func (e *env) do(acct, method, path string, body any) *httptest.ResponseRecorder {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(j)
	}
	r := httptest.NewRequest(method, path, rd)
	if acct != "" {
		r = r.WithContext(tenant.WithAccount(r.Context(), acct))
	}
	w := httptest.NewRecorder()
	e.svc.Handler().ServeHTTP(w, r)
	return w
}

// makeZip builds a small deterministic zip holding files.
func makeZip(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range sortedKeys(files) {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hexOf(b []byte) string                    { return hex.EncodeToString(b) }
func readFile(p string) ([]byte, error)        { return os.ReadFile(p) }
func bytesEqual(a, b []byte) bool              { return bytes.Equal(a, b) }
func itoa(n int) string                        { return strconv.Itoa(n) }
func jsonDecode(r *http.Response, v any) error { return json.NewDecoder(r.Body).Decode(v) }

func pyZip(t testing.TB, body string) []byte {
	return makeZip(t, map[string]string{"index.py": "def handler(event, context):\n    return " + body + "\n"})
}

// createBody is a valid CreateFunction request body.
func createBody(t testing.TB, name string) map[string]any {
	return map[string]any{
		"FunctionName": name,
		"Runtime":      "python3.12",
		"Role":         role,
		"Handler":      "index.handler",
		"Code":         map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(pyZip(t, `"`+name+`"`))},
	}
}

// akidAccounts is the test's stand-in for SigV4 (checked elsewhere): it
// reads the access key id from the Authorization header and puts the
// matching account into the context.
func akidAccounts(h http.Handler, accounts map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		_, cred, _ := strings.Cut(auth, "Credential=")
		akid, _, _ := strings.Cut(cred, "/")
		if acct, ok := accounts[akid]; ok {
			r = r.WithContext(tenant.WithAccount(r.Context(), acct))
		}
		h.ServeHTTP(w, r)
	})
}

// sdkClients starts an httptest server for e and returns an SDK client per
// account (A and B).
func (e *env) sdkClients(t *testing.T) (a, b *lambda.Client) {
	srv := httptest.NewServer(akidAccounts(e.svc.Handler(), map[string]string{"AKIAAAAAAAAAAAAAAAAA": acctA, "AKIABBBBBBBBBBBBBBBB": acctB}))
	t.Cleanup(srv.Close)
	mk := func(akid string) *lambda.Client {
		return lambda.New(lambda.Options{
			Region:           "us-east-1",
			BaseEndpoint:     aws.String(srv.URL),
			Credentials:      credentials.NewStaticCredentialsProvider(akid, "secret", ""),
			HTTPClient:       srv.Client(),
			RetryMaxAttempts: 1,
		})
	}
	return mk("AKIAAAAAAAAAAAAAAAAA"), mk("AKIABBBBBBBBBBBBBBBB")
}

func decode(t testing.TB, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if w.Body.Len() == 0 {
		return m
	}
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("reply is not JSON: %v: %s", err, w.Body.String())
	}
	return m
}

func withAcct(r *http.Request, acct string) context.Context {
	return tenant.WithAccount(r.Context(), acct)
}
