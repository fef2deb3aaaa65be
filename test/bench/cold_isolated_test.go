package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
)

// BenchmarkColdStartIsolated is BenchmarkColdStart with the linux backend's
// isolation on (namespaces, pivot_root, seccomp, own network), next to a
// bare fork+exec of the same bootstrap with the same interpreter
// (/usr/bin/python3, not a version manager's).
func BenchmarkColdStartIsolated(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("isolation needs root")
	}
	kiln := filepath.Join(b.TempDir(), "kiln")
	build := exec.Command("go", "build", "-o", kiln, "../../cmd/kiln")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build kiln: %v\n%s", err, out)
	}
	cases := []coldCase{
		{"go", "provided.al2023", "bootstrap", func(b *testing.B) string { return filepath.Dir(buildGoFunction(b, b.TempDir())) }},
		{"python", "python3.12", "app.handler", func(*testing.B) string { return "testdata/python" }},
		{"node", "nodejs20.x", "index.handler", func(*testing.B) string { return "testdata/node" }},
	}
	for _, cc := range cases {
		b.Run(cc.name, func(b *testing.B) { benchColdIsolated(b, cc, kiln) })
	}
}

func benchColdIsolated(b *testing.B, cc coldCase, kiln string) {
	zip, err := codepkg.ZipDir(cc.dir(b))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	backend, err := linux.New(linux.Config{CgroupParent: "kiln-bench-iso", Isolation: true, InitPath: kiln})
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
	n := max(b.N, 30)
	one := func(i int) time.Duration {
		spec.Key = fmt.Sprintf("k%d", i)
		t0 := time.Now()
		info, err := w.CreateSandbox(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := w.Invoke(context.Background(), info.ID, &worker.InvokeRequest{RequestID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Payload: []byte(`{}`)})
		d := time.Since(t0)
		if err != nil || resp.FunctionError != "" {
			b.Fatalf("invoke: %v %s", err, resp.Payload)
		}
		_ = w.DestroySandbox(context.Background(), info.ID)
		return d
	}
	one(-1)

	rt, _ := runtimes.Lookup(cc.runtime)
	taskRoot := filepath.Join(dir, "code", sha)
	argv, err := rt.Command(taskRoot, filepath.Join(dir, "runtime"))
	if err != nil {
		b.Fatal(err)
	}
	switch rt.Family {
	case runtimes.FamilyPython:
		argv[0] = "/usr/bin/python3"
	case runtimes.FamilyNodejs:
		argv[0] = "/usr/bin/node"
	}
	baseD := make(dist, 0, n)
	for range n {
		baseD = append(baseD, bareStart(b, rt, argv, taskRoot, filepath.Join(dir, "runtime"), cc.handler))
	}
	b.ResetTimer()
	d := make(dist, 0, n)
	for i := range n {
		d = append(d, one(i))
	}
	b.StopTimer()
	report(b, "isolated cold start "+cc.name, d, baseD)
}
