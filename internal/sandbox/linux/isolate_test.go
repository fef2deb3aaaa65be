//go:build linux

package linux

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox"
	"github.com/kiln-dev/kiln/internal/sandbox/sandboxtest"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newIsoBackend(t testing.TB) *Backend {
	t.Helper()
	return newHostBackend(t, Config{Isolation: true})
}

// runIso runs a shell script in an isolated sandbox with a task dir and
// returns its status and combined output.
func runIso(t *testing.T, b *Backend, id, script string, mounts ...sandbox.Mount) (sandbox.ExitStatus, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &lockedBuf{}
	s, err := b.Create(ctx, sandbox.Spec{
		ID: id, Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin", "X=1"},
		Dir: "/tmp", MemoryBytes: 256 << 20, CPUWeightMB: 1769, Mounts: mounts, TmpBytes: 8 << 20,
		Stdout: out, Stderr: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Delete(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v (output %q)", err, out.String())
	}
	st, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st, out.String()
}

func TestIsolatedSandboxView(t *testing.T) {
	b := newIsoBackend(t)
	task := t.TempDir() // 0700 and root's: the init reaches it by descriptor
	if err := os.WriteFile(filepath.Join(task, "handler.txt"), []byte("code"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
echo "id=$(id -u):$(id -g)"
echo "pid=$$"
echo "ppid=$PPID"
echo "host=$(hostname)"
echo "task=$(cat /var/task/handler.txt)"
echo "cwd=$(pwd)"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
echo "etc=$(ls /etc | tr '\n' ' ')"
cat /etc/shadow >/dev/null 2>&1 && echo "shadow=readable" || echo "shadow=denied"
ls /root 2>&1 | head -1 | sed 's/^/root=/'
echo hi > /var/task/x 2>/dev/null && echo "taskwrite=ok" || echo "taskwrite=denied"
echo hi > /usr/x 2>/dev/null && echo "usrwrite=ok" || echo "usrwrite=denied"
echo hi > /x 2>/dev/null && echo "rootwrite=ok" || echo "rootwrite=denied"
echo hi > /tmp/x && echo "tmpwrite=ok"
dd if=/dev/zero of=/tmp/fill bs=1M count=20 2>&1 | grep -q 'No space' && echo "tmpfull=enospc"
echo "ifaces=$(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
grep CapEff /proc/self/status
grep Seccomp: /proc/self/status
grep NoNewPrivs /proc/self/status
echo "env=$(env | sort | tr '\n' ' ')"
`
	st, out := runIso(t, b, "iso-view", script, sandbox.Mount{Source: task, Target: "/var/task"})
	t.Log(out)
	if !st.Success() {
		t.Fatalf("status %v", st)
	}
	for _, want := range []string{
		"id=993:990", "ppid=1\n", "host=localhost", "task=code", "cwd=/tmp",
		"shadow=denied", "taskwrite=denied", "usrwrite=denied", "rootwrite=denied", "tmpwrite=ok", "tmpfull=enospc",
		"CapEff:\t0000000000000000", "Seccomp:\t2", "NoNewPrivs:\t1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Only the init (1), the shell and the pipeline's own processes.
	if strings.Contains(out, "procs=1") || !strings.Contains(out, "etc=group hostname hosts") {
		t.Errorf("unexpected /proc or /etc view")
	}
	if strings.Contains(out, "_KILN") {
		t.Error("init config leaked into the runtime's environment")
	}
}

func TestIsolatedSeccompDenies(t *testing.T) {
	b := newIsoBackend(t)
	// python3 from /usr (Debian's) makes the syscalls directly.
	script := `/usr/bin/python3 -S -c '
import ctypes, os, socket, errno
libc = ctypes.CDLL(None, use_errno=True)
def t(name, f):
    r = f()
    print(name, "denied" if r == -1 else "ALLOWED", errno.errorcode.get(ctypes.get_errno(), ""))
t("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
t("unshare", lambda: libc.unshare(0x10000000))
t("setns", lambda: libc.setns(0, 0))
t("ptrace", lambda: libc.ptrace(16, 1, 0, 0))
t("chroot", lambda: libc.chroot(b"/tmp"))
t("bpf", lambda: libc.syscall(321, 0, 0, 0))
t("keyctl", lambda: libc.syscall(250, 0, 0, 0))
t("init_module", lambda: libc.syscall(175, 0, 0, 0))
t("reboot", lambda: libc.syscall(169, 0, 0, 0, 0))
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print("raw ALLOWED")
except OSError as e: print("raw denied", e.errno)
try:
    os.kill(1, 9); print("kill1 ALLOWED")
except OSError as e: print("kill1 denied", e.errno)
'`
	st, out := runIso(t, b, "iso-seccomp", script)
	t.Log(out)
	if !st.Success() {
		t.Fatalf("status %v", st)
	}
	if strings.Contains(out, "ALLOWED") {
		t.Errorf("a dangerous call was allowed:\n%s", out)
	}
	if n := strings.Count(out, "denied"); n != 11 {
		t.Errorf("%d denials, want 11", n)
	}
}

func TestIsolatedListenInside(t *testing.T) {
	b := newIsoBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := &lockedBuf{}
	script := `/usr/bin/python3 -S -c '
import socket
s = socket.create_connection(("127.0.0.1", 9001)); print("inside", s.recv(10).decode())
'`
	s, err := b.Create(ctx, sandbox.Spec{ID: "iso-listen", Argv: []string{"/bin/sh", "-c", script}, Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Delete(context.Background())
	l, err := s.(sandbox.Listener).Listen(ctx, "127.0.0.1:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	// The host cannot reach it.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9001", 200*time.Millisecond); err == nil {
		c.Close()
		// Someone else may listen on the host's 9001; only the sandbox's
		// answer counts, which the Accept above consumes once.
		t.Log("note: something listens on the host's 127.0.0.1:9001")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Wait(ctx)
	if !st.Success() || !strings.Contains(out.String(), "inside hello") {
		t.Fatalf("status %v, output %q", st, out.String())
	}
}

// TestConformanceIsolated runs the backend conformance suite with isolation on.
func TestConformanceIsolated(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend { return newIsoBackend(t) })
}

// TestConformanceIsolatedWithoutPoolGroups runs the suite on the path
// cgroup v2 hosts take: inits moved into their sandbox's group at Start,
// the runtime forked at the claim.
func TestConformanceIsolatedWithoutPoolGroups(t *testing.T) {
	sandboxtest.Run(t, func(t *testing.T) sandbox.Backend {
		return newHostBackend(t, Config{Isolation: true, noPoolGroups: true})
	})
}
