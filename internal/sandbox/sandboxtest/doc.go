// Package sandboxtest is the conformance suite every sandbox backend runs:
// exit statuses, output, environment, killing whole process trees
// (daemonised ones included), memory and pids limits, usage read-back,
// cleanup and leaks. A backend's test calls Run with a constructor.
//
// It owns: the suite and its helpers.
//
// It must never: import a backend, or assume more about a backend than the
// sandbox package promises (checks that need a capability are skipped when
// the backend reports it lacks it). It needs Linux's /proc and /bin/sh with
// coreutils.
package sandboxtest
