//go:build linux

package linux

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// hostCounts are what an isolated sandbox could leak on the host.
type hostCounts struct {
	fds, mounts, threads, cgroups, links int
}

func countHost(t *testing.T, b *Backend) hostCounts {
	t.Helper()
	var c hostCounts
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	c.fds = len(fds)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	c.mounts = strings.Count(string(mi), "\n")
	st, _ := os.ReadFile("/proc/self/status")
	for l := range strings.Lines(string(st)) {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			c.threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if b.iso != nil && b.iso.eg != nil {
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, b.iso.eg.prefix) {
				c.links++
			}
		}
	}
	for _, d := range b.drv.parentDirs() {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				c.cgroups++
			}
		}
	}
	return c
}

// TestIsolatedNoLeaks runs create → listen → start → wait → delete cycles
// and counts what the host holds before and after: descriptors (network
// namespaces live only as long as the backend's descriptor and the
// listener), mounts, threads, cgroups and uid slots. KILN_LEAK_CYCLES
// raises the count (CI runs 200; thousands were run by hand).
func TestIsolatedNoLeaks(t *testing.T) {
	b := newIsoBackend(t)
	cycles := 200
	if v, err := strconv.Atoi(os.Getenv("KILN_LEAK_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	leakCycles(t, b, cycles)
}

// leakCycles runs the cycles and checks the counts; with egress, host
// links (veths) count too.
func leakCycles(t *testing.T, b *Backend, cycles int) {
	t.Helper()
	ctx := context.Background()
	cycle := func(i int) {
		s, err := b.Create(ctx, sandbox.Spec{ID: "leak" + strconv.Itoa(i), Argv: []string{"/bin/true"},
			MemoryBytes: 64 << 20, CPUWeightMB: 128, Mounts: []sandbox.Mount{{Source: t.TempDir(), Target: "/var/task"}}})
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.(sandbox.Listener).Listen(ctx, "127.0.0.1:9001")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := s.Wait(ctx); err != nil || !st.Success() {
			t.Fatal(st, err)
		}
		_ = l.Close()
		if err := s.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Spawner threads, page cache, and inits started after the first
	// Listen (which open its address ahead) in place of the pool's first.
	for i := range cap(b.iso.pool) + 1 {
		cycle(-1 - i)
	}
	waitPoolSteady(t, b)
	before := countHost(t, b)
	t0 := time.Now()
	for i := range cycles {
		cycle(i)
	}
	el := time.Since(t0)
	t.Logf("%d cycles in %v (%.0f sandboxes/s, one at a time)", cycles, el, float64(cycles)/el.Seconds())
	waitPoolSteady(t, b)
	after := countHost(t, b)
	// Network namespaces (and their veths) are torn down asynchronously;
	// in the end only the slots in use (pre-started inits) have one.
	if b.iso.eg != nil {
		for end := time.Now().Add(10 * time.Second); after.links != usedSlots(b) && time.Now().Before(end); after = countHost(t, b) {
			time.Sleep(20 * time.Millisecond)
		}
		if after.links != usedSlots(b) {
			t.Errorf("%d egress veths for %d uid slots in use", after.links, usedSlots(b))
		}
	}
	if after.fds > before.fds || after.mounts != before.mounts || after.cgroups != before.cgroups || after.links > before.links || after.threads > before.threads+4 {
		t.Errorf("leak after %d cycles: before %+v after %+v", cycles, before, after)
	}
	if n := usedSlots(b); n != cap(b.iso.pool) {
		t.Errorf("%d uid slots in use, want only the pre-started inits' %d", n, cap(b.iso.pool))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.live) != 0 {
		t.Errorf("%d sandboxes still live", len(b.live))
	}
}

func usedSlots(b *Backend) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, used := range b.iso.slots {
		if used {
			n++
		}
	}
	return n
}

// waitPoolSteady waits until the pool is full and its filler idle, so
// counts taken then are comparable.
func waitPoolSteady(t *testing.T, b *Backend) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if len(b.iso.pool) == cap(b.iso.pool) && usedSlots(b) == cap(b.iso.pool) {
			time.Sleep(20 * time.Millisecond) // let the fillers park
			return
		}
		if time.Now().After(end) {
			t.Fatalf("pool never filled: %d ready, %d slots used", len(b.iso.pool), usedSlots(b))
		}
	}
}
