//go:build linux

package linux

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

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

// BenchmarkCreateStartWait is the cold-start cost of a sandbox running
// /bin/true: Create (cgroup, limits, TmpDir), Start, Wait. Each iteration
// also Deletes, or the host would fill up; ns/op is the whole life, and the
// phases are reported as create-ns, start-ns, wait-ns, delete-ns and
// cold-ns (create+start+wait, the number to compare with the baseline).
// Stop/StartTimer is avoided: each call stops the world to read memstats.
func BenchmarkCreateStartWait(b *testing.B) {
	for _, bk := range benchBackends(b) {
		b.Run(bk.name, func(b *testing.B) {
			ctx := context.Background()
			tmp := b.TempDir()
			var create, start, wait, del time.Duration
			phases := map[string]time.Duration{}
			var order []string
			i := 0
			for b.Loop() {
				i++
				id := "bench" + strconv.Itoa(i)
				t0 := time.Now()
				s, err := bk.b.Create(ctx, sandbox.Spec{
					ID:          id,
					Argv:        []string{"/bin/true"},
					TmpDir:      tmp + "/" + id,
					MemoryBytes: 128 << 20,
					CPUWeightMB: 128,
				})
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := s.Start(ctx); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if st, err := s.Wait(ctx); err != nil || !st.Success() {
					b.Fatal(st, err)
				}
				t3 := time.Now()
				for n, d := range s.(*box).StartPhases() {
					if _, ok := phases[n]; !ok {
						order = append(order, n)
					}
					phases[n] += d
				}
				if err := s.Delete(ctx); err != nil {
					b.Fatal(err)
				}
				t4 := time.Now()
				create += t1.Sub(t0)
				start += t2.Sub(t1)
				wait += t3.Sub(t2)
				del += t4.Sub(t3)
			}
			n := float64(b.N)
			b.ReportMetric(float64(create)/n, "create-ns")
			b.ReportMetric(float64(start)/n, "start-ns")
			b.ReportMetric(float64(wait)/n, "wait-ns")
			b.ReportMetric(float64(del)/n, "delete-ns")
			b.ReportMetric(float64(create+start+wait)/n, "cold-ns")
			for _, name := range order {
				b.ReportMetric(float64(phases[name])/n/1e3, name+"-µs")
			}
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
		out = append(out, namedBackend{"cgroup-v2-no-controllers", u})
	}
	none, err := newBackend(Config{CgroupParent: "unused", Logger: testLogger(b)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = none.Close() })
	out = append(out, namedBackend{"no-cgroups", none})
	out = append(out, namedBackend{"isolated", newIsoBackend(b)})
	return append(out, namedBackend{"isolated-egress", newHostBackend(b, Config{Isolation: true, Egress: true,
		EgressBridge: "kilnb0", EgressSubnet: "100.121.0.0/16"})})
}
