package worker_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/test/fnbuild"
)

// fixtures holds the deployment packages the tests share besides the Go
// function (fnbuild builds and caches that one).
var fixtures struct {
	once  sync.Once
	err   error
	pyZip []byte
	noZip []byte // a provided-runtime package without a bootstrap
}

func buildFixtures() error {
	var err error
	if fixtures.pyZip, err = codepkg.ZipDir("testdata/python"); err != nil {
		return err
	}
	noDir, err := os.MkdirTemp("", "kiln-worker-nobootstrap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(noDir)
	if err := os.WriteFile(filepath.Join(noDir, "README"), []byte("no bootstrap here\n"), 0o644); err != nil {
		return err
	}
	fixtures.noZip, err = codepkg.ZipDir(noDir)
	return err
}

// codeStore is the boundary to the control plane's code store: zips by
// their sha256, with a count of reads.
type codeStore struct {
	mu    sync.Mutex
	zips  map[string][]byte
	reads map[string]int
}

func newCodeStore() *codeStore {
	return &codeStore{zips: map[string][]byte{}, reads: map[string]int{}}
}

func (c *codeStore) put(zip []byte) string {
	sum := sha256.Sum256(zip)
	sha := hex.EncodeToString(sum[:])
	c.mu.Lock()
	c.zips[sha] = zip
	c.mu.Unlock()
	return sha
}

func (c *codeStore) ReadCode(ctx context.Context, sha string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads[sha]++
	z, ok := c.zips[sha]
	if !ok {
		return nil, fmt.Errorf("no code %s", sha)
	}
	return z, nil
}

func (c *codeStore) readCount(sha string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[sha]
}

// logSink records every line in arrival order.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Append(account, function string, lines ...string) {
	s.mu.Lock()
	s.lines = append(s.lines, lines...)
	s.mu.Unlock()
}

func (s *logSink) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// env is one worker on the real linux backend with the shared fixtures.
type env struct {
	w       *worker.Worker
	code    *codeStore
	logs    *logSink
	dataDir string
	goSha   string
	pySha   string
	noSha   string
}

var cgroupSeq atomic.Uint64

func newEnv(t *testing.T, memoryMB int) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sandboxes use cgroups")
	}
	fixtures.once.Do(func() { fixtures.err = buildFixtures() })
	if fixtures.err != nil {
		t.Fatal(fixtures.err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	parent := fmt.Sprintf("kiln-test-worker-%d-%d-%s", os.Getpid(), cgroupSeq.Add(1), hex.EncodeToString(rnd[:]))
	be, err := linux.New(linux.Config{CgroupParent: parent})
	if err != nil {
		t.Fatalf("linux backend: %v", err)
	}
	e := &env{code: newCodeStore(), logs: &logSink{}, dataDir: t.TempDir()}
	e.goSha = e.code.put(fnbuild.Zip(t, "testdata/gofn"))
	e.pySha = e.code.put(fixtures.pyZip)
	e.noSha = e.code.put(fixtures.noZip)
	e.w, err = worker.New(worker.Config{
		ID:       "w-test",
		DataDir:  e.dataDir,
		Backend:  be,
		Code:     e.code,
		Logs:     e.logs,
		MemoryMB: memoryMB,
	})
	if err != nil {
		_ = be.Close()
		t.Fatalf("worker.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.w.Close(ctx); err != nil {
			t.Errorf("worker close: %v", err)
		}
		if err := be.Close(); err != nil {
			t.Errorf("backend close: %v", err)
		}
	})
	return e
}

func (e *env) goSpec() worker.FunctionSpec {
	return worker.FunctionSpec{
		Key:             "123456789012:gofn:$LATEST:1",
		AccountID:       "123456789012",
		FunctionName:    "gofn",
		FunctionVersion: "$LATEST",
		Runtime:         "provided.al2023",
		Handler:         "bootstrap",
		MemoryMB:        128,
		TimeoutSec:      5,
		CodeSha256Hex:   e.goSha,
	}
}

