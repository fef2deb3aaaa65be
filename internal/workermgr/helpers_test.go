package workermgr_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/placement"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/internal/workermgr"
	"github.com/kiln-dev/kiln/test/fnbuild"
)

// codeStore is the boundary to the control plane's code store: it holds
// worker's Go test function (built once by fnbuild) at goSha, and nothing
// else.
type codeStore struct{ zip []byte }

func (c codeStore) ReadCode(ctx context.Context, sha string) ([]byte, error) {
	if sha != goSha {
		return nil, fmt.Errorf("no code %s", sha)
	}
	return c.zip, nil
}

// goSha is the content address the tests' specs name.
const goSha = "1111111111111111111111111111111111111111111111111111111111111111"

var cgroupSeq atomic.Uint64

type env struct {
	w *worker.Worker
	m *workermgr.Manager
}

// newEnv wires a manager to one real worker on the linux backend through
// the default placement policy.
func newEnv(t *testing.T, keepAlive time.Duration, workerMB int) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: sandboxes use cgroups")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	be, err := linux.New(linux.Config{CgroupParent: fmt.Sprintf("kiln-test-workermgr-%d-%d-%s", os.Getpid(), cgroupSeq.Add(1), hex.EncodeToString(rnd[:]))})
	if err != nil {
		t.Fatalf("linux backend: %v", err)
	}
	w, err := worker.New(worker.Config{ID: "w1", DataDir: t.TempDir(), Backend: be, Code: codeStore{fnbuild.Zip(t, "../worker/testdata/gofn")}, MemoryMB: workerMB})
	if err != nil {
		_ = be.Close()
		t.Fatalf("worker.New: %v", err)
	}
	m, err := workermgr.New(workermgr.Config{
		Workers:   []workermgr.Worker{w},
		Placement: placement.Default(placement.Static{w}),
		KeepAlive: keepAlive,
	})
	if err != nil {
		t.Fatalf("workermgr.New: %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
		_ = be.Close()
	})
	return &env{w: w, m: m}
}

func spec(key string) worker.FunctionSpec {
	return worker.FunctionSpec{
		Key:             key,
		AccountID:       "123456789012",
		FunctionName:    "gofn",
		FunctionVersion: "$LATEST",
		Runtime:         "provided.al2023",
		Handler:         "bootstrap",
		MemoryMB:        128,
		TimeoutSec:      5,
		CodeSha256Hex:   goSha,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var reqSeq atomic.Uint64

type reply struct {
	Instance string `json:"instance"`
	Pid      int    `json:"pid"`
}

// invoke runs ev in the lease and returns the response and the function's
// per-process instance id ("" on a function error).
func invoke(t *testing.T, l *workermgr.Lease, ev string) (*worker.InvokeResponse, string) {
	t.Helper()
	resp, err := l.Invoke(testCtx(t), &worker.InvokeRequest{
		RequestID: fmt.Sprintf("req-%d", reqSeq.Add(1)),
		Payload:   []byte(ev),
	})
	if err != nil {
		t.Errorf("Invoke in %s: %v", l.SandboxID(), err)
		return nil, ""
	}
	if resp.FunctionError != "" {
		return resp, ""
	}
	var r reply
	if err := json.Unmarshal(resp.Payload, &r); err != nil || r.Instance == "" {
		t.Errorf("reply %q: %v", resp.Payload, err)
	}
	return resp, r.Instance
}

func sandboxes(t *testing.T, w *worker.Worker) int {
	t.Helper()
	c, err := w.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Sandboxes
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
