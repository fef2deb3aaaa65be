// Package linux is the sandbox backend that runs each sandbox as a process
// tree on this host, held by cgroups (v1 or v2): its own process group, a
// memory limit that swap cannot extend, a CPU share (and cap) proportional to
// memory, a pids limit, a private TMPDIR, usage read-back and a kill that
// reaches every process, including daemonised ones.
//
// It owns: the cgroups under Config.CgroupParent, the sandboxes' TmpDirs and
// the processes it starts. A later version adds namespaces, pivot_root,
// seccomp and a re-exec'd pid-1 init; the seams for that are the spawner
// (spawn.go: one place that forks) and the cgroup drivers (cgroup*.go).
//
// It must never: touch cgroups outside its parent, signal a process it cannot
// prove belongs to one of its sandboxes, or leave a process running after
// Delete or after Kiln dies (the parent-death signal and Cleanup cover that).
package linux
