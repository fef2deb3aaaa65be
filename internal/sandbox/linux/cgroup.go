//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Why plain file writes instead of containerd/cgroups' cgroup1 and cgroup2
// managers (this package still uses the module's cgroups.Mode() to detect
// the host's mode):
//   - cold start: cgroup1.New makes a group in every mounted hierarchy
//     (cpuset, devices, blkio, hugetlb, net_cls, perf_event, rdma...) and
//     copies cpuset.cpus/mems into each; a sandbox needs five controllers,
//     and a create here is ~10 file operations.
//   - what Kiln needs is outside their API: a cgroup directory fd for
//     CLONE_INTO_CGROUP, moving the forking thread on v1 (tasks, not procs),
//     cgroup.kill, and memory.peak's per-fd reset, which must read back
//     through the same fd.
//   - the managers would pull runtime-spec, dbus, cilium/ebpf and protobuf
//     into the binary for a few dozen writes.
// The file layout is the kernel's stable ABI (Documentation/admin-guide/
// cgroup-v1, cgroup-v2.rst), so the drivers stay small and are tested
// against a temp dir standing in for cgroupfs.

// CPU mapping. Lambda gives 1 vCPU at 1,769 MB, proportionally less or more
// elsewhere. Kiln sets both:
//   - a weight (v1 cpu.shares, v2 cpu.weight) proportional to memory, so
//     under contention sandboxes split the CPU as Lambda would, and
//   - unless Config.NoCPUQuota, a hard CFS cap of MemoryMB/1769 CPUs per
//     100 ms period (so 3,538 MB can use 2 cores and no more), but never
//     below 0.1 CPU: at 128 MB Lambda's exact 0.072 CPU makes runtimes'
//     own start-up (python, node) take seconds on a busy host.
const (
	mbPerVCPU   = 1769
	cfsPeriodUs = 100000
	minQuotaUs  = cfsPeriodUs / 10
)

// cpuSharesV1 maps memory MB to cpu.shares (1024 = one CPU's worth).
func cpuSharesV1(mb int) uint64 {
	return uint64(clamp(int64(mb)*1024/mbPerVCPU, 2, 262144))
}

// cpuWeightV2 maps memory MB to cpu.weight (100 = one CPU's worth).
func cpuWeightV2(mb int) uint64 {
	return uint64(clamp((int64(mb)*100+mbPerVCPU/2)/mbPerVCPU, 1, 10000))
}

// cpuQuotaUs is the CFS quota per cfsPeriodUs for memory MB.
func cpuQuotaUs(mb int) int64 {
	return max(int64(mb)*cfsPeriodUs/mbPerVCPU, minQuotaUs)
}

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// limits is what a sandbox's cgroup enforces.
type limits struct {
	memoryBytes int64 // 0: none
	cpuMB       int   // 0: no CPU weight or cap
	cpuQuota    bool  // apply the hard cap too
	pidsMax     int64
}

func limitsFor(spec *sandbox.Spec, noQuota bool) limits {
	l := limits{memoryBytes: spec.MemoryBytes, cpuMB: spec.CPUWeightMB, cpuQuota: !noQuota && !spec.InitCPUBoost, pidsMax: spec.PidsMax}
	if l.pidsMax == 0 {
		l.pidsMax = sandbox.DefaultPidsMax
	}
	return l
}

// driver is one cgroup version's way of making sandbox groups under the
// configured parent.
type driver interface {
	// version is 1 or 2.
	version() int
	// caps reports what the mounted controllers can enforce.
	caps() sandbox.Capabilities
	// prepare makes the parent and probes optional files; New calls it once.
	prepare() error
	// create makes the group for a sandbox and writes its limits. An
	// existing group is reported as sandbox.ErrExists.
	create(id string, l limits) (group, error)
	// load returns a handle on an existing group (for Cleanup).
	load(id string) group
	// list names the groups under the parent.
	list() ([]string, error)
	// removeParent removes the parent if prepare made it and it is empty.
	removeParent() error
	// parentDirs are the parent's directories (one per v1 hierarchy).
	parentDirs() []string
}

// forkFunc forks and execs the sandbox's main process with sys.
type forkFunc func(sys *syscall.SysProcAttr) (int, error)

