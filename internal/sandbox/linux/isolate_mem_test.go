//go:build linux

package linux

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox"
	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
)

// idleFigures are one idle sandbox's memory: its cgroup's usage and its
// main process's (the init's, when isolated) resident and proportional set.
type idleFigures struct {
	cgroup, rss, pss, anon uint64
}

// idleMemory starts n sandboxes running /bin/sleep, lets them settle and
// averages their figures.
func idleMemory(t *testing.T, b *Backend, n int) (idleFigures, []string) {
	t.Helper()
	ctx := context.Background()
	var boxes []sandbox.Sandbox
	defer func() {
		for _, s := range boxes {
			_ = s.Delete(ctx)
		}
	}()
	for i := range n {
		s, err := b.Create(ctx, sandbox.Spec{ID: "idle" + strconv.Itoa(i), Argv: []string{"/bin/sleep", "60"},
			MemoryBytes: 128 << 20, CPUWeightMB: 128})
		if err != nil {
			t.Fatal(err)
		}
		boxes = append(boxes, s)
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the init's hand-over to its supervisor
	var sum idleFigures
	var cmds []string
	for _, s := range boxes {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sum.cgroup += st.MemoryBytes
		pid := strconv.Itoa(s.Pid())
		r, _ := os.ReadFile("/proc/" + pid + "/smaps_rollup")
		for _, k := range []struct {
			name string
			dst  *uint64
		}{{"Rss", &sum.rss}, {"Pss", &sum.pss}, {"Anonymous", &sum.anon}} {
			v, _ := kvLookup(r, k.name)
			*k.dst += v * 1024
		}
		c, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		cmds = append(cmds, strings.ReplaceAll(string(c), "\x00", " "))
	}
	u := uint64(n)
	return idleFigures{sum.cgroup / u, sum.rss / u, sum.pss / u, sum.anon / u}, cmds
}

// TestIsolatedIdleMemory measures what isolation adds to an idle sandbox:
// its cgroup's usage next to the same process in a cgroups-only sandbox,
// and what its pid 1 holds. With cgo pid 1 is the small C init, which must
// show.
func TestIsolatedIdleMemory(t *testing.T) {
	plain := newHostBackend(t, Config{})
	iso := newIsoBackend(t)
	const n = 4
	base, _ := idleMemory(t, plain, n)
	got, cmds := idleMemory(t, iso, n)
	mib := func(v uint64) string { return strconv.FormatFloat(float64(v)/(1<<20), 'f', 2, 64) + " MiB" }
	kib := func(v uint64) string { return strconv.FormatUint(v>>10, 10) + " KiB" }
	t.Logf("idle /bin/sleep sandbox, cgroup usage: isolated %s, cgroups only %s: isolation adds %s",
		mib(got.cgroup), mib(base.cgroup), mib(got.cgroup-min(got.cgroup, base.cgroup)))
	t.Logf("isolated pid 1: RSS %s, PSS %s, anonymous %s (%q)", kib(got.rss), kib(got.pss), kib(got.anon), cmds[0])
	if nsinit.SmallSupervisor {
		for _, c := range cmds {
			if strings.TrimSpace(c) != nsinit.Argv0 {
				t.Errorf("pid 1 is %q, want the init", c)
			}
		}
		if got.anon > 1<<20 {
			t.Errorf("pid 1 holds %s of anonymous memory", kib(got.anon))
		}
	}
}
