package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/sandbox"
)

// CodeSource reads a function's deployment package by its content address.
type CodeSource interface {
	ReadCode(ctx context.Context, sha256hex string) ([]byte, error)
}

// LogSink receives a function's log lines (START/END/REPORT and its output).
type LogSink interface {
	Append(account, function string, lines ...string)
}

// Config wires a Worker.
type Config struct {
	ID      string
	Zone    string
	DataDir string // the worker's own directory: code cache, runtime files, sandbox scratch
	Region  string
	Backend sandbox.Backend
	Code    CodeSource
	Logs    LogSink
	Logger  *slog.Logger
	// MemoryMB is what this host offers to sandboxes (0 → 16 GiB).
	MemoryMB int
	// InitTimeout caps a runtime's init phase (0 → 10 s, Lambda's limit).
	InitTimeout time.Duration
	Now         func() time.Time
}

// Worker is the host agent for one machine.
type Worker struct {
	cfg        Config
	log        *slog.Logger
	codeDir    string
	runtimeDir string
	scratchDir string

	codeMu    sync.Mutex
	codeReady map[string]*codeEntry // sha hex → unpack state

	mu        sync.Mutex
	sandboxes map[string]*sbx
	usedMB    int
	closed    bool

	seq    atomic.Uint64
	wg     sync.WaitGroup // sandbox watcher goroutines
	phases coldStarts     // cold-start phase metrics (coldstart.go)
}

type codeEntry struct {
	done chan struct{}
	dir  string
	err  error
}

