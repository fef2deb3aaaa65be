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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// v1Wanted are the v1 controllers a sandbox uses. The required ones make the
// backend's promises (memory limit and OOM report, pids limit, a race-free
// kill through the freezer); without cpu/cpuacct it runs with no CPU limit
// or CPU usage.
var v1Wanted = []struct {
	name     string
	required bool
}{
	{"memory", true},
	{"pids", true},
	{"freezer", true},
	{"cpu", false},
	{"cpuacct", false},
}

// v1Hier is one mounted hierarchy the driver uses; several controllers may
// share it (cpu,cpuacct).
type v1Hier struct {
	mount v1Mount
	ctrl  string // a controller of this hierarchy, to find it in /proc/PID/cgroup
}

// v1Driver makes groups in each v1 hierarchy: <mountpoint>/<parent>/<id>.
type v1Driver struct {
	parent string
	hiers  []v1Hier
	idx    map[string]int // controller → index into hiers
	// threadCgroup is /proc/thread-self/cgroup: where the spawner thread
	// returns after forking.
	threadCgroup string

	// Probed by prepare.
	hasMemsw   bool     // memory.memsw.* (swap accounting on): swap cannot extend the limit
	hasOOMKill bool     // memory.oom_control has "oom_kill" (kernel ≥ 4.13)
	created    []string // per hierarchy: what prepare made of the parent path
}

func newV1Driver(mounts map[string]v1Mount, parent string, requireAll bool) (*v1Driver, error) {
	d := &v1Driver{parent: parent, idx: make(map[string]int), threadCgroup: "/proc/thread-self/cgroup"}
	byMount := make(map[string]int)
	var missing []string
	for _, w := range v1Wanted {
		m, ok := mounts[w.name]
		if !ok {
			if w.required && requireAll {
				missing = append(missing, w.name)
			}
			continue
		}
		i, seen := byMount[m.Mountpoint]
		if !seen {
			i = len(d.hiers)
			byMount[m.Mountpoint] = i
			d.hiers = append(d.hiers, v1Hier{mount: m, ctrl: w.name})
		}
		d.idx[w.name] = i
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: cgroup v1 controllers not mounted: %s", ErrCgroupsUnavailable, strings.Join(missing, ", "))
	}
	if len(d.hiers) == 0 {
		return nil, fmt.Errorf("%w: no cgroup v1 controller mounted", ErrCgroupsUnavailable)
	}
	return d, nil
}

func (d *v1Driver) version() int { return 1 }

func (d *v1Driver) has(ctrl string) bool { _, ok := d.idx[ctrl]; return ok }

func (d *v1Driver) caps() sandbox.Capabilities {
	return sandbox.Capabilities{
		MemoryLimit:  d.has("memory"),
		PidsLimit:    d.has("pids"),
		CPULimit:     d.has("cpu"),
		UsageStats:   d.has("memory") && d.has("cpuacct"),
		KillDetached: true,
	}
}

func (d *v1Driver) parentDir(h v1Hier) string {
	return filepath.Join(h.mount.Mountpoint, d.parent)
}

func (d *v1Driver) prepare() error {
	d.created = make([]string, len(d.hiers))
	for i, h := range d.hiers {
		created, err := mkdirAll(h.mount.Mountpoint, d.parent)
		d.created[i] = created
		if err != nil {
			_ = d.removeParent()
			return fmt.Errorf("%w: %w", ErrCgroupsUnavailable, err)
		}
	}
	if i, ok := d.idx["memory"]; ok {
		p := d.parentDir(d.hiers[i])
		d.hasMemsw = exists(filepath.Join(p, "memory.memsw.limit_in_bytes"))
		_, d.hasOOMKill, _ = readKey(filepath.Join(p, "memory.oom_control"), "oom_kill")
	}
	return nil
}

