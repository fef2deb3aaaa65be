package linux

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
)

// ErrCgroupsUnavailable: cgroups cannot be used here (not mounted, not
// root, read-only cgroupfs, a required controller missing).
var ErrCgroupsUnavailable = errors.New("cgroups unavailable")

// Name is the backend's name.
const Name = "linux"

// Lambda's file descriptor limit, applied to every sandbox process.
const nofileLimit = 1024

// CgroupParentFor names the cgroup parent of the server whose data dir is
// dataDir, so two servers on one host never clean up each other's
// sandboxes, and a restart on the same data dir finds what a crash left.
func CgroupParentFor(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return "kiln-" + hex.EncodeToString(sum[:4])
}

// Config configures the linux backend.
type Config struct {
	// CgroupParent is the cgroup path, relative to each hierarchy's root,
	// under which sandbox groups are made ("kiln" → /sys/fs/cgroup/kiln/<id>
	// on v2, /sys/fs/cgroup/memory/kiln/<id> on v1). Everything below it
	// belongs to this backend, and one parent serves one Backend at a time:
	// Cleanup removes what it finds there. Default "kiln".
	CgroupParent string
	// Logger receives warnings and debug events; default slog.Default().
	Logger *slog.Logger
	// AllowNoCgroups lets New succeed where cgroups cannot be used (not
	// root, read-only cgroupfs, controllers missing): sandboxes then get
	// only their process group, with no memory, CPU or pids limit, usage of
	// the main process only, and no way to kill processes that leave the
	// group. Capabilities reports this. Meant for development machines.
	AllowNoCgroups bool
	// NoCPUQuota applies only the CPU weight, never the hard cap (see the CPU
	// mapping in cgroup.go): sandboxes may use idle CPU beyond their share.
	NoCPUQuota bool

	// Isolation runs every sandbox in its own user, pid, mount, uts, ipc,
	// cgroup and network namespaces, on a read-only root with a tmpfs /tmp,
	// without capabilities and under a seccomp filter (see package nsinit).
	// Specs are then in-sandbox terms (sandbox.IsolationReporter). Needs
	// root, amd64, and a binary whose main calls nsinit.Main when
	// nsinit.IsInit (cmd/kiln does; tests use a TestMain).
	Isolation bool
	// InitPath is the binary re-executed as the sandbox init; default
	// os.Executable().
	InitPath string
	// UIDBase and UIDCount are the host uid (and gid) range the backend
	// owns: each live sandbox gets two ids of its own (its namespace's
	// root and the runtime's user), so no two sandboxes, and hence no two
	// accounts, ever share one. UIDCount defaults to 65536; UIDBase 0 claims
	// the first range from 0x70000000 up that no other kiln server on this
	// host holds (uidrange.go).
	UIDBase, UIDCount uint32
	// InitPool is how many sandbox inits are kept started ahead of need
	// (namespaces, uid slot, network, base root and, on cgroup v1, a
	// cgroup made), so a cold start pays only for the sandbox's own mounts,
	// its limits and the runtime. Refills wait while sandboxes are starting
	// (pool.go). 0 → 2; negative → none.
	InitPool int
	// noPoolGroups keeps pooled inits out of cgroups of their own (and so
	// without a runtime process made ahead), as on cgroup v2, so tests run
	// that path on a v1 host.
	noPoolGroups bool
	// RootDir is an empty host directory each init mounts its new root on,
	// inside its own mount namespace; default <os.TempDir()>/kiln-sandbox-root.
	RootDir string

	// Egress gives each isolated sandbox (Isolation must be set) an eth0
	// on a host bridge with an address of its own, a default route through
	// the bridge and masqueraded access to the outside, while the host's
	// own addresses, loopback, link-local (169.254.169.254), the private
	// and CGNAT ranges and the other sandboxes stay unreachable (see
	// egress.go). Without it a sandbox has only its loopback.
	Egress bool
	// EgressBridge names the bridge; default "kiln0". One bridge serves
	// one Backend: New replaces a leftover of the same name.
	EgressBridge string
	// EgressSubnet is the sandboxes' IPv4 prefix; the bridge takes its
	// first address. Default 100.64.0.0/16 (CGNAT space).
	EgressSubnet string
	// EgressAllow are IPv4 prefixes exempt from the denied ranges (a
	// private service sandboxes may use). The host's own addresses stay
	// unreachable regardless.
	EgressAllow []string
	// EgressNameservers are the sandboxes' resolvers, reachable on port 53
	// even inside a denied range; nil → the host's non-loopback ones.
	EgressNameservers []string
}
