package nsinit

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Phase names the init reports with "ok", in order. Each mark is the
// CLOCK_MONOTONIC time (shared by every process: no time namespace is
// made) at which the phase ended, so the backend can tell its own work from
// the init's.
const (
	PhaseWake    = "wake"     // the config has arrived and is decoded
	PhaseCgroup  = "cgroupns" // the cgroup namespace is made
	PhaseMounts  = "mounts"   // the function's mounts and /tmp are attached
	PhasePivot   = "pivot"    // pivot_root done, old root detached, root read-only
	PhasePrivs   = "privs"    // hostname, rlimit, capabilities dropped
	PhaseSeccomp = "seccomp"  // the filter is loaded
	PhaseExec    = "exec"     // the runtime is forked and exec'd
)

// Monotonic is CLOCK_MONOTONIC in nanoseconds.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// timeline collects phase marks for the status line.
type timeline struct{ b strings.Builder }

func (t *timeline) mark(name string) {
	t.b.WriteByte(' ')
	t.b.WriteString(name)
	t.b.WriteByte('=')
	t.b.WriteString(strconv.FormatInt(Monotonic(), 10))
}

func (t *timeline) String() string { return t.b.String() }

// Mark is one phase end read back from a status line.
type Mark struct {
	Name string
	At   int64 // CLOCK_MONOTONIC ns
}

// ParseMarks reads the name=ns fields that follow "ok <pid>"; fields it
// cannot read are skipped (the line comes from inside a sandbox, but from
// the init before the runtime ran, and is only used for timing).
func ParseMarks(fields []string) []Mark {
	var m []Mark
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		m = append(m, Mark{Name: k, At: n})
	}
	return m
}