func (d *v1Driver) removeParent() error {
	var errs []error
	for i, h := range d.hiers {
		if i < len(d.created) {
			errs = append(errs, rmdirUpTo(h.mount.Mountpoint, d.parent, d.created[i]))
		}
	}
	return errors.Join(errs...)
}

func (d *v1Driver) parentDirs() []string {
	var dirs []string
	for _, h := range d.hiers {
		dirs = append(dirs, d.parentDir(h))
	}
	return dirs
}

func (d *v1Driver) list() ([]string, error) {
	seen := make(map[string]bool)
	var out []string
	for _, h := range d.hiers {
		names, err := listGroups(d.parentDir(h))
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

func (d *v1Driver) load(id string) group {
	g := &v1Group{d: d, dirs: make([]string, len(d.hiers))}
	for i, h := range d.hiers {
		g.dirs[i] = filepath.Join(d.parentDir(h), id)
	}
	return g
}

func (d *v1Driver) create(id string, l limits) (group, error) {
	g := d.load(id).(*v1Group)
	for i, dir := range g.dirs {
		if err := mkdirGroup(dir); err != nil {
			for _, made := range g.dirs[:i] {
				_ = rmdirGroup(made)
			}
			return nil, err
		}
	}
	if err := g.setLimits(l); err != nil {
		g.rmdirAll()
		return nil, err
	}
	return g, nil
}

// v1Group is one sandbox's directories, one per hierarchy.
type v1Group struct {
	d    *v1Driver
	dirs []string

	peakMu sync.Mutex
	peakFd int // memory.max_usage_in_bytes, opened on first use; 0 = not open

	// pids.max as setLimits last wrote it (if pidsSet), so a pooled group's
	// claim skips the write when the pool's value is the sandbox's (each
	// cgroup write is ~10 µs on the cold-start path). Used by Create and
	// the claim only, never concurrently.
	pidsMax int64
	pidsSet bool
}

func (g *v1Group) dir(ctrl string) string {
	i, ok := g.d.idx[ctrl]
	if !ok {
		return ""
	}
	return g.dirs[i]
}

func (g *v1Group) enter(pid int) error {
	for _, dir := range g.dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("enter sandbox cgroup: %w", err)
		}
	}
	return nil
}

func (g *v1Group) file(ctrl, name string) string {
	dir := g.dir(ctrl)
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}

func (g *v1Group) paths() []string { return append([]string(nil), g.dirs...) }

func (g *v1Group) setLimits(l limits) error {
	type w struct{ file, value string }
	var ws []w
	if mem := g.dir("memory"); mem != "" && l.memoryBytes > 0 {
		v := itoa(l.memoryBytes)
		// memsw must be set after the memory limit: the kernel keeps memsw ≥ memory.
		ws = append(ws, w{filepath.Join(mem, "memory.limit_in_bytes"), v})
		if g.d.hasMemsw {
			ws = append(ws, w{filepath.Join(mem, "memory.memsw.limit_in_bytes"), v})
		} else {
			// Without swap accounting the best available is not to swap.
			ws = append(ws, w{filepath.Join(mem, "memory.swappiness"), "0"})
		}
	}
	if p := g.dir("pids"); p != "" && !(g.pidsSet && l.pidsMax == g.pidsMax) {
		ws = append(ws, w{filepath.Join(p, "pids.max"), itoa(l.pidsMax)})
	}
	if cpu := g.dir("cpu"); cpu != "" && l.cpuMB > 0 {
		ws = append(ws, w{filepath.Join(cpu, "cpu.shares"), strconv.FormatUint(cpuSharesV1(l.cpuMB), 10)})
		if l.cpuQuota {
			// cpu.cfs_period_us of a new group is the default 100 ms.
			ws = append(ws, w{filepath.Join(cpu, "cpu.cfs_quota_us"), itoa(cpuQuotaUs(l.cpuMB))})
		}
	}
	for _, x := range ws {
		if err := writeFile(x.file, x.value); err != nil {
			g.pidsSet = false // unknown now
			return fmt.Errorf("set cgroup limit: %w", err)
		}
	}
	if g.dir("pids") != "" {
		g.pidsMax, g.pidsSet = l.pidsMax, true
	}
	return nil
}

