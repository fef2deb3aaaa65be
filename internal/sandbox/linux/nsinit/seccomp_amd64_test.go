package nsinit

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestFilter(t *testing.T) {
	prog := Filter()
	if len(prog) > 4096 {
		t.Fatalf("%d instructions, the kernel takes 4096", len(prog))
	}
	for _, tc := range []struct {
		name string
		nr   int
		arch uint32
		arg0 uint64
		want uint32
	}{
		{"read", unix.SYS_READ, auditArch, 0, retAllow},
		{"futex", unix.SYS_FUTEX, auditArch, 0, retAllow},
		{"thread clone", unix.SYS_CLONE, auditArch, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, retAllow},
		{"clone new user ns", unix.SYS_CLONE, auditArch, unix.CLONE_NEWUSER, retEPERM},
		{"clone new net ns", unix.SYS_CLONE, auditArch, unix.CLONE_NEWNET | uint64(unix.SIGCHLD), retEPERM},
		{"clone3 falls back", unix.SYS_CLONE3, auditArch, 0, retENOSYS},
		{"mount", unix.SYS_MOUNT, auditArch, 0, retEPERM},
		{"ptrace", unix.SYS_PTRACE, auditArch, 0, retEPERM},
		{"bpf", unix.SYS_BPF, auditArch, 0, retEPERM},
		{"unshare", unix.SYS_UNSHARE, auditArch, 0, retEPERM},
		{"io_uring unknown", unix.SYS_IO_URING_SETUP, auditArch, 0, retENOSYS},
		{"x32 abi", 0x40000000 | unix.SYS_READ, auditArch, 0, retEPERM},
		{"other arch", unix.SYS_READ, unix.AUDIT_ARCH_I386, 0, retKill},
		{"out of range", 5000, auditArch, 0, retENOSYS},
	} {
		if got := interpBPF(t, prog, tc.nr, tc.arch, tc.arg0); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	seen := map[int]bool{}
	for _, nr := range denied {
		seen[nr] = true
	}
	for _, nr := range allowed {
		if seen[nr] {
			t.Errorf("syscall %d is both denied and allowed", nr)
		}
	}
}