// New prepares the worker's directories and installs the runtime bootstraps.
func New(cfg Config) (*Worker, error) {
	if cfg.Backend == nil || cfg.Code == nil {
		return nil, errors.New("worker: Backend and Code are required")
	}
	if cfg.ID == "" {
		cfg.ID = "local"
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 16 * 1024
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg:        cfg,
		log:        log.With("worker", cfg.ID),
		codeDir:    filepath.Join(cfg.DataDir, "code"),
		runtimeDir: filepath.Join(cfg.DataDir, "runtime"),
		scratchDir: filepath.Join(cfg.DataDir, "sandboxes"),
		codeReady:  make(map[string]*codeEntry),
		sandboxes:  make(map[string]*sbx),
	}
	// Scratch from a previous run belongs to sandboxes that no longer exist.
	if err := os.RemoveAll(w.scratchDir); err != nil {
		return nil, fmt.Errorf("worker: clear scratch: %w", err)
	}
	for _, d := range []string{w.codeDir, w.scratchDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	if err := runtimes.Install(w.runtimeDir); err != nil {
		return nil, fmt.Errorf("worker: install runtimes: %w", err)
	}
	return w, nil
}

// ID names this worker.
func (w *Worker) ID() string { return w.cfg.ID }

// Capacity reports this host's load for placement.
func (w *Worker) Capacity(ctx context.Context) (Capacity, error) {
	w.mu.Lock()
	c := Capacity{
		WorkerID:     w.cfg.ID,
		Zone:         w.cfg.Zone,
		MemoryMB:     w.cfg.MemoryMB,
		UsedMemoryMB: w.usedMB,
		Sandboxes:    len(w.sandboxes),
		Healthy:      !w.closed,
	}
	w.mu.Unlock()
	w.codeMu.Lock()
	c.CachedCode = make(map[string]bool, len(w.codeReady))
	for k, e := range w.codeReady {
		select {
		case <-e.done:
			if e.err == nil {
				c.CachedCode[k] = true
			}
		default:
		}
	}
	w.codeMu.Unlock()
	return c, nil
}

// ensureCode unpacks a deployment package once per host; concurrent callers
// for the same code wait for the first.
func (w *Worker) ensureCode(ctx context.Context, sha string) (string, error) {
	if !validHex(sha) {
		return "", fmt.Errorf("worker: bad code address %q", sha)
	}
	w.codeMu.Lock()
	e := w.codeReady[sha]
	if e == nil {
		e = &codeEntry{done: make(chan struct{}), dir: filepath.Join(w.codeDir, sha)}
		w.codeReady[sha] = e
		w.codeMu.Unlock()
		e.err = w.unpack(ctx, sha, e.dir)
		if e.err != nil {
			w.codeMu.Lock()
			delete(w.codeReady, sha)
			w.codeMu.Unlock()
		}
		close(e.done)
	} else {
		w.codeMu.Unlock()
	}
	select {
	case <-e.done:
		return e.dir, e.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (w *Worker) unpack(ctx context.Context, sha, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil // unpacked by an earlier run; Extract renames into place atomically
	}
	zip, err := w.cfg.Code.ReadCode(ctx, sha)
	if err != nil {
		return fmt.Errorf("worker: read code %s: %w", sha, err)
	}
	if err := codepkg.Extract(ctx, zip, dir, codepkg.DefaultLimits); err != nil {
		return fmt.Errorf("worker: unpack code %s: %w", sha, err)
	}
	return nil
}

func validHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (w *Worker) newSandboxID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "sb-" + strconv.FormatUint(w.seq.Add(1), 10) + "-" + hex.EncodeToString(b[:])
}

// CreateSandbox makes a sandbox for spec and runs the runtime's init. An init
// that fails does not fail CreateSandbox: Lambda reports init failures on the
// invoke that caused the init, so the first Invoke on such a sandbox returns
// the failure and retires it.
func (w *Worker) CreateSandbox(ctx context.Context, spec FunctionSpec) (SandboxInfo, error) {
	start := w.cfg.Now()
	rt, ok := runtimes.Lookup(spec.Runtime)
	if !ok {
		return SandboxInfo{}, fmt.Errorf("worker: unknown runtime %q", spec.Runtime)
	}
	taskRoot, err := w.ensureCode(ctx, spec.CodeSha256Hex)
	if err != nil {
		return SandboxInfo{}, err
	}
	id := w.newSandboxID()
	s := &sbx{
		id:       id,
		spec:     spec,
		w:        w,
		memoryMB: spec.MemoryMB,
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return SandboxInfo{}, errors.New("worker: closed")
	}
	w.sandboxes[id] = s
	w.usedMB += spec.MemoryMB
	w.mu.Unlock()

	if err := s.start(ctx, rt, taskRoot); err != nil {
		w.remove(s)
		s.destroy(context.WithoutCancel(ctx))
		return SandboxInfo{}, err
	}
	s.initDuration = w.cfg.Now().Sub(start)
	if s.initFail != nil {
		s.initDuration = 0
	}
	return SandboxInfo{ID: id, WorkerID: w.cfg.ID, Key: spec.Key, MemoryMB: spec.MemoryMB, InitDuration: s.initDuration}, nil
}

// Invoke runs one invocation in a sandbox this worker made. The caller
// guarantees one invoke at a time per sandbox.
func (w *Worker) Invoke(ctx context.Context, sandboxID string, req *InvokeRequest) (*InvokeResponse, error) {
	w.mu.Lock()
	s := w.sandboxes[sandboxID]
	w.mu.Unlock()
	if s == nil {
		return nil, ErrSandboxGone
	}
	resp, err := s.invoke(ctx, req)
	if err != nil || resp.Retire {
		w.remove(s)
		s.destroy(context.WithoutCancel(ctx))
	}
	return resp, err
}

// DestroySandbox stops a sandbox and everything it started.
func (w *Worker) DestroySandbox(ctx context.Context, sandboxID string) error {
	w.mu.Lock()
	s := w.sandboxes[sandboxID]
	w.mu.Unlock()
	if s == nil {
		return nil
	}
	w.remove(s)
	s.destroy(ctx)
	return nil
}

func (w *Worker) remove(s *sbx) {
	w.mu.Lock()
	if w.sandboxes[s.id] == s {
		delete(w.sandboxes, s.id)
		w.usedMB -= s.memoryMB
	}
	w.mu.Unlock()
}

// Close destroys every sandbox.
func (w *Worker) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	all := make([]*sbx, 0, len(w.sandboxes))
	for _, s := range w.sandboxes {
		all = append(all, s)
	}
	w.sandboxes = map[string]*sbx{}
	w.usedMB = 0
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.destroy(ctx)
		}()
	}
	wg.Wait()
	w.wg.Wait()
	return nil
}

// listenLoopback opens the sandbox's Runtime API listener.
func listenLoopback() (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}
