//go:build linux

package linux

import (
	"context"
	"os/exec"
	"strconv"
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// BenchmarkForkExecBaseline is what starting /bin/true costs without a
// sandbox; compare BenchmarkCreateStartWait against it.
func BenchmarkForkExecBaseline(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateStartWait is the cold-start cost of a sandbox: Create
// (cgroup + limits + TmpDir), Start, Wait for /bin/true. Delete is timed
// separately in BenchmarkCreateStartWaitDelete.
func BenchmarkCreateStartWait(b *testing.B) {
	for _, bk := range benchBackends(b) {
		b.Run(bk.name, func(b *testing.B) {
			benchCycle(b, bk.b, false)
		})
	}
}

// BenchmarkCreateStartWaitDelete is a whole sandbox life.
func BenchmarkCreateStartWaitDelete(b *testing.B) {
	for _, bk := range benchBackends(b) {
		b.Run(bk.name, func(b *testing.B) {
			benchCycle(b, bk.b, true)
		})
	}
}

type namedBackend struct {
	name string
	b    *Backend
}

func benchBackends(b *testing.B) []namedBackend {
	host := newHostBackend(b, Config{})
	out := []namedBackend{{"cgroup-v" + strconv.Itoa(host.CgroupVersion()), host}}
	if u := unifiedHybridBackend(b); u != nil {
		out = append(out, namedBackend{"cgroup-v2-unified-no-controllers", u})
	}
	none, err := newBackend(Config{CgroupParent: "unused", Logger: testLogger(b)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = none.Close() })
	return append(out, namedBackend{"no-cgroups", none})
}

func benchCycle(b *testing.B, bk *Backend, timeDelete bool) {
	ctx := context.Background()
	tmp := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		id := "bench" + strconv.Itoa(i)
		s, err := bk.Create(ctx, sandbox.Spec{
			ID:          id,
			Argv:        []string{"/bin/true"},
			TmpDir:      tmp + "/" + id,
			MemoryBytes: 128 << 20,
			CPUWeightMB: 128,
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if st, err := s.Wait(ctx); err != nil || !st.Success() {
			b.Fatal(st, err)
		}
		if !timeDelete {
			b.StopTimer()
		}
		if err := s.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		if !timeDelete {
			b.StartTimer()
		}
	}
}
