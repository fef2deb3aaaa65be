//go:build linux && arm64

package nsinit

import "golang.org/x/sys/unix"

// arm64 uses the asm-generic numbering (seccomp_generic.go) and has no
// second ABI to shut out: AArch32 tasks report AUDIT_ARCH_ARM, which the
// architecture check kills.
const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0
)

var (
	denied  = nrs(genericDenied)
	allowed = nrs(genericAllowed)
)

// The generic table's clone is the one Filter inspects.
var _ = [1]struct{}{}[unix.SYS_CLONE-genericClone]