func (e *env) pySpec() worker.FunctionSpec {
	return worker.FunctionSpec{
		Key:             "123456789012:pyfn:$LATEST:1",
		AccountID:       "123456789012",
		FunctionName:    "pyfn",
		FunctionVersion: "$LATEST",
		Runtime:         "python3.12",
		Handler:         "app.handler",
		MemoryMB:        128,
		TimeoutSec:      5,
		CodeSha256Hex:   e.pySha,
	}
}

func (e *env) create(t *testing.T, spec worker.FunctionSpec) worker.SandboxInfo {
	t.Helper()
	info, err := e.w.CreateSandbox(testCtx(t), spec)
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	return info
}

var reqSeq atomic.Uint64

func newRequestID() string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", reqSeq.Add(1))
}

// invoke sends ev (marshalled to JSON) with Tail set.
func (e *env) invoke(t *testing.T, sandboxID string, ev any) (*worker.InvokeResponse, string, error) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	id := newRequestID()
	resp, err := e.w.Invoke(testCtx(t), sandboxID, &worker.InvokeRequest{
		RequestID:   id,
		Payload:     b,
		ContentType: "application/json",
		InvokedArn:  "arn:aws:lambda:us-east-1:123456789012:function:gofn",
		Tail:        true,
	})
	return resp, id, err
}

// mustInvoke invokes and requires a successful (non-error) reply.
func (e *env) mustInvoke(t *testing.T, sandboxID string, ev any) (gofnReply, *worker.InvokeResponse) {
	t.Helper()
	resp, _, err := e.invoke(t, sandboxID, ev)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if resp.FunctionError != "" {
		t.Fatalf("Invoke: function error %s %s: %s\nlog:\n%s", resp.FunctionError, resp.ErrorType, resp.Payload, resp.LogTail)
	}
	var r gofnReply
	if err := json.Unmarshal(resp.Payload, &r); err != nil {
		t.Fatalf("reply %q: %v", resp.Payload, err)
	}
	return r, resp
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type gofnEvent struct {
	Action string `json:"action,omitempty"`
	Msg    string `json:"msg,omitempty"`
	Ms     int    `json:"ms,omitempty"`
	N      int    `json:"n,omitempty"`
}

type gofnReply struct {
	Instance  string `json:"instance"`
	Pid       int    `json:"pid"`
	Child     int    `json:"child"`
	Msg       string `json:"msg"`
	RequestID string `json:"request_id"`
}

type errorBody struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
}

func decodeError(t *testing.T, b []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error payload %q: %v", b, err)
	}
	return e
}

// processStart reads a process's start time (field 22 of /proc/pid/stat),
// so a reused pid is not mistaken for the original process.
func processStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", false
	}
	if f[0] == "Z" { // exited, waiting for its parent to reap it
		return "", false
	}
	return f[19], true
}

// waitGone waits until none of the processes (pid → start time) runs.
func waitGone(t *testing.T, procs map[int]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var alive []int
		for pid, start := range procs {
			if st, ok := processStart(pid); ok && st == start {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running: %v", alive)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spawnProcs asks the Go function to start a detached child and returns the
// runtime's and the child's pid with their start times.
func (e *env) spawnProcs(t *testing.T, sandboxID string) map[int]string {
	t.Helper()
	r, _ := e.mustInvoke(t, sandboxID, gofnEvent{Action: "spawn"})
	procs := map[int]string{}
	for _, pid := range []int{r.Pid, r.Child} {
		st, ok := processStart(pid)
		if !ok {
			t.Fatalf("process %d not running right after spawn", pid)
		}
		procs[pid] = st
	}
	return procs
}

func reportLine(t *testing.T, tail []byte) string {
	t.Helper()
	for _, l := range strings.Split(string(tail), "\n") {
		if strings.HasPrefix(l, "REPORT RequestId: ") {
			return l
		}
	}
	t.Fatalf("no REPORT line in log tail:\n%s", tail)
	return ""
}
