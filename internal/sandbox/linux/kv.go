package linux

import (
	"bytes"
	"strconv"
)

// kvLookup finds key in a cgroup or procfs "key value" file such as
// memory.events ("oom_kill 3"), memory.oom_control, cpu.stat or
// /proc/PID/status ("VmHWM:   1234 kB"; a trailing ':' on the key is
// ignored). Only the first number after the key is read.
func kvLookup(data []byte, key string) (uint64, bool) {
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		k := bytes.TrimSuffix(f[0], []byte(":"))
		if string(k) != key {
			continue
		}
		v, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// parseUintFile reads a cgroup file holding one number ("max" is not a
// number and reports !ok).
func parseUint(data []byte) (uint64, bool) {
	v, err := strconv.ParseUint(string(bytes.TrimSpace(data)), 10, 64)
	return v, err == nil
}

// parsePids reads cgroup.procs / tasks: one decimal pid per line. Garbage
// lines are skipped rather than failing a kill.
func parsePids(data []byte) []int {
	var pids []int
	for _, f := range bytes.Fields(data) {
		if p, err := strconv.Atoi(string(f)); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	return pids
}
