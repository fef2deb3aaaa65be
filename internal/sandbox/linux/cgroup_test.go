//go:build linux

package linux

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// These tests need no root: a temp dir stands in for cgroupfs (its control
// files are plain files the drivers create and the test reads back).

func TestCPUMapping(t *testing.T) {
	tests := []struct {
		mb             int
		shares, weight uint64
		quotaUs        int64
	}{
		{128, 74, 7, 10000},       // floor: 0.1 CPU, not 0.072
		{177, 102, 10, 10005},     // just above the floor
		{1769, 1024, 100, 100000}, // one vCPU
		{3538, 2048, 200, 200000}, // two
		{10240, 5927, 579, 578858},
		{1, 2, 1, 10000}, // clamped at the bottom
	}
	for _, tc := range tests {
		if got := cpuSharesV1(tc.mb); got != tc.shares {
			t.Errorf("cpuSharesV1(%d) = %d, want %d", tc.mb, got, tc.shares)
		}
		if got := cpuWeightV2(tc.mb); got != tc.weight {
			t.Errorf("cpuWeightV2(%d) = %d, want %d", tc.mb, got, tc.weight)
		}
		if got := cpuQuotaUs(tc.mb); got != tc.quotaUs {
			t.Errorf("cpuQuotaUs(%d) = %d, want %d", tc.mb, got, tc.quotaUs)
		}
	}
}

