//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Backend is the linux sandbox backend. Its methods are safe for concurrent
// use.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	drv     driver // nil: running without cgroups
	pidfd   bool   // CLONE_PIDFD works: exits are waited for without a thread each
	devnull *os.File
	sp      *spawner
	iso     *iso // nil without isolation

	mu     sync.Mutex
	live   map[string]*box // by ID; nil value: Create in progress
	closed bool
}

var _ sandbox.Backend = (*Backend)(nil)
var _ sandbox.CapabilityReporter = (*Backend)(nil)

// New detects the host's cgroup mode, prepares CgroupParent and returns the
// backend. Errors wrap ErrCgroupsUnavailable when cgroups cannot be used and
// AllowNoCgroups is false.
func New(cfg Config) (*Backend, error) {
	return newDetected(cfg, detect)
}

// newDetected is New with the host probe injected, so tests can play a
// host without usable cgroups.
func newDetected(cfg Config, detect func(Config) (driver, error)) (*Backend, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	drv, err := detect(cfg)
	if err == nil {
		err = drv.prepare()
	}
	if err != nil {
		if !cfg.AllowNoCgroups {
			return nil, fmt.Errorf("sandbox/linux: %w (run as root with cgroups mounted read-write, or allow running without cgroups)", err)
		}
		cfg.Logger.Warn("sandbox/linux: running WITHOUT cgroups: no memory, CPU or pids limits and no reliable kill of detached processes", "err", err)
		drv = nil
	}
	return newBackend(cfg, drv)
}

func withDefaults(cfg Config) (Config, error) {
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "kiln"
	}
	p, err := cleanParent(cfg.CgroupParent)
	if err != nil {
		return cfg, fmt.Errorf("sandbox/linux: %w", err)
	}
	cfg.CgroupParent = p
	if cfg.Egress && !cfg.Isolation {
		return cfg, errors.New("sandbox/linux: Egress needs Isolation")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// detect picks the cgroup driver for this host. Hybrid hosts (v1
// controllers plus an empty cgroup2 at /sys/fs/cgroup/unified) use v1 unless
// the controllers live on the unified side.
func detect(cfg Config) (driver, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return newV2Driver("/sys/fs/cgroup", cfg.CgroupParent, true), nil
	case cgroups.Legacy, cgroups.Hybrid:
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
		}
		defer f.Close()
		entries, err := parseMountinfo(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
		}
		mounts := v1Mounts(entries)
		if _, ok := mounts["memory"]; !ok {
			for _, e := range entries {
				if e.FSType == "cgroup2" {
					if b, err := readFile(e.Mountpoint + "/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(b)), "memory") {
						return newV2Driver(e.Mountpoint, cfg.CgroupParent, true), nil
					}
				}
			}
		}
		return newV1Driver(mounts, cfg.CgroupParent, true)
	default:
		return nil, fmt.Errorf("%w: no cgroup filesystem at /sys/fs/cgroup", ErrCgroupsUnavailable)
	}
}

// newBackend builds a backend on a prepared driver (nil: no cgroups). Tests
// use it to run the backend on a chosen hierarchy.
func newBackend(cfg Config, drv driver) (*Backend, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox/linux: %w", err)
	}
	var is *iso
	if cfg.Isolation {
		if is, err = newIso(cfg); err != nil {
			_ = devnull.Close()
			return nil, fmt.Errorf("sandbox/linux: %w", err)
		}
	}
	b := &Backend{
		iso:     is,
		cfg:     cfg,
		log:     cfg.Logger.With("backend", Name),
		drv:     drv,
		pidfd:   pidfdWorks(),
		devnull: devnull,
		sp:      newSpawner(min(runtime.GOMAXPROCS(0), 4)),
		live:    make(map[string]*box),
	}
	attrs := []any{"cgroup_parent", cfg.CgroupParent, "pidfd", b.pidfd}
	if drv != nil {
		attrs = append(attrs, "cgroup_version", drv.version())
	}
	if is != nil {
		b.removePoolLeftovers()
		if cap(is.pool) > 0 {
			is.poolWG.Add(1)
			go b.fillPool()
		}
	}
	b.log.Debug("sandbox backend ready", attrs...)
	return b, nil
}

// pidfdWorks reports whether CLONE_PIDFD and pidfd polling are available
// (kernel ≥ 5.3), checked as Go's os package does.
func pidfdWorks() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	_ = unix.Close(fd)
	return true
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements sandbox.CapabilityReporter.
func (b *Backend) Capabilities() sandbox.Capabilities {
	if b.drv == nil {
		return sandbox.Capabilities{}
	}
	return b.drv.caps()
}

