//go:build linux && !amd64

package nsinit

// Only amd64 has a syscall list so far; elsewhere the filter kills every
// syscall, so isolation refuses to start instead of running unfiltered.
const (
	auditArch = 0
	x32Bit    = 0
)

var denied, allowed []int
