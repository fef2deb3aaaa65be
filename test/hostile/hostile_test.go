package hostile

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// TestHostile runs every attack against one isolated server, so the suite
// pays for one build and one start.
func TestHostile(t *testing.T) {
	s := startServer(t)
	c := s.client()
	probeDir := deploy(t, s, c, "probe", fnOpts{})
	// Another account's function with different code, whose host code
	// directory the probe tries to read.
	other := s.newAccount(t)
	otherDir := deploy(t, s, other, "victim", fnOpts{code: victimZip(t)})
	if probeDir == otherDir {
		t.Fatal("test setup: same code for both functions")
	}

	t.Run("Escape", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		hostPid := os.Getpid()
		r := invoke(t, c, "probe", map[string]any{
			"op": "probe", "datadir": s.dataDir, "other_task": otherDir + "/app.py",
			"host_pid": hostPid, "host_port": ln.Addr().(*net.TCPAddr).Port,
		})
		if r.funcErr != "" {
			t.Fatalf("probe failed: %s", r.raw)
		}
		p := r.payload
		t.Logf("probe saw: %s", r.raw)
		want := map[string]any{
			"uid": 993.0, "gid": 990.0, "host_passwd_root": false,
			"shadow": "ENOENT", "datadir": "ENOENT", "other_task": "ENOENT", "proc1_environ": "EACCES",
			"write_task": "EROFS", "write_root": "EROFS", "write_etc": "EROFS", "write_usr": "EROFS", "write_tmp": "WRITTEN",
			"mount": "EPERM", "umount": "EPERM", "ptrace": "EPERM", "unshare": "EPERM", "setns": "EPERM", "chroot": "EPERM",
			"init_module": "EPERM", "bpf": "EPERM", "kexec": "EPERM", "perf": "EPERM", "reboot": "EPERM",
			"raw_socket": "EPERM", "kill_host": "ESRCH",
			"connect_host": "ECONNREFUSED", "connect_metadata": "EHOSTUNREACH", "connect_peer": "ECONNREFUSED",
			"task_root": "/var/task", "runtime_api": "127.0.0.1:9001", "cwd": "/var/task",
		}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("%s = %v, want %v", k, p[k], v)
			}
		}
		// Only the init and the runtime (python) are visible.
		if pids, _ := p["pids"].([]any); len(pids) != 2 || pids[0] != 1.0 {
			t.Errorf("visible pids %v, want the init and the runtime", p["pids"])
		}
	})

	t.Run("NoPeerNetwork", func(t *testing.T) {
		// A listener in one sandbox is unreachable from another: each has
		// its own network namespace.
		deploy(t, s, c, "peer", fnOpts{})
		if r := invoke(t, c, "peer", map[string]any{"op": "listen"}); r.payload["self"] != "CONNECTED" {
			t.Fatalf("peer listen: %s", r.raw)
		}
		r := invoke(t, c, "probe", map[string]any{"op": "probe", "datadir": "/x", "other_task": "/x", "host_pid": 1, "host_port": 1})
		if r.payload["connect_peer"] != "ECONNREFUSED" {
			t.Errorf("probe reached the peer's listener: %v", r.payload["connect_peer"])
		}
	})

	t.Run("AccountsNeverShareUID", func(t *testing.T) {
		invoke(t, other, "victim", map[string]any{})
		invoke(t, c, "probe", map[string]any{"op": "probe", "datadir": "/x", "other_task": "/x", "host_pid": 1, "host_port": 1})
		a, b := runtimeUIDs("probe"), runtimeUIDs("victim")
		if len(a) == 0 || len(b) == 0 {
			t.Fatalf("runtimes not found on the host: probe %v victim %v", a, b)
		}
		for u := range a {
			if b[u] {
				t.Errorf("host uid %d shared by two accounts", u)
			}
			if u == 0 || u < 65536 {
				t.Errorf("runtime runs as host uid %d", u)
			}
		}
	})

	t.Run("ForkBomb", func(t *testing.T) {
		// A full vCPU and room in time: 1023 fork+execs take seconds on a
		// loaded 2-core CI machine, and the test is about the pids limit.
		deploy(t, s, c, "forkbomb", fnOpts{memoryMB: 1769, timeout: 60})
		r := invoke(t, c, "forkbomb", map[string]any{"op": "forkbomb"})
		t.Logf("fork bomb: %s", r.raw)
		if n, _ := r.payload["forked"].(float64); n >= 1024 || r.payload["error"] != "EAGAIN" {
			t.Errorf("pids limit did not hold: %s", r.raw)
		}
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Errorf("host cannot fork after the bomb: %v", err)
		}
		checkProbeWorks(t, c)
	})

	t.Run("MemoryBomb", func(t *testing.T) {
		deploy(t, s, c, "membomb", fnOpts{memoryMB: 128})
		r := invoke(t, c, "membomb", map[string]any{"op": "membomb"})
		if r.funcErr == "" || !strings.Contains(r.raw, "Runtime.") {
			t.Errorf("memory bomb: %s %s", r.funcErr, r.raw)
		}
		t.Logf("memory bomb: %s", r.raw)
		checkProbeWorks(t, c)
	})

	t.Run("CPUSpinTimeout", func(t *testing.T) {
		deploy(t, s, c, "spin", fnOpts{memoryMB: 128, timeout: 2})
		r := invoke(t, c, "spin", map[string]any{"op": "spin"})
		if !strings.Contains(r.raw, "Task timed out after 2.00 seconds") || r.duration > 6*time.Second {
			t.Errorf("spin: %s after %v", r.raw, r.duration)
		}
	})

	t.Run("TmpFill", func(t *testing.T) {
		var before syscall.Statfs_t
		_ = syscall.Statfs(s.dataDir, &before)
		// tmpfs pages count against the sandbox's memory: give it room
		// beyond the 512 MB of /tmp.
		deploy(t, s, c, "fill", fnOpts{memoryMB: 1024})
		r := invoke(t, c, "fill", map[string]any{"op": "fill"})
		w, _ := r.payload["written"].(float64)
		if r.payload["error"] != "ENOSPC" || w > 512<<20 || w < 500<<20 {
			t.Errorf("fill: %s", r.raw)
		}
		var after syscall.Statfs_t
		_ = syscall.Statfs(s.dataDir, &after)
		if lost := int64(before.Bavail-after.Bavail) * before.Bsize; lost > 64<<20 {
			t.Errorf("host disk lost %d bytes", lost)
		}
	})

	t.Run("ChildKilledWithSandbox", func(t *testing.T) {
		deploy(t, s, c, "child", fnOpts{})
		marker := fmt.Sprintf("86399.%d", time.Now().UnixNano()%1000000)
		invoke(t, c, "child", map[string]any{"op": "child", "marker": marker})
		if len(hostProcs(marker)) == 0 {
			t.Fatal("the child did not start")
		}
		if _, err := c.DeleteFunction(context.Background(), &lambda.DeleteFunctionInput{FunctionName: aws.String("child")}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(hostProcs(marker)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("child %v outlived its sandbox", hostProcs(marker))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func checkProbeWorks(t *testing.T, c *lambda.Client) {
	t.Helper()
	r := invoke(t, c, "probe", map[string]any{"op": "probe", "datadir": "/x", "other_task": "/x", "host_pid": 1, "host_port": 1})
	if r.funcErr != "" || r.payload["uid"] != 993.0 {
		t.Errorf("another sandbox was harmed: %s", r.raw)
	}
}

func victimZip(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("testdata/probe/app.py")
	if err != nil {
		t.Fatal(err)
	}
	return zipOf(t, "app.py", slices.Concat(src, []byte("\nSECRET = 'victim'\n")))
}
