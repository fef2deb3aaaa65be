//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// v2Wanted are the v2 controllers a sandbox uses; see v1Wanted. Killing and
// freezing are core v2 features and need no controller.
var v2Wanted = []struct {
	name     string
	required bool
}{
	{"memory", true},
	{"pids", true},
	{"cpu", false},
}

// v2Driver makes groups at <root>/<parent>/<id> of the unified hierarchy.
type v2Driver struct {
	root       string // the cgroup2 mountpoint
	parent     string
	requireAll bool

	// Set by prepare.
	enabled     map[string]bool // controllers enabled for sandbox groups
	hasKill     bool            // cgroup.kill (kernel ≥ 5.14)
	hasSwap     bool            // memory.swap.max
	hasPeak     bool            // memory.peak (kernel ≥ 5.19)
	hasOOMGroup bool            // memory.oom.group
	created     string          // what prepare made of the parent path
	// cloneInto is cleared the first time CLONE_INTO_CGROUP (kernel ≥ 5.7)
	// fails with ENOSYS; later spawns write the pid after the fork instead.
	cloneInto atomic.Bool
}

func newV2Driver(root, parent string, requireAll bool) *v2Driver {
	d := &v2Driver{root: root, parent: parent, requireAll: requireAll}
	d.cloneInto.Store(true)
	return d
}

func (d *v2Driver) version() int { return 2 }

func (d *v2Driver) caps() sandbox.Capabilities {
	return sandbox.Capabilities{
		MemoryLimit:  d.enabled["memory"],
		PidsLimit:    d.enabled["pids"],
		CPULimit:     d.enabled["cpu"],
		UsageStats:   d.enabled["memory"],
		KillDetached: true,
	}
}

func (d *v2Driver) parentDir() string { return filepath.Join(d.root, d.parent) }

