// Package linux is the sandbox backend that runs each sandbox as a process
// tree on this host, held by cgroups (v1 or v2): its own process group, a
// memory limit that swap cannot extend, a CPU share (and cap) proportional to
// memory, a pids limit, a private TMPDIR, usage read-back and a kill that
// reaches every process, including daemonised ones.
//
// With Config.Isolation (isolate.go, package nsinit) each sandbox is also
// its own world: the Kiln binary re-executed as a pid-1 init in new user
// (two host uids of its own per sandbox), pid, mount, uts, ipc, cgroup and
// network namespaces, on a read-only root of the host's /usr and libraries
// with the function's directories mounted read-only, a size-limited tmpfs
// /tmp, a minimal /dev and /etc, its own /proc, no capabilities,
// no_new_privs and a seccomp allow-list. Its network has only loopback; the
// worker's Runtime API listener is opened inside it (Sandbox.Listen). With
// Config.Egress (egress.go) it also gets an eth0 on a host bridge, NAT to
// the outside and an nftables filter keeping it from the host, loopback,
// link-local, private ranges and the other sandboxes.
//
// Cold starts: inits are started ahead into a pool (pool.go) with their
// namespaces, uid pair, network (and its Runtime API listener, once one was
// asked for), base root and, on cgroup v1, a cgroup of their own that the
// claiming sandbox renames (isocgroup.go); in cgo builds the init is small
// C and has the runtime's process forked and under seccomp ahead too. Each
// start records its phases (phases.go; Sandbox.StartPhases) for the
// worker's metrics.
//
// It owns: the cgroups under Config.CgroupParent, the sandboxes' TmpDirs,
// their network namespaces and uid slots, the processes it starts, and with
// Egress the bridge, its veths and the nftables table named after it.
//
// It must never: touch cgroups outside its parent, links or nftables
// tables other than its bridge's (the one exception: two accept rules,
// tagged kiln-<bridge>, in a host forward chain that drops by default,
// removed on close), signal a process it cannot
// prove belongs to one of its sandboxes, or leave a process running after
// Delete or after Kiln dies (the parent-death signal and Cleanup cover that).
package linux
