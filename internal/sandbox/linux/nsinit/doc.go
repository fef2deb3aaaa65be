// Package nsinit is the init process of an isolated linux sandbox: the
// backend re-executes the Kiln binary itself with a marker in its argv and
// environment, in new user, pid, mount, uts, ipc (and, joined before the
// fork, network) namespaces. While it waits in the backend's pool it builds
// the sandbox's read-only base root from the host's /usr and libraries,
// pivots into it and drops its privileges; when a sandbox claims it, it
// attaches the function's directories and /tmp, makes the root read-only,
// installs the seccomp filter and runs the runtime as pid 2, reaping
// zombies and forwarding signals, and exits with it. It reports each
// phase's end (phases.go) so the backend can time cold starts.
//
// In cgo builds the init is C (cinit_cgo.go): a constructor that takes over
// before the Go runtime starts, so a pooled init costs an exec and a few
// mounts and a sandbox's pid 1 tens of KiB; it carries out steps the
// backend's Go code lists (wire.go) and decides nothing itself. Without cgo,
// cmd/kiln calls Main (init_linux.go) first thing when IsInit reports the
// marker, which does the same in Go.
//
// It must never leave the host's /etc, /root, /home, /proc or Kiln's data
// dir visible inside a sandbox, never give the runtime a capability, and
// never run anything before its setup is complete: any setup error ends the
// init before the runtime starts. The C init must stay small and fail
// closed: every failed step reports and exits.
package nsinit
