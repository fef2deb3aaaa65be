package nsinit

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the subset of classic BPF that Filter emits over a
// seccomp_data of (nr, arch, arg0).
func run(t *testing.T, prog []unix.SockFilter, nr int, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], uint32(nr))
	binary.LittleEndian.PutUint32(data[4:], arch)
	binary.LittleEndian.PutUint64(data[16:], arg0)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			pc += int(pick(a == in.K, in.Jt, in.Jf))
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			pc += int(pick(a >= in.K, in.Jt, in.Jf))
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			pc += int(pick(a&in.K != 0, in.Jt, in.Jf))
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("unexpected instruction %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program fell off its end")
	return 0
}

func pick(c bool, a, b uint8) uint8 {
	if c {
		return a
	}
	return b
}

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
		if got := run(t, prog, tc.nr, tc.arch, tc.arg0); got != tc.want {
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