func TestCleanParent(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"kiln", "kiln", true},
		{"/kiln/", "kiln", true},
		{"system.slice/kiln.service/sandboxes", "system.slice/kiln.service/sandboxes", true},
		{"", "", false},
		{"/", "", false},
		{"a/../b", "", false},
		{"a//b", "", false},
		{"a b", "", false},
		{"kiln\x00", "", false},
	}
	for _, tc := range tests {
		got, err := cleanParent(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("cleanParent(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// fakeV1 lays out hierarchies under a temp dir like /sys/fs/cgroup on a
// v1 host with cpu and cpuacct co-mounted.
func fakeV1(t *testing.T, parentFiles map[string]string) (string, map[string]v1Mount) {
	root := t.TempDir()
	mounts := map[string]v1Mount{}
	for _, h := range []struct {
		dir   string
		ctrls []string
	}{
		{"memory", []string{"memory"}},
		{"pids", []string{"pids"}},
		{"freezer", []string{"freezer"}},
		{"cpu,cpuacct", []string{"cpu", "cpuacct"}},
	} {
		mp := filepath.Join(root, h.dir)
		if err := os.MkdirAll(filepath.Join(mp, "kiln"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range h.ctrls {
			mounts[c] = v1Mount{Mountpoint: mp, Root: "/"}
		}
	}
	for name, content := range parentFiles {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, mounts
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestV1CreateWritesLimits(t *testing.T) {
	withMemsw := map[string]string{
		"memory/kiln/memory.memsw.limit_in_bytes": "9223372036854771712\n",
		"memory/kiln/memory.oom_control":          "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
	}
	tests := []struct {
		name   string
		parent map[string]string
		l      limits
		want   map[string]string
	}{
		{
			name:   "all-limits-with-swap-accounting",
			parent: withMemsw,
			l:      limits{memoryBytes: 128 << 20, cpuMB: 128, cpuQuota: true, pidsMax: 1024},
			want: map[string]string{
				"memory/kiln/sb/memory.limit_in_bytes":       "134217728",
				"memory/kiln/sb/memory.memsw.limit_in_bytes": "134217728",
				"pids/kiln/sb/pids.max":                      "1024",
				"cpu,cpuacct/kiln/sb/cpu.shares":             "74",
				"cpu,cpuacct/kiln/sb/cpu.cfs_quota_us":       "10000",
			},
		},
		{
			name: "no-swap-accounting-no-quota",
			l:    limits{memoryBytes: 1 << 30, cpuMB: 1024, pidsMax: 64},
			want: map[string]string{
				"memory/kiln/sb/memory.limit_in_bytes": "1073741824",
				"memory/kiln/sb/memory.swappiness":     "0",
				"pids/kiln/sb/pids.max":                "64",
				"cpu,cpuacct/kiln/sb/cpu.shares":       "592",
			},
		},
		{
			name: "no-memory-no-cpu",
			l:    limits{pidsMax: 1024},
			want: map[string]string{"pids/kiln/sb/pids.max": "1024"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, mounts := fakeV1(t, tc.parent)
			d, err := newV1Driver(mounts, "kiln", true)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.prepare(); err != nil {
				t.Fatal(err)
			}
			g, err := d.create("sb", tc.l)
			if err != nil {
				t.Fatal(err)
			}
			got := readTree(t, root)
			for k := range tc.parent {
				delete(got, k)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("files:\n got %v\nwant %v", got, tc.want)
			}
			wantPaths := []string{"memory/kiln/sb", "pids/kiln/sb", "freezer/kiln/sb", "cpu,cpuacct/kiln/sb"}
			for i := range wantPaths {
				wantPaths[i] = filepath.Join(root, wantPaths[i])
			}
			if p := g.paths(); !slices.Equal(p, wantPaths) {
				t.Errorf("paths = %v, want %v", p, wantPaths)
			}
			if _, err := d.create("sb", tc.l); !errors.Is(err, sandbox.ErrExists) {
				t.Errorf("second create = %v, want ErrExists", err)
			}
		})
	}
}

func TestV1MissingControllers(t *testing.T) {
	_, mounts := fakeV1(t, nil)
	delete(mounts, "freezer")
	if _, err := newV1Driver(mounts, "kiln", true); !errors.Is(err, ErrCgroupsUnavailable) || !strings.Contains(err.Error(), "freezer") {
		t.Errorf("required freezer missing: %v", err)
	}
	delete(mounts, "cpu")
	delete(mounts, "cpuacct")
	d, err := newV1Driver(mounts, "kiln", false)
	if err != nil {
		t.Fatal(err)
	}
	want := sandbox.Capabilities{MemoryLimit: true, PidsLimit: true, KillDetached: true}
	if c := d.caps(); c != want {
		t.Errorf("caps = %+v, want %+v", c, want)
	}
}

func TestV1StatsAndOOM(t *testing.T) {
	tests := []struct {
		name      string
		oomField  bool
		files     map[string]string
		want      sandbox.Stats
		oomKilled bool // with sigkilled = true
	}{
		{
			name:     "oom-kill-counter",
			oomField: true,
			files: map[string]string{
				"memory/kiln/sb/memory.max_usage_in_bytes": "1000\n",
				"memory/kiln/sb/memory.usage_in_bytes":     "500\n",
				"memory/kiln/sb/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
				"cpu,cpuacct/kiln/sb/cpuacct.usage":        "12345\n",
			},
			want:      sandbox.Stats{MaxMemoryBytes: 1000, MemoryBytes: 500, CPUUsageNanos: 12345, OOMKills: 2},
			oomKilled: true,
		},
		{
			name: "old-kernel-failcnt",
			files: map[string]string{
				"memory/kiln/sb/memory.max_usage_in_bytes": "1000\n",
				"memory/kiln/sb/memory.usage_in_bytes":     "500\n",
				"memory/kiln/sb/memory.failcnt":            "7\n",
				"cpu,cpuacct/kiln/sb/cpuacct.usage":        "1\n",
			},
			want:      sandbox.Stats{MaxMemoryBytes: 1000, MemoryBytes: 500, CPUUsageNanos: 1},
			oomKilled: true,
		},
		{
			name: "no-oom",
			files: map[string]string{
				"memory/kiln/sb/memory.max_usage_in_bytes": "1\n",
				"memory/kiln/sb/memory.usage_in_bytes":     "1\n",
				"memory/kiln/sb/memory.failcnt":            "0\n",
				"cpu,cpuacct/kiln/sb/cpuacct.usage":        "1\n",
			},
			want: sandbox.Stats{MaxMemoryBytes: 1, MemoryBytes: 1, CPUUsageNanos: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, mounts := fakeV1(t, nil)
			d, err := newV1Driver(mounts, "kiln", true)
			if err != nil {
				t.Fatal(err)
			}
			d.hasOOMKill = tc.oomField
			g, err := d.create("sb", limits{pidsMax: 1})
			if err != nil {
				t.Fatal(err)
			}
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := g.stats()
			if err != nil || got != tc.want {
				t.Errorf("stats = %+v, %v; want %+v", got, err, tc.want)
			}
			if peak, err := g.peakMemory(); err != nil || peak != tc.want.MaxMemoryBytes {
				t.Errorf("peakMemory = %d, %v; want %d", peak, err, tc.want.MaxMemoryBytes)
			}
			defer g.close()
			if got := g.oomKilled(true); got != tc.oomKilled {
				t.Errorf("oomKilled = %v, want %v", got, tc.oomKilled)
			}
			if err := g.resetPeak(); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "memory/kiln/sb/memory.max_usage_in_bytes")); string(b) != "0" {
				t.Errorf("resetPeak wrote %q", b)
			}
		})
	}
}

func TestV1ThreadHomes(t *testing.T) {
	tests := []struct {
		name      string
		mountRoot string
		procCg    string
		want      []string // relative to the fake root
	}{
		{
			name:      "host",
			mountRoot: "/",
			procCg:    "9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/user.slice\n0::/\n",
			want:      []string{"memory/process_api/abc/tasks", "pids/tasks", "freezer/tasks", "cpu,cpuacct/user.slice/tasks"},
		},
		{
			name:      "bind-mounted-subtree",
			mountRoot: "/docker/4f2a",
			procCg:    "8:pids:/docker/4f2a\n6:freezer:/docker/4f2a\n4:memory:/docker/4f2a/inner\n2:cpu,cpuacct:/docker/4f2a\n",
			want:      []string{"memory/inner/tasks", "pids/tasks", "freezer/tasks", "cpu,cpuacct/tasks"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, mounts := fakeV1(t, nil)
			for c, m := range mounts {
				m.Root = tc.mountRoot
				mounts[c] = m
			}
			d, err := newV1Driver(mounts, "kiln", true)
			if err != nil {
				t.Fatal(err)
			}
			d.threadCgroup = filepath.Join(root, "thread-cgroup")
			if err := os.WriteFile(d.threadCgroup, []byte(tc.procCg), 0o644); err != nil {
				t.Fatal(err)
			}
			homes, err := d.load("sb").(*v1Group).threadHomes()
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				tc.want[i] = filepath.Join(root, tc.want[i])
			}
			if !slices.Equal(homes, tc.want) {
				t.Errorf("homes = %v, want %v", homes, tc.want)
			}
		})
	}
}

func TestListGroups(t *testing.T) {
	root, mounts := fakeV1(t, nil)
	for _, p := range []string{"memory/kiln/a", "pids/kiln/a", "pids/kiln/b", "freezer/kiln/not.an.id"} {
		if err := os.Mkdir(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "memory/kiln/memory.limit_in_bytes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := newV1Driver(mounts, "kiln", true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.list()
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("list = %v, %v", got, err)
	}
}

func fakeV2(t *testing.T, controllers string, files map[string]string) string {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte(controllers), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestV2PrepareDelegatesControllers(t *testing.T) {
	root := fakeV2(t, "cpuset cpu io memory hugetlb pids rdma\n", map[string]string{
		"cgroup.subtree_control": "memory pids\n", // partly delegated already
	})
	d := newV2Driver(root, "kiln/sandboxes", true)
	if err := d.prepare(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cgroup.controllers":                    "cpuset cpu io memory hugetlb pids rdma\n",
		"cgroup.subtree_control":                "+cpu",
		"kiln/cgroup.subtree_control":           "+memory +pids +cpu",
		"kiln/sandboxes/cgroup.subtree_control": "+memory +pids +cpu",
	}
	if got := readTree(t, root); !reflect.DeepEqual(got, want) {
		t.Errorf("files:\n got %v\nwant %v", got, want)
	}
	if c := d.caps(); c != sandbox.FullCapabilities {
		t.Errorf("caps = %+v", c)
	}
}

func TestV2MissingControllers(t *testing.T) {
	root := fakeV2(t, "cpu io\n", nil)
	err := newV2Driver(root, "kiln", true).prepare()
	if !errors.Is(err, ErrCgroupsUnavailable) || !strings.Contains(err.Error(), "memory, pids") {
		t.Errorf("prepare = %v", err)
	}
	d := newV2Driver(root, "kiln", false)
	if err := d.prepare(); err != nil {
		t.Fatal(err)
	}
	want := sandbox.Capabilities{CPULimit: true, KillDetached: true}
	if c := d.caps(); c != want {
		t.Errorf("caps = %+v, want %+v", c, want)
	}
}

func TestV2CreateWritesLimits(t *testing.T) {
	probed := map[string]string{
		"kiln/cgroup.kill":      "",
		"kiln/memory.swap.max":  "max\n",
		"kiln/memory.peak":      "0\n",
		"kiln/memory.oom.group": "0\n",
	}
	tests := []struct {
		name  string
		files map[string]string
		l     limits
		want  map[string]string
	}{
		{
			name:  "all",
			files: probed,
			l:     limits{memoryBytes: 256 << 20, cpuMB: 3538, cpuQuota: true, pidsMax: 1024},
			want: map[string]string{
				"memory.max":       "268435456",
				"memory.swap.max":  "0",
				"memory.oom.group": "1",
				"pids.max":         "1024",
				"cpu.weight":       "200",
				"cpu.max":          "200000 100000",
			},
		},
		{
			name: "old-kernel-no-quota",
			l:    limits{memoryBytes: 128 << 20, cpuMB: 128, pidsMax: 10},
			want: map[string]string{
				"memory.max": "134217728",
				"pids.max":   "10",
				"cpu.weight": "7",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeV2(t, "cpu memory pids", tc.files)
			d := newV2Driver(root, "kiln", true)
			if err := d.prepare(); err != nil {
				t.Fatal(err)
			}
			g, err := d.create("sb", tc.l)
			if err != nil {
				t.Fatal(err)
			}
			defer g.close()
			if got := readTree(t, filepath.Join(root, "kiln", "sb")); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("files:\n got %v\nwant %v", got, tc.want)
			}
			if g.(*v2Group).fd < 0 {
				t.Error("no cgroup fd for CLONE_INTO_CGROUP")
			}
		})
	}
}

func TestV2StatsAndOOM(t *testing.T) {
	root := fakeV2(t, "cpu memory pids", map[string]string{"kiln/memory.peak": ""})
	d := newV2Driver(root, "kiln", true)
	if err := d.prepare(); err != nil {
		t.Fatal(err)
	}
	g, err := d.create("sb", limits{pidsMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for name, content := range map[string]string{
		"memory.current": "4096\n",
		"memory.peak":    "8192\n",
		"memory.events":  "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "kiln/sb", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := sandbox.Stats{MaxMemoryBytes: 8192, MemoryBytes: 4096, CPUUsageNanos: 1500000, OOMKills: 1}
	if got, err := g.stats(); err != nil || got != want {
		t.Errorf("stats = %+v, %v; want %+v", got, err, want)
	}
	if !g.oomKilled(false) {
		t.Error("oomKilled = false")
	}
	// A plain file accepts the reset write, as kernels ≥ 6.12 do; reads
	// then go through the held descriptor.
	if err := g.resetPeak(); err != nil {
		t.Fatal(err)
	}
	if !g.(*v2Group).peakOpen {
		t.Error("peak descriptor not held after reset")
	}
}

func TestNewWithoutCgroups(t *testing.T) {
	unavailable := func(Config) (driver, error) {
		return nil, errors.New("probe: read-only file system")
	}
	if _, err := newDetected(Config{}, unavailable); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("New without cgroups = %v, want the probe's error", err)
	}
	var logs bytes.Buffer
	b, err := newDetected(Config{AllowNoCgroups: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, unavailable)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.CgroupVersion() != 0 || b.Capabilities() != (sandbox.Capabilities{}) {
		t.Errorf("version %d caps %+v, want none", b.CgroupVersion(), b.Capabilities())
	}
	if n := strings.Count(logs.String(), "WITHOUT cgroups"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
	if _, err := newDetected(Config{CgroupParent: "../escape"}, unavailable); err == nil {
		t.Error("bad CgroupParent accepted")
	}
}

func TestNewPreparesDetectedDriver(t *testing.T) {
	root := fakeV2(t, "memory pids", nil)
	b, err := newDetected(Config{CgroupParent: "k"}, func(cfg Config) (driver, error) {
		return newV2Driver(root, cfg.CgroupParent, true), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.CgroupVersion() != 2 || b.Name() != "linux" {
		t.Errorf("version %d name %q", b.CgroupVersion(), b.Name())
	}
	if _, err := os.Stat(filepath.Join(root, "k", "cgroup.subtree_control")); err != nil {
		t.Errorf("parent not prepared: %v", err)
	}
}

func TestParentMadeAndRemovedOnlyIfOurs(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "existing"), 0o755); err != nil {
		t.Fatal(err)
	}
	created, err := mkdirAll(root, "existing/kiln/sandboxes")
	if err != nil || created != "existing/kiln" {
		t.Fatalf("mkdirAll = %q, %v; want existing/kiln", created, err)
	}
	if again, err := mkdirAll(root, "existing/kiln/sandboxes"); err != nil || again != "" {
		t.Fatalf("second mkdirAll = %q, %v; want nothing made", again, err)
	}
	if err := rmdirUpTo(root, "existing/kiln/sandboxes", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "existing/kiln/sandboxes")); err != nil {
		t.Fatal("removed a parent it did not make")
	}
	if err := rmdirUpTo(root, "existing/kiln/sandboxes", created); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "existing/kiln")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("existing/kiln survives: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "existing")); err != nil {
		t.Errorf("removed what was there before: %v", err)
	}
	// A parent still holding a group stays.
	created, _ = mkdirAll(root, "p")
	if err := os.Mkdir(filepath.Join(root, "p", "sb"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rmdirUpTo(root, "p", created); err != nil {
		t.Errorf("busy parent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "p", "sb")); err != nil {
		t.Errorf("busy parent removed: %v", err)
	}
}

// TestV1InitCPUBoost: a boosted group gets its weight at once and its hard
// cap only when setCPUCap is called (after the runtime's init).
func TestV1InitCPUBoost(t *testing.T) {
	root, mounts := fakeV1(t, nil)
	d, err := newV1Driver(mounts, "kiln", true)
	if err != nil {
		t.Fatal(err)
	}
	spec := sandbox.Spec{ID: "sb", CPUWeightMB: 128, InitCPUBoost: true}
	quota := filepath.Join(root, "cpu,cpuacct/kiln/sb/cpu.cfs_quota_us")
	g, err := d.create("sb", limitsFor(&spec, false))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "cpu,cpuacct/kiln/sb/cpu.shares")); err != nil || string(b) != "74" {
		t.Fatalf("weight at create = %q, %v", b, err)
	}
	if b, err := os.ReadFile(quota); err == nil {
		t.Fatalf("boosted group got a cap at create: %q", b)
	}
	if err := g.setCPUCap(128); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(quota); string(b) != itoa(cpuQuotaUs(128)) {
		t.Fatalf("cap after init = %q, want %d", b, cpuQuotaUs(128))
	}
}

// TestV1ClaimSkipsUnchangedPids: a pooled group's claim does not rewrite
// the pids.max the pool already set, and does write one that differs.
func TestV1ClaimSkipsUnchangedPids(t *testing.T) {
	tests := []struct {
		name      string
		pidsMax   int64
		wantWrite bool
	}{
		{"same-as-pool", poolLimits.pidsMax, false},
		{"different", 64, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, mounts := fakeV1(t, nil)
			d, err := newV1Driver(mounts, "kiln", true)
			if err != nil {
				t.Fatal(err)
			}
			g, err := d.create("pool", poolLimits)
			if err != nil {
				t.Fatal(err)
			}
			// Stands in for the pool's value; a claim that writes replaces it.
			pids := filepath.Join(root, "pids/kiln/pool/pids.max")
			if err := os.WriteFile(pids, []byte("pool"), 0o644); err != nil {
				t.Fatal(err)
			}
			l := limits{memoryBytes: 128 << 20, cpuMB: 128, pidsMax: tc.pidsMax}
			if err := g.(*v1Group).setLimits(l); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(pids)
			if wrote := string(b) != "pool"; wrote != tc.wantWrite || (wrote && string(b) != itoa(tc.pidsMax)) {
				t.Fatalf("pids.max = %q, want write %v of %d", b, tc.wantWrite, tc.pidsMax)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "memory/kiln/pool/memory.limit_in_bytes")); string(b) != "134217728" {
				t.Fatalf("memory limit = %q", b)
			}
		})
	}
}
