package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// mountEntry is the part of a /proc/self/mountinfo line the cgroup drivers
// need.
type mountEntry struct {
	Root       string   // the mounted subtree of the filesystem ("/" for the whole)
	Mountpoint string   // where it is mounted
	FSType     string   // "cgroup", "cgroup2", ...
	SuperOpts  []string // for cgroup v1: the controllers ("memory", "cpu", "name=systemd", "rw")
}

var errMountinfo = errors.New("malformed mountinfo line")

// parseMountinfo reads proc_pid_mountinfo(5) lines:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// It keeps only cgroup and cgroup2 mounts; malformed lines are an error
// because a misread mount table would place sandboxes in the wrong cgroup.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("%w: %q", errMountinfo, line)
		}
		fstype := f[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		var opts []string
		if sep+3 < len(f) {
			opts = strings.Split(f[sep+3], ",")
		}
		out = append(out, mountEntry{
			Root:       unescapeMount(f[3]),
			Mountpoint: unescapeMount(f[4]),
			FSType:     fstype,
			SuperOpts:  opts,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the kernel's octal escaping of ' ', '\t', '\n' and '\\'
// in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// v1Mount is one mounted cgroup v1 hierarchy.
type v1Mount struct {
	Mountpoint string
	Root       string
}

// v1Controllers are the kernel's cgroup v1 controller names, which is how
// they appear among a v1 mount's super options (next to mount options such
// as rw, xattr or name=systemd).
var v1Controllers = map[string]bool{
	"cpuset": true, "cpu": true, "cpuacct": true, "blkio": true, "memory": true,
	"devices": true, "freezer": true, "net_cls": true, "perf_event": true,
	"net_prio": true, "hugetlb": true, "pids": true, "rdma": true, "misc": true,
}

// v1Mounts maps each v1 controller to the first mount of its hierarchy.
// Named hierarchies (name=systemd) carry no controller and are skipped.
func v1Mounts(entries []mountEntry) map[string]v1Mount {
	m := make(map[string]v1Mount)
	for _, e := range entries {
		if e.FSType != "cgroup" {
			continue
		}
		for _, o := range e.SuperOpts {
			if _, seen := m[o]; v1Controllers[o] && !seen {
				m[o] = v1Mount{Mountpoint: e.Mountpoint, Root: e.Root}
			}
		}
	}
	return m
}

// parseProcCgroup reads /proc/PID/cgroup ("4:memory:/a/b", "2:cpu,cpuacct:/",
// "0::/x") into controller → path. The v2 entry is under key "".
func parseProcCgroup(data []byte) (map[string]string, error) {
	m := make(map[string]string)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		parts := bytes.SplitN(line, []byte(":"), 3)
		if len(parts) != 3 || len(parts[2]) == 0 || parts[2][0] != '/' {
			return nil, fmt.Errorf("malformed cgroup line %q", line)
		}
		path := string(parts[2])
		if len(parts[1]) == 0 {
			m[""] = path
			continue
		}
		for _, c := range bytes.Split(parts[1], []byte(",")) {
			m[string(c)] = path
		}
	}
	return m, nil
}