// threadHomes returns, per hierarchy, the tasks file of the cgroup the
// calling thread is in now.
func (g *v1Group) threadHomes() ([]string, error) {
	b, err := readFile(g.d.threadCgroup)
	if err != nil {
		return nil, err
	}
	cur, err := parseProcCgroup(b)
	if err != nil {
		return nil, err
	}
	homes := make([]string, len(g.d.hiers))
	for i, h := range g.d.hiers {
		p, ok := cur[h.ctrl]
		if !ok {
			return nil, fmt.Errorf("thread is in no %s cgroup", h.ctrl)
		}
		if h.mount.Root != "/" {
			// A bind-mounted subtree: /proc shows full paths.
			p = strings.TrimPrefix(p, h.mount.Root)
		}
		homes[i] = filepath.Join(h.mount.Mountpoint, p, "tasks")
	}
	return homes, nil
}

// spawn closes v1's fork window without a helper process: v1 places
// threads, not just processes, so the spawner thread moves itself into the
// sandbox's groups, forks (the child inherits the thread's groups, so it
// can never run outside them) and moves back. The cost is one extra write
// per hierarchy (~20 µs each) compared with writing the child's pid after
// the fork, during which the child could already have forked unlimited
// grandchildren. While inside, the thread counts against pids.max (so a
// PidsMax of 1 cannot start on v1) and what the Go runtime allocates on it
// (argv and env, a few KiB) is charged to the sandbox's memory.
func (g *v1Group) spawn(fork forkFunc, sys *syscall.SysProcAttr) (int, bool, error) {
	homes, err := g.threadHomes()
	if err != nil {
		return 0, false, fmt.Errorf("find spawner cgroups: %w", err)
	}
	tid := strconv.Itoa(unix.Gettid())
	entered := 0
	leave := func() (tainted bool, err error) {
		for i := 0; i < entered; i++ {
			if e := writeFile(homes[i], tid); e != nil {
				tainted, err = true, e
			}
		}
		return tainted, err
	}
	for _, dir := range g.dirs {
		if err := writeFile(filepath.Join(dir, "tasks"), tid); err != nil {
			tainted, _ := leave()
			return 0, tainted, fmt.Errorf("enter sandbox cgroup: %w", err)
		}
		entered++
	}
	pid, ferr := fork(sys)
	tainted, lerr := leave()
	if ferr != nil {
		return 0, tainted, ferr
	}
	if lerr != nil {
		return pid, tainted, fmt.Errorf("leave sandbox cgroup: %w", lerr)
	}
	return pid, false, nil
}

// procsFile is the cgroup.procs the kill reads: the freezer's when there is
// one, since that is the hierarchy the kill freezes.
func (g *v1Group) procsFile() string {
	if f := g.file("freezer", "cgroup.procs"); f != "" {
		return f
	}
	return filepath.Join(g.dirs[0], "cgroup.procs")
}

