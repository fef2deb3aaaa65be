package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
)

// dirCode serves one zip as every code address.
type dirCode struct{ zip []byte }

func (d dirCode) ReadCode(context.Context, string) ([]byte, error) { return d.zip, nil }

type coldCase struct {
	name, runtime, handler string
	dir                    func(b *testing.B) string
}

// BenchmarkColdStart measures create sandbox → runtime init → first response
// for each runtime through the worker and the linux backend, next to a bare
// fork+exec of the same bootstrap against a minimal Runtime API.
func BenchmarkColdStart(b *testing.B) {
	cases := []coldCase{
		{"go", "provided.al2023", "bootstrap", func(b *testing.B) string { return filepath.Dir(buildGoFunction(b, b.TempDir())) }},
		{"python", "python3.12", "app.handler", func(*testing.B) string { return "testdata/python" }},
		{"node", "nodejs20.x", "index.handler", func(*testing.B) string { return "testdata/node" }},
	}
	for _, cc := range cases {
		b.Run(cc.name, func(b *testing.B) {
			benchCold(b, cc, "cold start ", linux.Config{CgroupParent: "kiln-bench"}, false)
		})
	}
}

// benchCold measures cold starts of one runtime through a worker on a linux
// backend made with cfg. hostInterpreters makes the bare baseline use
// /usr/bin/python3 and /usr/bin/node, the interpreters an isolated sandbox
// sees, rather than the host's first on PATH.
func benchCold(b *testing.B, cc coldCase, label string, cfg linux.Config, hostInterpreters bool) {
	zip, err := codepkg.ZipDir(cc.dir(b))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	backend, err := linux.New(cfg)
	if err != nil {
		b.Skipf("linux backend: %v", err)
	}
	defer backend.Close()
	w, err := worker.New(worker.Config{DataDir: dir, Backend: backend, Code: dirCode{zip}})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(context.Background())
	const sha = "0000000000000000000000000000000000000000000000000000000000000001"
	spec := worker.FunctionSpec{AccountID: "123456789012", FunctionName: "cold", FunctionVersion: "$LATEST",
		Runtime: cc.runtime, Handler: cc.handler, MemoryMB: 256, TimeoutSec: 10, CodeSha256Hex: sha}
	n := b.N
	if n < 30 {
		n = 30
	}
	var createD, invokeD dist
	// Warm the code cache and the page cache once.
	one := func(i int) time.Duration {
		spec.Key = fmt.Sprintf("k%d", i)
		t0 := time.Now()
		info, err := w.CreateSandbox(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		resp, err := w.Invoke(context.Background(), info.ID, &worker.InvokeRequest{RequestID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Payload: []byte(`{}`)})
		d := time.Since(t0)
		if i >= 0 {
			createD = append(createD, t1.Sub(t0))
			invokeD = append(invokeD, d-t1.Sub(t0))
		}
		if err != nil || resp.FunctionError != "" {
			b.Fatalf("invoke: %v %s", err, resp.Payload)
		}
		_ = w.DestroySandbox(context.Background(), info.ID)
		return d
	}
	one(-1)

	// Baseline: the same bootstrap, same argv and environment, started with
	// a bare fork+exec against a minimal Runtime API.
	rt, _ := runtimes.Lookup(cc.runtime)
	taskRoot := filepath.Join(dir, "code", sha)
	argv, err := rt.Command(taskRoot, filepath.Join(dir, "runtime"))
	if err != nil {
		b.Fatal(err)
	}
	if hostInterpreters {
		switch rt.Family {
		case runtimes.FamilyPython:
			argv[0] = "/usr/bin/python3"
		case runtimes.FamilyNodejs:
			argv[0] = "/usr/bin/node"
		}
	}
	baseD := make(dist, 0, n)
	for i := 0; i < n; i++ {
		baseD = append(baseD, bareStart(b, rt, argv, taskRoot, filepath.Join(dir, "runtime"), cc.handler))
	}

	b.ResetTimer()
	d := make(dist, 0, n)
	for i := 0; i < n; i++ {
		d = append(d, one(i))
	}
	b.StopTimer()
	report(b, label+cc.name, d, baseD)
	fmt.Printf("  create sandbox (to first /next) p50 %.0f µs mean %.0f µs, first invoke p50 %.0f µs\n", us(createD.pct(0.5)), us(createD.mean()), us(invokeD.pct(0.5)))
	reportPhases(w)
}

// reportPhases prints the median of each cold-start phase the worker
// recorded (the warm-up start included).
func reportPhases(w *worker.Worker) {
	var sb strings.Builder
	var sum, sumMean time.Duration
	for _, p := range w.ColdStartPhases() {
		mean := p.Total / time.Duration(max(p.Count, 1))
		fmt.Fprintf(&sb, " %s %.0f/%.0f", p.Name, us(p.P50), us(mean))
		sum += p.P50
		sumMean += mean
	}
	if sb.Len() > 0 {
		fmt.Printf("  phases p50/mean µs:%s (sum %.0f/%.0f)\n", sb.String(), us(sum), us(sumMean))
	}
}

// bareStart runs the bootstrap as a plain child process against a minimal
// Runtime API and returns the time until its first response arrived.
func bareStart(b *testing.B, rt runtimes.Runtime, argv []string, taskRoot, runtimeDir, handler string) time.Duration {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{}, 1)
	served := false
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/invocation/next"):
			if served {
				<-r.Context().Done()
				return
			}
			served = true
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", "00000000-0000-0000-0000-000000000000")
			h.Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:cold")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
			_, _ = w.Write([]byte(`{}`))
		case strings.HasSuffix(r.URL.Path, "/response"), strings.HasSuffix(r.URL.Path, "/error"):
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"OK"}`))
			select {
			case got <- struct{}{}:
			default:
			}
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	env := runtimes.Environment(runtimes.EnvParams{Runtime: rt, FunctionName: "cold", FunctionVersion: "$LATEST",
		Handler: handler, Region: "us-east-1", MemoryMB: 256, RuntimeAPI: l.Addr().String(),
		TaskRoot: taskRoot, RuntimeDir: runtimeDir, InitType: "on-demand"})
	t0 := time.Now()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = taskRoot
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		b.Fatal("bare bootstrap never responded")
	}
	d := time.Since(t0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return d
}
