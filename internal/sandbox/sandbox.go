package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Sentinel errors. Backends wrap them with context; callers match with errors.Is.
var (
	// ErrInvalidSpec: the Spec breaks a rule documented on its fields.
	ErrInvalidSpec = errors.New("sandbox: invalid spec")
	// ErrExists: a live sandbox (or a leftover of a crashed run, which
	// Backend-specific recovery removes) already uses the Spec's ID.
	ErrExists = errors.New("sandbox: id already in use")
	// ErrNotStarted: the call needs a started sandbox.
	ErrNotStarted = errors.New("sandbox: not started")
	// ErrAlreadyStarted: Start was called twice, or after Stop.
	ErrAlreadyStarted = errors.New("sandbox: already started")
	// ErrDeleted: the sandbox was deleted.
	ErrDeleted = errors.New("sandbox: deleted")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("sandbox: backend closed")
)

// DefaultPidsMax is the pids limit used when Spec.PidsMax is 0.
const DefaultPidsMax = 1024

// MaxIDLen bounds Spec.ID; the ID becomes a cgroup and directory name.
const MaxIDLen = 128

// Spec is everything a backend needs to make one sandbox. It is a value: the
// backend keeps a copy and never writes back into it.
type Spec struct {
	// ID is unique among the backend's live sandboxes, 1..MaxIDLen characters
	// of [a-zA-Z0-9_-]. It names the sandbox's cgroups and host state.
	ID string
	// Argv is the main process; Argv[0] is an absolute path (no PATH search).
	Argv []string
	// Env is the complete environment of the main process; nothing is
	// inherited from the host. The backend adds TMPDIR when TmpDir is set.
	Env []string
	// Dir is the working directory (the function's task root). Empty means
	// the backend's choice ("/").
	Dir string
	// MemoryBytes is the memory limit (the function's MemorySize MB × 1 MiB);
	// swap never extends it. 0 means no limit.
	MemoryBytes int64
	// CPUWeightMB is the memory size in MB that the CPU share is derived
	// from: 1769 MB is one full vCPU, as on Lambda. 0 means no CPU limit.
	// Backends document how they map it.
	CPUWeightMB int
	// PidsMax bounds the number of processes and threads; 0 → DefaultPidsMax.
	PidsMax int64
	// InitCPUBoost starts the sandbox without its hard CPU cap (the weight
	// still applies) until EndInit is called (see InitBooster): a runtime's
	// start-up is CPU-bound and a 128 MB function's share of a core would
	// make every cold start slow. Backends without a cap ignore it.
	InitCPUBoost bool
	// TmpDir is a host directory the backend creates (mode 0700, its parent
	// must exist, it must not exist yet) and hands to the process as TMPDIR;
	// Delete removes it with its contents. Empty means none.
	TmpDir string
	// Stdout and Stderr receive the main process's output (and that of its
	// children). nil discards. A backend copies into other writers with
	// goroutines it owns that finish before Done is closed, so a writer must
	// not block for long. An *os.File may be handed to the process directly
	// (switched to blocking mode; the caller still owns and closes it). When
	// both are the same writer, one stream carries both, in order.
	Stdout, Stderr io.Writer
	// Mounts are host directories shown read-only inside the sandbox;
	// only isolating backends (IsolationReporter) honour them.
	Mounts []Mount
	// TmpBytes is the size of /tmp in an isolating backend (0 → 512 MiB,
	// Lambda's default ephemeral storage).
	TmpBytes int64
}