// CgroupVersion is 1 or 2, or 0 when running without cgroups.
func (b *Backend) CgroupVersion() int {
	if b.drv == nil {
		return 0
	}
	return b.drv.version()
}

// Create implements sandbox.Backend: it makes TmpDir and the cgroup with
// its limits (about ten file operations on v1, six on v2).
func (b *Backend) Create(ctx context.Context, spec sandbox.Spec) (_ sandbox.Sandbox, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec.Argv = slices.Clone(spec.Argv)
	spec.Env = slices.Clone(spec.Env)

	b.mu.Lock()
	switch _, taken := b.live[spec.ID]; {
	case b.closed:
		b.mu.Unlock()
		return nil, sandbox.ErrClosed
	case taken:
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", sandbox.ErrExists, spec.ID)
	}
	b.live[spec.ID] = nil
	b.mu.Unlock()

	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	undo = append(undo, func() { b.forget(spec.ID) })

	if spec.TmpDir != "" {
		if err := os.Mkdir(spec.TmpDir, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("%w: tmp dir %s exists", sandbox.ErrExists, spec.TmpDir)
			}
			return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
		}
		undo = append(undo, func() { _ = os.RemoveAll(spec.TmpDir) })
	}
	x := &box{b: b, spec: spec, done: make(chan struct{}), log: b.log.With("sandbox", spec.ID)}
	x.phases.begin()
	if b.drv != nil && !b.poolGroups() {
		g, err := b.drv.create(spec.ID, limitsFor(&spec, b.cfg.NoCPUQuota))
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
		}
		x.grp = g
		undo = append(undo, func() { dropGroup(g) })
		x.phases.step(PhaseCgroup)
	}

	if b.iso != nil {
		p, err := b.takeInit(ctx)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
		}
		x.phases.step(PhasePool)
		x.init, x.iso = p, p.iso
		x.beginStarting()
		undo = append(undo, func() { b.discard(p); x.settle() })
		if p.grp != nil {
			g := p.grp
			if err := claimGroup(g, spec.ID, limitsFor(&spec, b.cfg.NoCPUQuota)); err != nil {
				return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
			}
			x.grp, p.grp, p.placed = g, nil, true
			undo = append(undo, func() { dropGroup(g) })
			x.phases.step(PhaseCgroup)
		}
		if spec.TmpDir != "" {
			if err := os.Chown(spec.TmpDir, x.HostUID(), x.HostUID()); err != nil {
				return nil, fmt.Errorf("sandbox %s: %w", spec.ID, err)
			}
		}
	}

	b.mu.Lock()
	b.live[spec.ID] = x
	b.mu.Unlock()
	return x, nil
}

func (b *Backend) forget(id string) {
	b.mu.Lock()
	delete(b.live, id)
	b.mu.Unlock()
}

// Close implements sandbox.Backend. Sandboxes still running when it is
// called are killed: their main processes get the parent-death signal as
// the spawner threads exit, and the rest of each sandbox follows. Their
// cgroups and TmpDirs stay until Cleanup (Delete them first instead). The
// cgroup parent is removed if New made it and it is empty.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if b.iso != nil {
		b.closePool()
	}
	b.sp.close()
	if b.iso != nil {
		b.iso.close()
	}
	if b.drv != nil {
		if err := b.drv.removeParent(); err != nil {
			b.log.Warn("cannot remove cgroup parent", "err", err)
		}
	}
	return b.devnull.Close()
}

// Cleanup removes what a previous, crashed Kiln left under CgroupParent:
// it kills every process in each leftover group and removes the group.
// Sandboxes of this backend are left alone. The server calls it at start;
// TmpDirs belong to the caller, who knows where it put them.
func (b *Backend) Cleanup(ctx context.Context) error {
	if b.drv == nil {
		return nil
	}
	names, err := b.drv.list()
	if err != nil {
		return fmt.Errorf("sandbox/linux: cleanup: %w", err)
	}
	var errs []error
	for _, id := range names {
		b.mu.Lock()
		_, mine := b.live[id]
		b.mu.Unlock()
		if mine {
			continue
		}
		g := b.drv.load(id)
		if err := g.destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sandbox/linux: cleanup %s: %w", id, err))
			continue
		}
		b.log.Info("removed leftover sandbox", "sandbox", id)
	}
	return errors.Join(errs...)
}
