package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
)

// goWorker is a worker on a fresh linux backend with the Go echo function
// as every code address.
func goWorker(b *testing.B, cfg linux.Config) (*worker.Worker, worker.FunctionSpec) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	zip, err := codepkg.ZipDir(filepath.Dir(buildGoFunction(b, b.TempDir())))
	if err != nil {
		b.Fatal(err)
	}
	backend, err := linux.New(cfg)
	if err != nil {
		b.Skipf("linux backend: %v", err)
	}
	b.Cleanup(func() { _ = backend.Close() })
	w, err := worker.New(worker.Config{DataDir: b.TempDir(), Backend: backend, Code: dirCode{zip}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close(context.Background()) })
	return w, worker.FunctionSpec{AccountID: "123456789012", FunctionName: "density", FunctionVersion: "$LATEST",
		Runtime: "provided.al2023", Handler: "bootstrap", MemoryMB: 128, TimeoutSec: 10,
		CodeSha256Hex: "0000000000000000000000000000000000000000000000000000000000000002"}
}

// cgroupMemory reads a sandbox's memory cgroup usage (v1 or v2).
func cgroupMemory(b *testing.B, parent, id string) uint64 {
	b.Helper()
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", parent, id, "memory.usage_in_bytes"),
		filepath.Join("/sys/fs/cgroup", parent, id, "memory.current"),
	} {
		if v, err := os.ReadFile(f); err == nil {
			n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	b.Fatalf("no memory usage for sandbox %s under %s", id, parent)
	return 0
}

// BenchmarkIdleSandboxMemory is what an idle Go hello-world sandbox holds
// (its cgroup's memory usage after one invoke), isolated and with cgroups
// only; the difference is what isolation adds per idle sandbox.
func BenchmarkIdleSandboxMemory(b *testing.B) {
	const n = 8
	measure := func(b *testing.B, cfg linux.Config) float64 {
		w, spec := goWorker(b, cfg)
		var ids []string
		for i := range n {
			spec.Key = fmt.Sprintf("k%d", i)
			info, err := w.CreateSandbox(context.Background(), spec)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := w.Invoke(context.Background(), info.ID, &worker.InvokeRequest{RequestID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Payload: []byte(`{}`)})
			if err != nil || resp.FunctionError != "" {
				b.Fatalf("invoke: %v", err)
			}
			ids = append(ids, info.ID)
		}
		time.Sleep(300 * time.Millisecond) // idle
		var sum uint64
		for _, id := range ids {
			sum += cgroupMemory(b, cfg.CgroupParent, id)
		}
		return float64(sum) / n / (1 << 20)
	}
	for b.Loop() {
		iso := measure(b, linux.Config{CgroupParent: "kiln-bench-mem-iso", Isolation: true})
		plain := measure(b, linux.Config{CgroupParent: "kiln-bench-mem"})
		fmt.Printf("idle Go sandbox memory (cgroup usage, %d sandboxes): isolated %.2f MiB, cgroups only %.2f MiB, isolation adds %.2f MiB\n",
			n, iso, plain, iso-plain)
		b.ReportMetric(iso, "iso-MiB")
		b.ReportMetric(plain, "plain-MiB")
		b.ReportMetric(iso-plain, "added-MiB")
	}
}

// BenchmarkSandboxCreationRate creates isolated Go sandboxes (runtime init
// included) and destroys them, one at a time and from two callers at once.
func BenchmarkSandboxCreationRate(b *testing.B) {
	w, spec := goWorker(b, linux.Config{CgroupParent: "kiln-bench-rate", Isolation: true})
	const total = 200
	run := func(callers int) float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := spec
				for i := range total / callers {
					s.Key = fmt.Sprintf("r%d-%d", c, i)
					info, err := w.CreateSandbox(context.Background(), s)
					if err != nil {
						b.Error(err)
						return
					}
					_ = w.DestroySandbox(context.Background(), info.ID)
				}
			}()
		}
		wg.Wait()
		return total / time.Since(t0).Seconds()
	}
	for b.Loop() {
		one, two := run(1), run(2)
		fmt.Printf("isolated Go sandbox create+init+destroy: %.0f/s one at a time, %.0f/s from 2 callers\n", one, two)
		b.ReportMetric(one, "serial-per-s")
		b.ReportMetric(two, "2callers-per-s")
	}
}
