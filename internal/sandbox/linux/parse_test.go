package linux

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		file    string
		wantV1  map[string]v1Mount
		wantV2  []string
		wantErr bool
	}{
		{
			file: "mountinfo-hybrid-separate.txt",
			wantV1: map[string]v1Mount{
				"cpu":     {"/sys/fs/cgroup/cpu", "/"},
				"cpuacct": {"/sys/fs/cgroup/cpuacct", "/"},
				"cpuset":  {"/sys/fs/cgroup/cpuset", "/"},
				"memory":  {"/sys/fs/cgroup/memory", "/"},
				"devices": {"/sys/fs/cgroup/devices", "/"},
				"freezer": {"/sys/fs/cgroup/freezer", "/"},
				"blkio":   {"/sys/fs/cgroup/blkio", "/"},
				"pids":    {"/sys/fs/cgroup/pids", "/"},
			},
			wantV2: []string{"/sys/fs/cgroup/unified"},
		},
		{
			file: "mountinfo-systemd-v1.txt",
			wantV1: map[string]v1Mount{
				"cpu":      {"/sys/fs/cgroup/cpu,cpuacct", "/"},
				"cpuacct":  {"/sys/fs/cgroup/cpu,cpuacct", "/"},
				"memory":   {"/sys/fs/cgroup/memory", "/"},
				"pids":     {"/sys/fs/cgroup/pids", "/"},
				"freezer":  {"/sys/fs/cgroup/freezer", "/"},
				"net_cls":  {"/sys/fs/cgroup/net_cls,net_prio", "/"},
				"net_prio": {"/sys/fs/cgroup/net_cls,net_prio", "/"},
			},
			wantV2: []string{"/sys/fs/cgroup/unified"},
		},
		{
			file:   "mountinfo-unified.txt",
			wantV1: map[string]v1Mount{},
			wantV2: []string{"/sys/fs/cgroup"},
		},
		{
			file: "mountinfo-container-v1.txt",
			wantV1: map[string]v1Mount{
				"memory":  {"/sys/fs/cgroup/memory", "/docker/4f2a"},
				"pids":    {"/sys/fs/cgroup/pids", "/docker/4f2a"},
				"freezer": {"/sys/fs/cgroup/freezer", "/docker/4f2a"},
				"cpu":     {"/sys/fs/cgroup/cpu,cpuacct", "/docker/4f2a"},
				"cpuacct": {"/sys/fs/cgroup/cpu,cpuacct", "/docker/4f2a"},
				"devices": {"/mnt/with space", "/"},
			},
		},
		{file: "mountinfo-bad.txt", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			entries, err := parseMountinfo(f)
			if tc.wantErr {
				if !errors.Is(err, errMountinfo) {
					t.Fatalf("err = %v, want errMountinfo", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := v1Mounts(entries); !reflect.DeepEqual(got, tc.wantV1) {
				t.Errorf("v1 mounts:\n got %v\nwant %v", got, tc.wantV1)
			}
			var v2 []string
			for _, e := range entries {
				if e.FSType == "cgroup2" {
					v2 = append(v2, e.Mountpoint)
				}
			}
			if !reflect.DeepEqual(v2, tc.wantV2) {
				t.Errorf("v2 mounts = %v, want %v", v2, tc.wantV2)
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	tests := map[string]string{
		`/plain`:          "/plain",
		`/a\040b`:         "/a b",
		`/tab\011nl\012`:  "/tab\tnl\n",
		`/back\134slash`:  `/back\slash`,
		`/short\04`:       `/short\04`,
		`/not\0x9octal\9`: `/not\0x9octal\9`,
	}
	for in, want := range tests {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKVLookup(t *testing.T) {
	const events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 3\noom_group_kill 0\n"
	const status = "Name:\tpython3\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    5432 kB\n"
	tests := []struct {
		data, key string
		want      uint64
		ok        bool
	}{
		{events, "oom_kill", 3, true},
		{events, "oom", 1, true},
		{events, "oom_group_kill", 0, true},
		{events, "missing", 0, false},
		{status, "VmHWM", 9876, true},
		{status, "VmRSS", 5432, true},
		{"usage_usec 18446744073709551615", "usage_usec", 18446744073709551615, true},
		{"usage_usec -1", "usage_usec", 0, false},
		{"oom_kill", "oom_kill", 0, false},
		{"", "oom_kill", 0, false},
	}
	for _, tc := range tests {
		got, ok := kvLookup([]byte(tc.data), tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("kvLookup(%q, %q) = %d, %v; want %d, %v", tc.data, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParsePids(t *testing.T) {
	got := parsePids([]byte("12\n345\n\nx\n-3\n0\n7"))
	if want := []int{12, 345, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("parsePids = %v, want %v", got, want)
	}
}

func TestParseProcCgroup(t *testing.T) {
	got, err := parseProcCgroup([]byte("9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x y\n0::/init.scope\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name=systemd": "/", "memory": "/process_api/abc", "cpu": "/x y", "cpuacct": "/x y", "": "/init.scope"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"4:memory", "4:memory:relative", "garbage"} {
		if _, err := parseProcCgroup([]byte(bad)); err == nil {
			t.Errorf("parseProcCgroup(%q) accepted", bad)
		}
	}
}

// The fuzz targets feed the parsers of kernel-provided text: they must
// never panic, and what they return must be self-consistent.

func FuzzParseMountinfo(f *testing.F) {
	for _, name := range []string{"mountinfo-hybrid-separate.txt", "mountinfo-systemd-v1.txt", "mountinfo-container-v1.txt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.FSType != "cgroup" && e.FSType != "cgroup2" {
				t.Errorf("kept a %q mount", e.FSType)
			}
		}
		for c := range v1Mounts(entries) {
			if !v1Controllers[c] {
				t.Errorf("unknown controller %q", c)
			}
		}
	})
}

func FuzzKVLookup(f *testing.F) {
	f.Add("low 0\nhigh 0\nmax 12\noom 1\noom_kill 3\n", "oom_kill")
	f.Add("VmHWM:\t    9876 kB\n", "VmHWM")
	f.Fuzz(func(t *testing.T, data, key string) {
		v, ok := kvLookup([]byte(data), key)
		if !ok && v != 0 {
			t.Errorf("not found but value %d", v)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/\n0::/x\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseProcCgroup([]byte(s))
		if err != nil {
			return
		}
		for c, p := range m {
			if !strings.HasPrefix(p, "/") {
				t.Errorf("controller %q path %q is not absolute", c, p)
			}
		}
	})
}