// Validate checks the rules documented on Spec's fields. Errors wrap
// ErrInvalidSpec.
func (s *Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	if err := ValidateID(s.ID); err != nil {
		return err
	}
	if len(s.Argv) == 0 {
		return bad("empty argv")
	}
	if !filepath.IsAbs(s.Argv[0]) {
		return bad("argv[0] %q is not an absolute path", s.Argv[0])
	}
	for _, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("argv contains a NUL byte")
		}
	}
	for _, e := range s.Env {
		if strings.IndexByte(e, 0) >= 0 {
			return bad("env contains a NUL byte")
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return bad("env entry %q is not KEY=value", e)
		}
	}
	if s.Dir != "" && (!filepath.IsAbs(s.Dir) || strings.IndexByte(s.Dir, 0) >= 0) {
		return bad("dir %q is not an absolute path", s.Dir)
	}
	if s.TmpDir != "" {
		if !filepath.IsAbs(s.TmpDir) || strings.IndexByte(s.TmpDir, 0) >= 0 {
			return bad("tmp dir %q is not an absolute path", s.TmpDir)
		}
		// Delete removes TmpDir recursively: refuse paths where a typo
		// would remove something that is not the sandbox's.
		if c := filepath.Clean(s.TmpDir); c != s.TmpDir || c == "/" {
			return bad("tmp dir %q must be a clean path below /", s.TmpDir)
		}
	}
	for _, m := range s.Mounts {
		for _, p := range []string{m.Source, m.Target} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || strings.IndexByte(p, 0) >= 0 {
				return bad("mount path %q must be a clean absolute path below /", p)
			}
		}
	}
	if s.MemoryBytes < 0 || s.CPUWeightMB < 0 || s.PidsMax < 0 || s.TmpBytes < 0 {
		return bad("negative limit")
	}
	return nil
}

// ValidateID checks a sandbox ID; errors wrap ErrInvalidSpec.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id must have 1 to %d characters", ErrInvalidSpec, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: id %q may only contain [a-zA-Z0-9_-]", ErrInvalidSpec, id)
		}
	}
	return nil
}

// ExitStatus is how the main process ended.
type ExitStatus struct {
	// Code is the exit code, or -1 when the process was killed by a signal.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// OOMKilled reports that the kernel's out-of-memory killer killed a
	// process of the sandbox (usually the main one) because it reached its
	// memory limit.
	OOMKilled bool
	// Err is set when the status could not be read; Code and Signal are
	// then meaningless.
	Err error
}

// String reads like Go's os.ProcessState: "exit status 2", "signal: killed".
// Lambda quotes it in "Runtime exited with error: …".
func (e ExitStatus) String() string {
	switch {
	case e.Err != nil:
		return "wait: " + e.Err.Error()
	case e.Signal != 0:
		return "signal: " + e.Signal.String()
	default:
		return "exit status " + strconv.Itoa(e.Code)
	}
}

// Success reports a clean exit with code 0.
func (e ExitStatus) Success() bool { return e.Err == nil && e.Signal == 0 && e.Code == 0 }

// Stats is a sandbox's resource usage, summed over all its processes.
type Stats struct {
	// MaxMemoryBytes is the peak memory use since the sandbox was created or
	// since the last ResetPeak.
	MaxMemoryBytes uint64
	// MemoryBytes is the memory in use now.
	MemoryBytes uint64
	// CPUUsageNanos is the CPU time used since creation.
	CPUUsageNanos uint64
	// OOMKills counts processes the out-of-memory killer killed.
	OOMKills uint64
}

// Sandbox is one execution environment: a main process (the runtime) and
// everything it starts, held to the Spec's limits. Methods are safe for
// concurrent use. A sandbox lives as long as its main process: when that
// exits, the backend kills whatever else still runs inside.
type Sandbox interface {
	// ID is Spec.ID.
	ID() string
	// Pid is the host pid of the main process, 0 before Start.
	Pid() int
	// Start starts Argv as the sandbox's main process, already inside all of
	// the sandbox's limits. ctx bounds only the start itself; the process
	// outlives it. A sandbox starts at most once (ErrAlreadyStarted).
	Start(ctx context.Context) error
	// Done is closed once the main process has exited, every other process
	// of the sandbox has been killed and output copying has finished.
	Done() <-chan struct{}
	// Wait blocks until Done and returns the exit status. The error is
	// ctx.Err() when ctx ends first, or ErrNotStarted.
	Wait(ctx context.Context) (ExitStatus, error)
	// Stats reads the usage counters; it works while running and after exit
	// until Delete (ErrDeleted).
	Stats(ctx context.Context) (Stats, error)
	// ResetPeak starts a new peak for Stats.MaxMemoryBytes (so each invoke's
	// "Max Memory Used" can be its own). It is a no-op where the host cannot
	// reset the peak.
	ResetPeak(ctx context.Context) error
	// Stop kills every process of the sandbox, including ones that left the
	// main process's group or session, and waits until Done. Stopping a
	// sandbox that never started makes later Starts fail; stopping an exited
	// one is a no-op.
	Stop(ctx context.Context) error
	// Delete stops the sandbox if it runs and removes everything the backend
	// made for it on the host (cgroups, TmpDir). It is idempotent; after it,
	// only ID, Pid, Done and Wait still work.
	Delete(ctx context.Context) error
}

