//go:build linux

package nsinit

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// interpBPF runs the classic BPF subset buildFilter emits over a
// seccomp_data of (nr, arch, arg0).
func interpBPF(t *testing.T, prog []unix.SockFilter, nr int, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], uint32(nr))
	binary.LittleEndian.PutUint32(data[4:], arch)
	binary.LittleEndian.PutUint64(data[16:], arg0)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		var cond bool
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[in.K:])
			continue
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			cond = a == in.K
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			cond = a >= in.K
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			cond = a&in.K != 0
		default:
			t.Fatalf("unexpected instruction %#x at %d", in.Code, pc)
		}
		if cond {
			pc += int(in.Jt)
		} else {
			pc += int(in.Jf)
		}
	}
	t.Fatal("program fell off its end")
	return 0
}

// TestGenericFilter checks the arm64 filter on any architecture.
func TestGenericFilter(t *testing.T) {
	prog := buildFilter(unix.AUDIT_ARCH_AARCH64, 0, genericClone, nrs(genericDenied), nrs(genericAllowed))
	if len(prog) > 4096 {
		t.Fatalf("%d instructions, the kernel takes 4096", len(prog))
	}
	const arch = unix.AUDIT_ARCH_AARCH64
	for _, tc := range []struct {
		name string
		nr   int
		arch uint32
		arg0 uint64
		want uint32
	}{
		{"read", 63, arch, 0, retAllow},
		{"openat", 56, arch, 0, retAllow},
		{"futex", 98, arch, 0, retAllow},
		{"epoll_pwait", 22, arch, 0, retAllow},
		{"newfstatat", 79, arch, 0, retAllow},
		{"execve", 221, arch, 0, retAllow},
		{"thread clone", genericClone, arch, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, retAllow},
		{"clone new user ns", genericClone, arch, unix.CLONE_NEWUSER, retEPERM},
		{"clone new net ns", genericClone, arch, unix.CLONE_NEWNET | uint64(unix.SIGCHLD), retEPERM},
		{"clone3 falls back", 435, arch, 0, retENOSYS},
		{"mount", 40, arch, 0, retEPERM},
		{"ptrace", 117, arch, 0, retEPERM},
		{"bpf", 280, arch, 0, retEPERM},
		{"unshare", 97, arch, 0, retEPERM},
		{"setns", 268, arch, 0, retEPERM},
		{"init_module", 105, arch, 0, retEPERM},
		{"io_uring unknown", 425, arch, 0, retENOSYS},
		{"x86_64 numbering", 0, unix.AUDIT_ARCH_X86_64, 0, retKill},
		{"aarch32 compat", 3, unix.AUDIT_ARCH_ARM, 0, retKill},
		{"out of range", 5000, arch, 0, retENOSYS},
	} {
		if got := interpBPF(t, prog, tc.nr, tc.arch, tc.arg0); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	seen := map[int]string{}
	for _, l := range [][]sysnr{genericDenied, genericAllowed} {
		for _, s := range l {
			if o, dup := seen[s.nr]; dup {
				t.Errorf("%s and %s both have number %d", o, s.name, s.nr)
			}
			seen[s.nr] = s.name
			if s.nr == genericClone || s.nr < 0 || s.nr >= 512 {
				t.Errorf("%s: number %d", s.name, s.nr)
			}
		}
	}
}

// TestGenericNumbers checks every number against golang.org/x/sys's arm64
// table (generated from the kernel headers), read from the module cache.
func TestGenericNumbers(t *testing.T) {
	// The module's directory as this build resolves it (go.mod's version).
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "unix", "zsysnum_linux_arm64.go"))
	if err != nil {
		t.Skipf("no x/sys arm64 table to compare with: %v", err)
	}
	want := map[string]int{}
	for _, m := range regexp.MustCompile(`SYS_(\w+)\s*=\s*(\d+)`).FindAllStringSubmatch(string(src), -1) {
		want[strings.ToLower(m[1])], _ = strconv.Atoi(m[2])
	}
	if want["clone"] != genericClone {
		t.Errorf("clone is %d, genericClone %d", want["clone"], genericClone)
	}
	for _, l := range [][]sysnr{genericDenied, genericAllowed} {
		for _, s := range l {
			if nr, ok := want[s.name]; !ok || nr != s.nr {
				t.Errorf("%s: %d, x/sys says %d (known %v)", s.name, s.nr, nr, ok)
			}
		}
	}
}