// killAll freezes the group so nothing can fork or exit (no pid in the list
// can be reused under us), SIGKILLs every listed process, thaws so the
// signals are delivered, and repeats until the group is empty. Without a
// freezer the freeze steps are skipped and the loop alone converges.
func (g *v1Group) killAll(ctx context.Context) error {
	procs := g.procsFile()
	state := g.file("freezer", "freezer.state")
	for {
		b, err := readFile(procs)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(parsePids(b)) == 0 {
			return nil
		}
		if state != "" {
			if err := g.freeze(ctx, state); err != nil {
				_ = writeFile(state, "THAWED")
				return err
			}
			if b, err = readFile(procs); err != nil {
				_ = writeFile(state, "THAWED")
				return err
			}
		}
		killPids(parsePids(b))
		if state != "" {
			if err := writeFile(state, "THAWED"); err != nil {
				return err
			}
		}
		// Killed tasks leave the list as they finish exiting; go round
		// again only if some outlive a generous wait.
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

// freeze asks for FROZEN and waits for it, but not forever: a task stuck in
// the kernel can keep a group FREEZING, and killing what is listed is still
// better than waiting.
func (g *v1Group) freeze(ctx context.Context, state string) error {
	if err := writeFile(state, "FROZEN"); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := poll(fctx, func() (bool, error) {
		b, err := readFile(state)
		return strings.TrimSpace(string(b)) == "FROZEN", err
	})
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func (g *v1Group) stats() (sandbox.Stats, error) {
	var s sandbox.Stats
	var err error
	if mem := g.dir("memory"); mem != "" {
		if s.MaxMemoryBytes, err = readUint(filepath.Join(mem, "memory.max_usage_in_bytes")); err != nil {
			return s, err
		}
		if s.MemoryBytes, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
			return s, err
		}
		if g.d.hasOOMKill {
			s.OOMKills, _, err = readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill")
			if err != nil {
				return s, err
			}
		}
	}
	if f := g.file("cpuacct", "cpuacct.usage"); f != "" {
		if s.CPUUsageNanos, err = readUint(f); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (g *v1Group) resetPeak() error {
	if f := g.file("memory", "memory.max_usage_in_bytes"); f != "" {
		return writeFile(f, "0")
	}
	return nil
}

func (g *v1Group) oomKilled(sigkilled bool) bool {
	mem := g.dir("memory")
	if mem == "" {
		return false
	}
	if g.d.hasOOMKill {
		n, _, err := readKey(filepath.Join(mem, "memory.oom_control"), "oom_kill")
		return err == nil && n > 0
	}
	// Kernels before 4.13 count no kills: a SIGKILL after the limit was hit
	// is the best evidence.
	n, err := readUint(filepath.Join(mem, "memory.failcnt"))
	return sigkilled && err == nil && n > 0
}

func (g *v1Group) destroy(ctx context.Context) error {
	return poll(ctx, func() (bool, error) {
		if err := g.killAll(ctx); err != nil {
			return false, err
		}
		var busy bool
		for _, dir := range g.dirs {
			if err := rmdirGroup(dir); err != nil {
				if errors.Is(err, unix.EBUSY) {
					busy = true
					continue
				}
				return false, err
			}
		}
		return !busy, nil
	})
}

func (g *v1Group) rmdirAll() {
	for _, dir := range g.dirs {
		_ = rmdirGroup(dir)
	}
}

func (g *v1Group) close() {
	g.peakMu.Lock()
	if g.peakFd > 0 {
		_ = unix.Close(g.peakFd)
		g.peakFd = 0
	}
	g.peakMu.Unlock()
}

// peakMemory preads memory.max_usage_in_bytes through a descriptor kept
// open for the group's life: one syscall per invoke instead of three.
func (g *v1Group) peakMemory() (uint64, error) {
	mem := g.dir("memory")
	if mem == "" {
		return 0, nil
	}
	g.peakMu.Lock()
	defer g.peakMu.Unlock()
	if g.peakFd == 0 {
		fd, err := unix.Open(filepath.Join(mem, "memory.max_usage_in_bytes"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("open memory peak: %w", err)
		}
		g.peakFd = fd
	}
	var buf [32]byte
	n, err := unix.Pread(g.peakFd, buf[:], 0)
	if err != nil {
		return 0, fmt.Errorf("read memory peak: %w", err)
	}
	v, ok := parseUint(buf[:n])
	if !ok {
		return 0, fmt.Errorf("read memory peak: not a number: %q", buf[:n])
	}
	return v, nil
}

func (g *v1Group) setCPUCap(mb int) error {
	if f := g.file("cpu", "cpu.cfs_quota_us"); f != "" && mb > 0 {
		return writeFile(f, itoa(cpuQuotaUs(mb)))
	}
	return nil
}