// Backend makes sandboxes.
type Backend interface {
	// Name is the backend's name, e.g. "linux".
	Name() string
	// Create validates the spec and prepares the sandbox (limits, host
	// directories) without starting it. The error wraps ErrInvalidSpec,
	// ErrExists or ErrClosed where they apply.
	Create(ctx context.Context, spec Spec) (Sandbox, error)
	// Close releases the backend. Delete sandboxes first: Close does not
	// wait for them, and backends may kill what still runs.
	Close() error
}

// Capabilities says which of the Spec's promises a backend keeps. A backend
// running degraded (for example without cgroups) reports what it lost, so a
// worker can warn and the conformance suite can skip what cannot pass.
type Capabilities struct {
	MemoryLimit  bool // MemoryBytes is enforced and OOM kills are reported
	PidsLimit    bool // PidsMax is enforced
	CPULimit     bool // CPUWeightMB is enforced
	UsageStats   bool // Stats covers every process of the sandbox (not just the main one)
	KillDetached bool // Stop also kills processes that left the group or session (setsid daemons)
}

// FullCapabilities is what a backend that keeps every promise reports.
var FullCapabilities = Capabilities{MemoryLimit: true, PidsLimit: true, CPULimit: true, UsageStats: true, KillDetached: true}

// CapabilityReporter is implemented by backends that may run without some
// guarantees. Backends that do not implement it keep all of them.
type CapabilityReporter interface {
	Capabilities() Capabilities
}

// CapabilitiesOf returns what b reports, or FullCapabilities.
func CapabilitiesOf(b Backend) Capabilities {
	if r, ok := b.(CapabilityReporter); ok {
		return r.Capabilities()
	}
	return FullCapabilities
}

// HostPathsReporter is implemented by sandboxes that make host paths
// (cgroup directories, TmpDir); Delete must remove every one of them. Tests
// and leak checks use it.
type HostPathsReporter interface {
	HostPaths() []string
}

// PeakMemoryReader is implemented by sandboxes that can read their memory
// peak more cheaply than Stats; the worker reads it for every REPORT line.
type PeakMemoryReader interface {
	PeakMemory(ctx context.Context) (uint64, error)
}

// InitBooster is implemented by sandboxes that honour Spec.InitCPUBoost.
type InitBooster interface {
	// EndInit applies the CPU cap that InitCPUBoost held back. Idempotent.
	EndInit(ctx context.Context) error
}

// Mount is a host directory an isolating backend shows, read-only, at a
// path inside the sandbox.
type Mount struct {
	Source string // absolute host path
	Target string // absolute path inside the sandbox, e.g. "/var/task"
}

// IsolationReporter is implemented by backends that run each sandbox in its
// own root filesystem, namespaces and network. Their Specs are written in
// in-sandbox terms: Argv, Env and Dir name paths inside the sandbox, host
// directories reach it only through Spec.Mounts (read-only) and TmpDir
// (writable, shown at its own host path), /tmp is the backend's own
// (Spec.TmpBytes) and the network is the sandbox's own.
type IsolationReporter interface {
	Isolated() bool
}

// IsIsolated reports whether b isolates its sandboxes (see IsolationReporter).
func IsIsolated(b Backend) bool {
	r, ok := b.(IsolationReporter)
	return ok && r.Isolated()
}

// Listener is implemented by sandboxes with a network of their own: Listen
// opens a TCP listener inside the sandbox's network, before Start, so the
// worker can serve the Runtime API there without exposing the host. addr is
// as seen from inside the sandbox, e.g. "127.0.0.1:9001".
type Listener interface {
	Listen(ctx context.Context, addr string) (net.Listener, error)
}
