//go:build linux

package linux

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Tests on the real host's cgroups; they need root.

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// unifiedHybridBackend is the v2 driver on a hybrid host's controller-less
// cgroup2 hierarchy, or nil.
func unifiedHybridBackend(t testing.TB) *Backend {
	t.Helper()
	const root = "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	parent := testParent()
	d := newV2Driver(root, parent, false)
	if err := d.prepare(); err != nil {
		t.Fatal(err)
	}
	b, err := newBackend(Config{CgroupParent: parent, Logger: testLogger(t)}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndRemove(t, b) })
	return b
}

type runResult struct {
	box    sandbox.Sandbox
	status sandbox.ExitStatus
	out    string
}

func runIn(t *testing.T, b *Backend, spec sandbox.Spec) runResult {
	t.Helper()
	if spec.ID == "" {
		spec.ID = "t" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	var out bytes.Buffer
	if spec.Stdout == nil {
		spec.Stdout = &out
	}
	s, err := b.Create(ctxFor(t, 10*time.Second), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Delete(ctxFor(t, 10*time.Second)) })
	if err := s.Start(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Wait(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return runResult{s, st, out.String()}
}

// TestChildBornInCgroup: the main process is in every one of the sandbox's
// groups, and the spawner threads that forked it are back where they were.
func TestChildBornInCgroup(t *testing.T) {
	backends := map[string]*Backend{"host": newHostBackend(t, Config{})}
	if u := unifiedHybridBackend(t); u != nil {
		backends["unified-hybrid"] = u
	}
	for name, b := range backends {
		t.Run(name, func(t *testing.T) {
			r := runIn(t, b, sandbox.Spec{ID: "born-" + name, Argv: []string{"/bin/cat", "/proc/self/cgroup"}})
			if !r.status.Success() {
				t.Fatalf("status %v", r.status)
			}
			cg, err := parseProcCgroup([]byte(r.out))
			if err != nil {
				t.Fatal(err)
			}
			want := "/" + b.cfg.CgroupParent + "/born-" + name
			var ctrls []string
			switch d := b.drv.(type) {
			case *v1Driver:
				for c := range d.idx {
					ctrls = append(ctrls, c)
				}
			case *v2Driver:
				ctrls = []string{""}
			}
			for _, c := range ctrls {
				if cg[c] != want {
					t.Errorf("controller %q: child in %q, want %q", c, cg[c], want)
				}
			}
			tasks, _ := filepath.Glob("/proc/self/task/*/cgroup")
			for _, f := range tasks {
				if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(want)) {
					t.Errorf("a Kiln thread stayed in the sandbox: %s:\n%s", f, b)
				}
			}
		})
	}
}

// TestCPUQuota: a busy loop at 177 MB (0.1 vCPU) gets about 0.1 s of CPU
// per second.
func TestCPUQuota(t *testing.T) {
	b := newHostBackend(t, Config{})
	if !b.Capabilities().CPULimit {
		t.Skip("no cpu controller")
	}
	r := runIn(t, b, sandbox.Spec{
		Argv:        []string{"/usr/bin/timeout", "1", "/bin/sh", "-c", "while :; do :; done"},
		CPUWeightMB: 177,
	})
	if r.status.Code != 124 {
		t.Fatalf("status %v, want timeout's 124", r.status)
	}
	st, err := r.box.Stats(ctxFor(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if used := time.Duration(st.CPUUsageNanos); used > 250*time.Millisecond || used < 20*time.Millisecond {
		t.Errorf("CPU used in 1 s at 0.1 vCPU: %v", used)
	}
}

// TestCleanupAfterCrash: a Kiln process dies with a sandbox running. The
// main process dies with it (parent-death signal); what it started lives on
// in the cgroup until the next Kiln's Cleanup, which kills it all and
// removes the groups.
func TestCleanupAfterCrash(t *testing.T) {
	requireRoot(t)
	parent := testParent()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_CRASH_HELPER_PARENT="+parent, "KILN_CRASH_HELPER_DIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidOf := func(name string) int {
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if b, err := os.ReadFile(filepath.Join(dir, "tmp", name)); err == nil && bytes.HasSuffix(b, []byte("\n")) {
				p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				return p
			}
			if time.Now().After(end) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("helper never wrote %s:\n%s", name, out.String())
			}
		}
	}
	mainPid, child, daemon := pidOf("main"), pidOf("child"), pidOf("daemon")

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitDead(t, mainPid)
	for _, p := range []int{child, daemon} {
		if !alive(p) {
			t.Fatalf("pid %d died with Kiln; the test needs it to survive until Cleanup", p)
		}
	}

	b, err := New(Config{CgroupParent: parent, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = b.Close()
		// The crashed helper made the parent; this backend leaves it.
		for _, dir := range b.drv.parentDirs() {
			if err := unix.Rmdir(dir); err != nil {
				t.Errorf("remove test cgroup parent: %v", err)
			}
		}
	}()
	leftovers, err := b.drv.list()
	if err != nil || len(leftovers) != 1 {
		t.Fatalf("leftovers = %v, %v", leftovers, err)
	}
	paths := b.drv.load(leftovers[0]).paths()
	if err := b.Cleanup(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitDead(t, child)
	waitDead(t, daemon)
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survives Cleanup: %v", p, err)
		}
	}
}

// TestCrashHelper is TestCleanupAfterCrash's doomed Kiln; it only runs in
// the helper process.
func TestCrashHelper(t *testing.T) {
	parent := os.Getenv("KILN_CRASH_HELPER_PARENT")
	if parent == "" {
		t.Skip("helper for TestCleanupAfterCrash")
	}
	dir := os.Getenv("KILN_CRASH_HELPER_DIR")
	b, err := New(Config{CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Create(context.Background(), sandbox.Spec{
		ID:     "crashy",
		TmpDir: filepath.Join(dir, "tmp"),
		Argv: []string{"/bin/sh", "-c", `echo $$ > "$TMPDIR/main"
sleep 1000 & echo $! > "$TMPDIR/child"
( setsid /bin/sh -c 'echo $$ > "$TMPDIR/daemon"; exec sleep 1000' & )
wait`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("pid %d still alive", pid)
		}
	}
}

// TestOOMWhenAChildIsTheHog: OOM is reported when the kernel kills a child
// rather than the main process.
func TestOOMWhenAChildIsTheHog(t *testing.T) {
	b := newHostBackend(t, Config{})
	if !b.Capabilities().MemoryLimit {
		t.Skip("no memory controller")
	}
	// A child is the memory hog; the shell survives it on v1 (the kernel
	// kills the biggest task), on v2 memory.oom.group takes everything.
	r := runIn(t, b, sandbox.Spec{
		Argv:        []string{"/bin/sh", "-c", "tail /dev/zero; echo survived"},
		MemoryBytes: 32 << 20,
	})
	if !r.status.OOMKilled {
		t.Errorf("status %+v: OOM not reported", r.status)
	}
	switch b.CgroupVersion() {
	case 1:
		if !r.status.Success() || r.out != "survived\n" {
			t.Errorf("v1: status %v output %q, want the shell to go on", r.status, r.out)
		}
	case 2:
		if r.status.Signal != syscall.SIGKILL {
			t.Errorf("v2: status %v, want the whole group killed", r.status)
		}
	}
}

// TestWaitingCostsNoThread: waiting for a sandbox's exit parks on its pidfd
// in the netpoller, so a host full of idle sandboxes does not pin one OS
// thread each (Go stops at 10,000 threads).
func TestWaitingCostsNoThread(t *testing.T) {
	b := newHostBackend(t, Config{})
	if !b.pidfd {
		t.Skip("kernel without pidfd")
	}
	threads := func() int {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := kvLookup(b, "Threads")
		return int(n)
	}
	before := threads()
	const n = 64
	ctx := ctxFor(t, 30*time.Second)
	for i := range n {
		s, err := b.Create(ctx, sandbox.Spec{ID: "idle" + strconv.Itoa(i), Argv: []string{"/bin/sleep", "1000"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Delete(ctxFor(t, 10*time.Second)) })
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if after := threads(); after-before > n/4 {
		t.Errorf("threads: %d before, %d with %d idle sandboxes", before, after, n)
	}
}

// TestNewUnprivileged: without root New fails clearly, or runs without
// cgroups when allowed. (CI runs as root and skips it.)
func TestNewUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as non-root only")
	}
	_, err := New(Config{CgroupParent: testParent()})
	if !errors.Is(err, ErrCgroupsUnavailable) {
		t.Fatalf("New = %v, want ErrCgroupsUnavailable", err)
	}
	b, err := New(Config{CgroupParent: testParent(), AllowNoCgroups: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.CgroupVersion() != 0 {
		t.Errorf("version %d", b.CgroupVersion())
	}
}
