//go:build linux

package linux

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
	"github.com/kiln-dev/kiln/internal/sandbox/sandboxtest"
)

var parentSeq atomic.Int64

// testParent is a cgroup parent no other test run (or a running Kiln) uses,
// so Cleanup in one never touches another's sandboxes.
func testParent() string {
	return fmt.Sprintf("kiln-test-%d-%d", os.Getpid(), parentSeq.Add(1))
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (cgroups); CI runs as root")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// newHostBackend is New on this host with a private parent, removed again
// at the end.
func newHostBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	requireRoot(t)
	cfg.CgroupParent = testParent()
	cfg.Logger = testLogger(t)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndRemove(t, b) })
	return b
}

// closeAndRemove closes b and checks that the test's cgroup parent went
// with it (New made it, so Close removes it).
func closeAndRemove(t testing.TB, b *Backend) {
	if err := b.Close(); err != nil {
		t.Error(err)
	}
	if b.drv == nil {
		return
	}
	for _, dir := range b.drv.parentDirs() {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup parent %s survives Close", dir)
			_ = unix.Rmdir(dir)
		}
	}
}

func TestConformance(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend {
		b := newHostBackend(t, Config{})
		if c := b.Capabilities(); c != sandbox.FullCapabilities {
			t.Fatalf("capabilities on this host: %+v", c)
		}
		return b
	})
}

// TestConformanceUnifiedHybrid runs the v2 driver on the controller-less
// cgroup2 hierarchy of a hybrid host (as this project's CI VM is), so
// CLONE_INTO_CGROUP, cgroup.kill and v2 removal run for real even there.
// Limits are skipped: that hierarchy has no memory or pids controller.
func TestConformanceUnifiedHybrid(t *testing.T) {
	requireRoot(t)
	if unifiedHybridBackend(t) == nil {
		t.Skip("no hybrid cgroup2 hierarchy at /sys/fs/cgroup/unified")
	}
	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend { return unifiedHybridBackend(t) })
}

// TestConformanceNoCgroups runs the degraded mode: what it cannot promise
// it reports, and the suite skips.
func TestConformanceNoCgroups(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend {
		b, err := newBackend(Config{CgroupParent: "unused", Logger: testLogger(t)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeAndRemove(t, b) })
		return b
	})
}
