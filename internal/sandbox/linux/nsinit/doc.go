// Package nsinit is the init process of an isolated linux sandbox: the
// backend re-executes the Kiln binary itself with a marker in its
// environment, in new user, pid, mount, uts, ipc (and, joined before the
// fork, network) namespaces; cmd/kiln calls Main first thing when IsInit
// reports the marker. The init builds the sandbox's read-only root from the
// host's /usr and libraries plus the function's directories, pivots into
// it, drops every privilege, installs the seccomp filter and runs the
// runtime as pid 2, reaping zombies and forwarding signals, and exits with
// it.
//
// It must never leave the host's /etc, /root, /home, /proc or Kiln's data
// dir visible inside a sandbox, never give the runtime a capability, and
// never run anything before its setup is complete: any setup error ends the
// init before the runtime starts.
package nsinit