// group is one sandbox's cgroup (one directory per v1 hierarchy).
type group interface {
	// paths are the group's directories.
	paths() []string
	// spawn calls fork so that the child is inside the group before it runs
	// a single instruction of its own. It runs on a locked spawner thread.
	// tainted reports that this thread could not be moved back out of the
	// group and must exit. A pid > 0 returned with an error is a child that
	// must be killed and reaped.
	spawn(fork forkFunc, sys *syscall.SysProcAttr) (pid int, tainted bool, err error)
	// enter moves a running process (all its threads) into the group. The
	// isolated backend's inits are started ahead of need and enter their
	// sandbox's group before they start anything of the function's.
	enter(pid int) error
	// killAll SIGKILLs every process in the group, including ones forked
	// while it runs, and returns once the group is empty.
	killAll(ctx context.Context) error
	// stats reads usage counters.
	stats() (sandbox.Stats, error)
	// resetPeak restarts the memory peak where the kernel can.
	resetPeak() error
	// peakMemory reads only the memory peak, with as few syscalls as the
	// kernel allows (it is on the invoke path).
	peakMemory() (uint64, error)
	// setCPUCap applies the hard CPU cap for mb of memory.
	setCPUCap(mb int) error
	// oomKilled reports whether the OOM killer struck; sigkilled says the
	// main process died of SIGKILL (used where the kernel has no counter).
	oomKilled(sigkilled bool) bool
	// destroy removes the directories (killing stragglers first).
	destroy(ctx context.Context) error
	// close releases held descriptors.
	close()
}

// cleanParent checks and normalises Config.CgroupParent: a relative path of
// one or more [a-zA-Z0-9_.-] names.
func cleanParent(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", errors.New("empty cgroup parent")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("cgroup parent %q: bad path segment %q", p, seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
				return "", fmt.Errorf("cgroup parent %q: bad character %q", p, c)
			}
		}
	}
	return p, nil
}

// writeFile writes a cgroup control file with the fewest syscalls (open,
// write, close): this is on the cold-start path. O_CREAT makes the same code
// work against a plain directory in tests; cgroupfs ignores it for existing
// files.
func writeFile(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	_, err = unix.Write(fd, []byte(value))
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// readFile reads a small control or proc file without the poller
// registration os.ReadFile attempts.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

func readUint(path string) (uint64, error) {
	b, err := readFile(path)
	if err != nil {
		return 0, err
	}
	v, ok := parseUint(b)
	if !ok {
		return 0, fmt.Errorf("%s: not a number: %q", path, b)
	}
	return v, nil
}

func readKey(path, key string) (uint64, bool, error) {
	b, err := readFile(path)
	if err != nil {
		return 0, false, err
	}
	v, ok := kvLookup(b, key)
	return v, ok, nil
}

func exists(path string) bool {
	return unix.Access(path, unix.F_OK) == nil
}

// mkdirGroup makes one cgroup directory; an existing one is ErrExists.
func mkdirGroup(dir string) error {
	err := unix.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		return nil
	case err == unix.EEXIST:
		return fmt.Errorf("%w: cgroup %s exists (a leftover? run Cleanup)", sandbox.ErrExists, dir)
	default:
		return &fs.PathError{Op: "mkdir", Path: dir, Err: err}
	}
}

// rmdirGroup removes one cgroup directory; a missing one is fine. EBUSY
// (processes still exiting) is returned for the caller to retry.
func rmdirGroup(dir string) error {
	err := unix.Rmdir(dir)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
}

// listGroups names the sandbox-like child directories of dir.
func listGroups(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && sandbox.ValidateID(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// mkdirAll makes root/rel and its missing parents. created is the topmost
// directory (relative to root) it made, "" if root/rel existed: only that
// much is ours to remove again.
func mkdirAll(root, rel string) (created string, err error) {
	dir, sofar := root, ""
	for _, seg := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, seg)
		sofar = filepath.Join(sofar, seg)
		err := unix.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			if created == "" {
				created = sofar
			}
		case err != unix.EEXIST:
			return created, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
		}
	}
	return created, nil
}

// rmdirUpTo removes root/rel and its parents up to root/top, which
// mkdirAll made; it stops quietly at a directory still in use.
func rmdirUpTo(root, rel, top string) error {
	if top == "" {
		return nil
	}
	for r := rel; ; r = filepath.Dir(r) {
		if err := rmdirGroup(filepath.Join(root, r)); err != nil {
			if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOTEMPTY) {
				return nil
			}
			return err
		}
		if r == top || r == "." || r == "/" {
			return nil
		}
	}
}

// poll calls f with a short, growing backoff until it reports done, fails or
// ctx ends. Kernel state changes it waits for (a group emptying, a freeze
// completing) take microseconds to milliseconds.
func poll(ctx context.Context, f func() (bool, error)) error {
	wait := 50 * time.Microsecond
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 10*time.Millisecond)
	}
}

// killPids SIGKILLs each pid; ones already gone are fine.
func killPids(pids []int) {
	for _, p := range pids {
		_ = unix.Kill(p, unix.SIGKILL)
	}
}

// procsEmpty reports whether a cgroup.procs file lists no process.
func procsEmpty(path string) (bool, error) {
	b, err := readFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	return len(parsePids(b)) == 0, nil
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
