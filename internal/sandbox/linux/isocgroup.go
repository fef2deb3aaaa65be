//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Pre-made cgroups for pooled inits (cgroup v1).
//
// Moving a process between v1 cgroups takes the kernel's
// cgroup_threadgroup_rwsem for writing once per hierarchy, and each write
// waits for an RCU grace period: ~0.2 ms per sandbox when the host is quiet
// and several ms when it is not, on the cold-start path. So on v1 each
// pooled init gets a cgroup of its own, named after its uid slot, and is
// moved into it while it waits in the pool; a sandbox that claims the init
// renames the group to its ID (v1 allows renames within a parent; v2 does
// not, and keeps moving the init at Start) and writes its limits. The name
// is not a valid sandbox ID, so Cleanup never mistakes a pooled init's
// group for a leftover sandbox; newBackend removes leftovers of a crashed
// run.

// poolGroupPrefix starts the name of a pooled init's cgroup.
const poolGroupPrefix = "kiln.init-"

// renamableGroup is a group that can be made ahead and renamed when claimed.
type renamableGroup interface {
	group
	rename(id string) error
	setLimits(l limits) error
	defaultCPUWeight() error
	close()
}

// poolGroups reports whether pooled inits get cgroups of their own.
func (b *Backend) poolGroups() bool {
	_, ok := b.drv.(*v1Driver)
	return ok && b.iso != nil && !b.cfg.noPoolGroups
}

// poolLimits hold a pooled init: the smallest CPU weight, so that a refill
// yields to the cold starts it competes with (the claim writes the
// sandbox's own limits), and the usual pids limit.
var poolLimits = limits{pidsMax: sandbox.DefaultPidsMax, cpuMB: 1}

// makePoolGroup makes the cgroup of a pooled init, replacing a leftover of
// the same name.
func (b *Backend) makePoolGroup(ctx context.Context, seq int) (renamableGroup, error) {
	// The backend's tag keeps two backends that (against Config's advice)
	// share a parent from taking each other's names.
	name := poolGroupPrefix + b.iso.poolTag + "-" + strconv.Itoa(seq)
	g, err := b.drv.create(name, poolLimits)
	if errors.Is(err, sandbox.ErrExists) {
		if derr := b.drv.load(name).destroy(ctx); derr != nil {
			return nil, fmt.Errorf("remove leftover %s: %w", name, derr)
		}
		g, err = b.drv.create(name, poolLimits)
	}
	if err != nil {
		return nil, err
	}
	rg, ok := g.(renamableGroup)
	if !ok {
		_ = g.destroy(ctx)
		return nil, errors.New("cgroup cannot be renamed")
	}
	return rg, nil
}

// removePoolLeftovers removes pooled inits' cgroups a crashed run left:
// those with no process left (a pooled init dies with the Kiln that started
// it), so another live Kiln's pool is left alone.
func (b *Backend) removePoolLeftovers() {
	if !b.poolGroups() {
		return
	}
	seen := map[string]bool{}
	for _, d := range b.drv.parentDirs() {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), poolGroupPrefix) && !seen[e.Name()] {
				seen[e.Name()] = true
				if procs, err := os.ReadFile(filepath.Join(d, e.Name(), "cgroup.procs")); err != nil || len(strings.TrimSpace(string(procs))) > 0 {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := b.drv.load(e.Name()).destroy(ctx); err != nil {
					b.log.Warn("cannot remove a leftover init cgroup", "cgroup", e.Name(), "err", err)
				}
				cancel()
			}
		}
	}
}

// claimGroup turns a pooled init's group into the sandbox's: renamed to its
// ID, with its limits.
func claimGroup(g renamableGroup, id string, l limits) error {
	if err := g.rename(id); err != nil {
		return err
	}
	if l.cpuMB <= 0 {
		// No weight of its own: the kernel's default, not the pool's.
		if err := g.defaultCPUWeight(); err != nil {
			return err
		}
	}
	return g.setLimits(l)
}

// defaultCPUWeight restores cpu.shares to the kernel's default.
func (g *v1Group) defaultCPUWeight() error {
	if f := g.file("cpu", "cpu.shares"); f != "" {
		return writeFile(f, "1024")
	}
	return nil
}

// rename moves every hierarchy's directory to id, or none of them.
func (g *v1Group) rename(id string) error {
	next := make([]string, len(g.dirs))
	for i, dir := range g.dirs {
		next[i] = filepath.Join(filepath.Dir(dir), id)
		// cgroupfs takes no rename flags, but never replaces an existing
		// group either (EEXIST).
		if err := unix.Rename(dir, next[i]); err != nil {
			for j := range i {
				_ = os.Rename(next[j], g.dirs[j])
			}
			if err == unix.EEXIST || err == unix.ENOTEMPTY {
				return fmt.Errorf("%w: cgroup %s exists (a leftover? run Cleanup)", sandbox.ErrExists, next[i])
			}
			return fmt.Errorf("rename cgroup %s: %w", dir, err)
		}
	}
	g.dirs = next
	return nil
}

// dropGroup removes a group Create made when Create fails after it.
func dropGroup(g group) {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	_ = g.destroy(ctx)
	if c, ok := g.(interface{ close() }); ok {
		c.close()
	}
}
