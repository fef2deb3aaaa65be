package nsinit

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Seccomp return values.
const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	// Syscalls the list does not know get ENOSYS, which libraries read as
	// "old kernel" and fall back from (glibc's clone3, libuv's io_uring).
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// nsFlags are the clone flags that make namespaces; a runtime never needs
// them and they are the first step of most container escapes.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits on little-endian
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// Filter builds the sandbox's seccomp program: the wrong architecture is
// killed, denied syscalls get EPERM, clone with namespace flags gets EPERM,
// allowed ones pass and everything else gets ENOSYS.
func Filter() []unix.SockFilter {
	return buildFilter(auditArch, x32Bit, unix.SYS_CLONE, denied, allowed)
}

// buildFilter is Filter for an architecture's numbers, so the lists of
// every architecture can be tested on any.
func buildFilter(auditArch, x32Bit uint32, clone int, denied, allowed []int) []unix.SockFilter {
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jst = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	p := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, retKill),
		stmt(ld, offNr),
	}
	if x32Bit != 0 {
		p = append(p, jump(jge, x32Bit, 0, 1), stmt(ret, retEPERM))
	}
	// clone: inspect the flags, then reload nr for the lists.
	p = append(p,
		jump(jeq, uint32(clone), 0, 5),
		stmt(ld, offArg0),
		jump(jst, nsFlags, 0, 1),
		stmt(ret, retEPERM),
		stmt(ret, retAllow),
		stmt(ret, retKill), // unreachable; keeps the jump above at 5
	)
	for _, nr := range denied {
		p = append(p, jump(jeq, uint32(nr), 0, 1), stmt(ret, retEPERM))
	}
	for _, nr := range allowed {
		p = append(p, jump(jeq, uint32(nr), 0, 1), stmt(ret, retAllow))
	}
	return append(p, stmt(ret, retENOSYS))
}

// installSeccomp loads Filter on the calling thread (no_new_privs must be
// set); children forked from it inherit it.
func installSeccomp() error {
	f := Filter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("load filter of %d instructions: %w", len(f), e)
	}
	return nil
}