func (d *v2Driver) prepare() error {
	b, err := readFile(filepath.Join(d.root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
	}
	avail := make(map[string]bool)
	for _, c := range strings.Fields(string(b)) {
		avail[c] = true
	}
	d.enabled = make(map[string]bool)
	var want, missing []string
	for _, w := range v2Wanted {
		switch {
		case avail[w.name]:
			d.enabled[w.name] = true
			want = append(want, w.name)
		case w.required && d.requireAll:
			missing = append(missing, w.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: cgroup v2 controllers not available in %s: %s", ErrCgroupsUnavailable, d.root, strings.Join(missing, ", "))
	}
	created, err := mkdirAll(d.root, d.parent)
	d.created = created
	if err != nil {
		_ = d.removeParent()
		return fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
	}
	// A controller reaches the sandbox groups only if every level from the
	// root down to the parent delegates it.
	level := d.root
	for _, seg := range append([]string{""}, strings.Split(d.parent, "/")...) {
		level = filepath.Join(level, seg)
		if err := enableControllers(level, want); err != nil {
			return fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
		}
	}
	p := d.parentDir()
	d.hasKill = exists(filepath.Join(p, "cgroup.kill"))
	d.hasSwap = exists(filepath.Join(p, "memory.swap.max"))
	d.hasPeak = exists(filepath.Join(p, "memory.peak"))
	d.hasOOMGroup = exists(filepath.Join(p, "memory.oom.group"))
	return nil
}

// enableControllers writes "+c" for each controller of want that dir does
// not yet delegate to its children.
func enableControllers(dir string, want []string) error {
	f := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := readFile(f)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	have := make(map[string]bool)
	for _, c := range strings.Fields(string(cur)) {
		have[c] = true
	}
	var add []string
	for _, c := range want {
		if !have[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(f, strings.Join(add, " ")); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w (cgroup %s holds processes, so it cannot delegate controllers: run kiln in a leaf cgroup, or set a CgroupParent outside its own)", err, dir)
		}
		return err
	}
	return nil
}

func (d *v2Driver) removeParent() error { return rmdirUpTo(d.root, d.parent, d.created) }

func (d *v2Driver) parentDirs() []string { return []string{d.parentDir()} }

func (d *v2Driver) list() ([]string, error) { return listGroups(d.parentDir()) }

func (d *v2Driver) load(id string) group {
	return &v2Group{d: d, dir: filepath.Join(d.parentDir(), id), fd: -1}
}

func (d *v2Driver) create(id string, l limits) (group, error) {
	g := d.load(id).(*v2Group)
	if err := mkdirGroup(g.dir); err != nil {
		return nil, err
	}
	if err := g.setLimits(l); err != nil {
		_ = rmdirGroup(g.dir)
		return nil, err
	}
	if d.cloneInto.Load() {
		// O_PATH is enough for CLONE_INTO_CGROUP and costs no open file
		// description of the directory's contents.
		fd, err := unix.Open(g.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = rmdirGroup(g.dir)
			return nil, fmt.Errorf("open cgroup %s: %w", g.dir, err)
		}
		g.fd = fd
	}
	return g, nil
}

// v2Group is one sandbox's cgroup directory.
type v2Group struct {
	d   *v2Driver
	dir string
	fd  int // O_PATH descriptor for CLONE_INTO_CGROUP, or -1

	peakMu sync.Mutex
	// peak is memory.peak held open after ResetPeak: since kernel 6.12 a
	// write resets the peak seen through that descriptor only.
	peak     int
	peakOpen bool
	noReset  bool // the kernel cannot reset; ResetPeak is a no-op
}

func (g *v2Group) paths() []string { return []string{g.dir} }

func (g *v2Group) file(name string) string { return filepath.Join(g.dir, name) }

func (g *v2Group) enter(pid int) error {
	if err := writeFile(g.file("cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("enter sandbox cgroup: %w", err)
	}
	return nil
}

func (g *v2Group) setLimits(l limits) error {
	type w struct{ file, value string }
	var ws []w
	if g.d.enabled["memory"] {
		if l.memoryBytes > 0 {
			ws = append(ws, w{"memory.max", itoa(l.memoryBytes)})
			if g.d.hasSwap {
				ws = append(ws, w{"memory.swap.max", "0"})
			}
		}
		if g.d.hasOOMGroup {
			// The sandbox dies as a whole on OOM, as Lambda resets the
			// environment: a half-killed runtime is worse than none.
			ws = append(ws, w{"memory.oom.group", "1"})
		}
	}
	if g.d.enabled["pids"] {
		ws = append(ws, w{"pids.max", itoa(l.pidsMax)})
	}
	if g.d.enabled["cpu"] && l.cpuMB > 0 {
		ws = append(ws, w{"cpu.weight", strconv.FormatUint(cpuWeightV2(l.cpuMB), 10)})
		if l.cpuQuota {
			ws = append(ws, w{"cpu.max", itoa(cpuQuotaUs(l.cpuMB)) + " " + itoa(cfsPeriodUs)})
		}
	}
	for _, x := range ws {
		if err := writeFile(g.file(x.file), x.value); err != nil {
			return fmt.Errorf("set cgroup limit: %w", err)
		}
	}
	return nil
}

// spawn forks straight into the group with CLONE_INTO_CGROUP. Kernels
// before 5.7 lack it; there the pid is written after the fork, leaving a
// short window in which the new process runs outside the group.
func (g *v2Group) spawn(fork forkFunc, sys *syscall.SysProcAttr) (int, bool, error) {
	if g.fd >= 0 && g.d.cloneInto.Load() {
		s := *sys
		s.UseCgroupFD = true
		s.CgroupFD = g.fd
		pid, err := fork(&s)
		if !errors.Is(err, syscall.ENOSYS) {
			return pid, false, err
		}
		g.d.cloneInto.Store(false)
	}
	pid, err := fork(sys)
	if err != nil {
		return 0, false, err
	}
	if err := writeFile(g.file("cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return pid, false, fmt.Errorf("enter sandbox cgroup: %w", err)
	}
	return pid, false, nil
}

// killAll uses cgroup.kill, which the kernel makes race-free against
// concurrent forks; before 5.14 it freezes, kills the listed processes and
// thaws, as on v1.
func (g *v2Group) killAll(ctx context.Context) error {
	procs := g.file("cgroup.procs")
	for {
		empty, err := procsEmpty(procs)
		if err != nil || empty {
			return err
		}
		if g.d.hasKill {
			if err := writeFile(g.file("cgroup.kill"), "1"); err != nil {
				return err
			}
		} else if err := g.freezeKillThaw(ctx); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		err = poll(wctx, func() (bool, error) { return procsEmpty(procs) })
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (g *v2Group) freezeKillThaw(ctx context.Context) error {
	freeze := g.file("cgroup.freeze")
	if err := writeFile(freeze, "1"); err != nil {
		return err
	}
	defer func() { _ = writeFile(freeze, "0") }()
	fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := poll(fctx, func() (bool, error) {
		v, _, err := readKey(g.file("cgroup.events"), "frozen")
		return v == 1, err
	})
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	b, err := readFile(g.file("cgroup.procs"))
	if err != nil {
		return err
	}
	killPids(parsePids(b))
	return nil
}

func (g *v2Group) stats() (sandbox.Stats, error) {
	var s sandbox.Stats
	var err error
	if g.d.enabled["memory"] {
		if s.MemoryBytes, err = readUint(g.file("memory.current")); err != nil {
			return s, err
		}
		if s.MaxMemoryBytes, err = g.readPeak(); err != nil {
			return s, err
		}
		if s.MaxMemoryBytes < s.MemoryBytes {
			s.MaxMemoryBytes = s.MemoryBytes
		}
		if s.OOMKills, _, err = readKey(g.file("memory.events"), "oom_kill"); err != nil {
			return s, err
		}
	}
	usec, ok, err := readKey(g.file("cpu.stat"), "usage_usec")
	if err != nil {
		return s, err
	}
	if ok {
		s.CPUUsageNanos = usec * 1000
	}
	return s, nil
}

// readPeak reads memory.peak (through the reset descriptor if there is
// one), or memory.current on kernels without a peak.
func (g *v2Group) readPeak() (uint64, error) {
	if !g.d.hasPeak {
		return readUint(g.file("memory.current"))
	}
	g.peakMu.Lock()
	defer g.peakMu.Unlock()
	if !g.peakOpen {
		return readUint(g.file("memory.peak"))
	}
	var buf [32]byte
	n, err := unix.Pread(g.peak, buf[:], 0)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", g.file("memory.peak"), err)
	}
	v, ok := parseUint(buf[:n])
	if !ok {
		return 0, fmt.Errorf("read %s: not a number: %q", g.file("memory.peak"), buf[:n])
	}
	return v, nil
}

func (g *v2Group) resetPeak() error {
	if !g.d.hasPeak || !g.d.enabled["memory"] {
		return nil
	}
	g.peakMu.Lock()
	defer g.peakMu.Unlock()
	if g.noReset {
		return nil
	}
	if !g.peakOpen {
		fd, err := unix.Open(g.file("memory.peak"), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			g.noReset = true
			return nil
		}
		g.peak, g.peakOpen = fd, true
	}
	if _, err := unix.Write(g.peak, []byte("reset\n")); err != nil {
		// Before 6.12 memory.peak is read-only.
		_ = unix.Close(g.peak)
		g.peakOpen, g.noReset = false, true
	}
	return nil
}

func (g *v2Group) oomKilled(bool) bool {
	if !g.d.enabled["memory"] {
		return false
	}
	b, err := readFile(g.file("memory.events"))
	if err != nil {
		return false
	}
	k, _ := kvLookup(b, "oom_kill")
	gk, _ := kvLookup(b, "oom_group_kill")
	return k > 0 || gk > 0
}

func (g *v2Group) destroy(ctx context.Context) error {
	return poll(ctx, func() (bool, error) {
		if err := g.killAll(ctx); err != nil {
			return false, err
		}
		err := rmdirGroup(g.dir)
		if errors.Is(err, unix.EBUSY) {
			return false, nil
		}
		return err == nil, err
	})
}

func (g *v2Group) peakMemory() (uint64, error) {
	if !g.d.enabled["memory"] {
		return 0, nil
	}
	return g.readPeak()
}

func (g *v2Group) setCPUCap(mb int) error {
	if !g.d.enabled["cpu"] || mb <= 0 {
		return nil
	}
	return writeFile(g.file("cpu.max"), itoa(cpuQuotaUs(mb))+" "+itoa(cfsPeriodUs))
}

func (g *v2Group) close() {
	if g.fd >= 0 {
		_ = unix.Close(g.fd)
		g.fd = -1
	}
	g.peakMu.Lock()
	if g.peakOpen {
		_ = unix.Close(g.peak)
		g.peakOpen = false
	}
	g.peakMu.Unlock()
}
