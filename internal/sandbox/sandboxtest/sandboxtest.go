package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Run runs the suite. newBackend makes a fresh backend for each subtest and
// registers its own cleanup (Close) with t.
func Run(t *testing.T, newBackend func(t *testing.T) sandbox.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b sandbox.Backend)
	}{
		{"ExitStatus", testExitStatus},
		{"Output", testOutput},
		{"OutputToFile", testOutputToFile},
		{"EnvDirTmp", testEnvDirTmp},
		{"FileLimit", testFileLimit},
		{"Lifecycle", testLifecycle},
		{"InvalidSpec", testInvalidSpec},
		{"DuplicateID", testDuplicateID},
		{"ExecFailure", testExecFailure},
		{"StopKillsTree", testStopKillsTree},
		{"ExitKillsRest", testExitKillsRest},
		{"MemoryLimitOOM", testMemoryLimitOOM},
		{"PidsLimit", testPidsLimit},
		{"Stats", testStats},
		{"Delete", testDelete},
		{"Concurrent", testConcurrent},
		{"NoLeaks", testNoLeaks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			tc.fn(t, b)
		})
	}
}

var seq atomic.Int64

// newSpec returns a spec with a fresh ID, a TmpDir in a test temp dir and a
// marker in the environment that findMarked uses to find every process of
// the sandbox in /proc.
func newSpec(t *testing.T, argv ...string) (sandbox.Spec, string) {
	t.Helper()
	marker := fmt.Sprintf("%d-%d-%d", os.Getpid(), seq.Add(1), time.Now().UnixNano())
	spec := sandbox.Spec{
		ID:     "st-" + marker,
		Argv:   argv,
		Env:    []string{"PATH=/usr/local/bin:/usr/bin:/bin", "KILN_SANDBOXTEST=" + marker},
		TmpDir: filepath.Join(t.TempDir(), "tmp"),
	}
	t.Cleanup(func() { killMarked(marker) })
	return spec, marker
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// create makes a sandbox that is deleted when the test ends.
func create(t *testing.T, b sandbox.Backend, spec sandbox.Spec) sandbox.Sandbox {
	t.Helper()
	s, err := b.Create(ctxT(t, 10*time.Second), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Delete(ctxT(t, 20*time.Second)); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	return s
}

// run creates, starts and waits for a sandbox.
func run(t *testing.T, b sandbox.Backend, spec sandbox.Spec) (sandbox.Sandbox, sandbox.ExitStatus) {
	t.Helper()
	s := create(t, b, spec)
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := s.Wait(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return s, st
}

// syncBuffer is a bytes.Buffer safe for the backend's copier goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testExitStatus(t *testing.T, b sandbox.Backend) {
	tests := []struct {
		name   string
		argv   []string
		code   int
		signal syscall.Signal
		str    string
	}{
		{"true", []string{"/bin/true"}, 0, 0, "exit status 0"},
		{"code3", sh("exit 3"), 3, 0, "exit status 3"},
		{"sigterm", sh("kill -TERM $$"), -1, syscall.SIGTERM, "signal: terminated"},
		{"sigkill", sh("kill -KILL $$"), -1, syscall.SIGKILL, "signal: killed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, _ := newSpec(t, tc.argv...)
			_, st := run(t, b, spec)
			if st.Err != nil || st.Code != tc.code || st.Signal != tc.signal || st.OOMKilled {
				t.Fatalf("status = %+v, want code %d signal %v", st, tc.code, tc.signal)
			}
			if got := st.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
		})
	}
}

func testOutput(t *testing.T, b sandbox.Backend) {
	t.Run("separate", func(t *testing.T) {
		var out, errb syncBuffer
		spec, _ := newSpec(t, sh("echo out; echo err >&2; head -c 1048576 /dev/zero | tr '\\000' a")...)
		spec.Stdout, spec.Stderr = &out, &errb
		s, st := run(t, b, spec)
		if !st.Success() {
			t.Fatalf("status %v", st)
		}
		select {
		case <-s.Done():
		default:
			t.Fatal("Done not closed after Wait returned")
		}
		want := "out\n" + strings.Repeat("a", 1<<20)
		if got := out.String(); got != want {
			t.Errorf("stdout: got %d bytes (prefix %q), want %d", len(got), got[:min(len(got), 10)], len(want))
		}
		if got := errb.String(); got != "err\n" {
			t.Errorf("stderr = %q", got)
		}
	})
	t.Run("combined-in-order", func(t *testing.T) {
		var both syncBuffer
		spec, _ := newSpec(t, sh("echo a; echo b >&2; echo c; echo d >&2")...)
		spec.Stdout, spec.Stderr = &both, &both
		if _, st := run(t, b, spec); !st.Success() {
			t.Fatalf("status %v", st)
		}
		if got := both.String(); got != "a\nb\nc\nd\n" {
			t.Errorf("combined = %q", got)
		}
	})
	t.Run("failing-writer", func(t *testing.T) {
		// A writer that fails must not leave the sandbox blocked on a full pipe.
		spec, _ := newSpec(t, sh("head -c 4194304 /dev/zero")...)
		spec.Stdout = failingWriter{}
		if _, st := run(t, b, spec); !st.Success() {
			t.Fatalf("status %v", st)
		}
	})
	t.Run("discarded", func(t *testing.T) {
		spec, _ := newSpec(t, sh("echo out; echo err >&2")...)
		if _, st := run(t, b, spec); !st.Success() {
			t.Fatalf("status %v", st)
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("sink broken") }

func testOutputToFile(t *testing.T, b sandbox.Backend) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec, _ := newSpec(t, sh("echo to-file")...)
	spec.Stdout = f
	if _, st := run(t, b, spec); !st.Success() {
		t.Fatalf("status %v", st)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || string(got) != "to-file\n" {
		t.Fatalf("file = %q, %v", got, err)
	}
}

func testEnvDirTmp(t *testing.T, b sandbox.Backend) {
	dir := t.TempDir()
	var out syncBuffer
	spec, _ := newSpec(t, sh(`echo "$FOO"; pwd; echo "$TMPDIR"; touch "$TMPDIR/x" && echo tmp-writable; echo "${HOME-unset}"`)...)
	spec.Env = append(spec.Env, "FOO=bar baz", "TMPDIR=/not/this")
	spec.Dir = dir
	if sandbox.IsIsolated(b) {
		spec.Mounts = []sandbox.Mount{{Source: dir, Target: dir}}
	}
	spec.Stdout = &out
	s := create(t, b, spec)
	fi, err := os.Stat(spec.TmpDir)
	if err != nil {
		t.Fatalf("TmpDir after Create: %v", err)
	}
	if fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Errorf("TmpDir mode = %v, want drwx------", fi.Mode())
	}
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Wait(ctxT(t, 10*time.Second)); err != nil || !st.Success() {
		t.Fatalf("Wait = %v, %v", st, err)
	}
	want := strings.Join([]string{"bar baz", dir, spec.TmpDir, "tmp-writable", "unset"}, "\n") + "\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// testFileLimit: Lambda's limit of 1024 open files, soft and hard. The
// check waits a moment: a backend may apply it just after the exec.
func testFileLimit(t *testing.T, b sandbox.Backend) {
	var out syncBuffer
	spec, _ := newSpec(t, sh("sleep 0.1; ulimit -Sn; ulimit -Hn")...)
	spec.Stdout = &out
	if _, st := run(t, b, spec); !st.Success() {
		t.Fatalf("status %v", st)
	}
	if got := out.String(); got != "1024\n1024\n" {
		t.Errorf("soft and hard file limits = %q, want 1024 and 1024", got)
	}
}

func testLifecycle(t *testing.T, b sandbox.Backend) {
	t.Run("wait-before-start", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/true")
		s := create(t, b, spec)
		if _, err := s.Wait(ctxT(t, time.Second)); !errors.Is(err, sandbox.ErrNotStarted) {
			t.Errorf("Wait before Start = %v, want ErrNotStarted", err)
		}
		if s.Pid() != 0 {
			t.Errorf("Pid before Start = %d", s.Pid())
		}
		if s.ID() != spec.ID {
			t.Errorf("ID = %q, want %q", s.ID(), spec.ID)
		}
	})
	t.Run("start-twice", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/true")
		s, _ := run(t, b, spec)
		if err := s.Start(ctxT(t, time.Second)); !errors.Is(err, sandbox.ErrAlreadyStarted) {
			t.Errorf("second Start = %v, want ErrAlreadyStarted", err)
		}
	})
	t.Run("stop-before-start", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/true")
		s := create(t, b, spec)
		if err := s.Stop(ctxT(t, time.Second)); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := s.Start(ctxT(t, time.Second)); err == nil {
			t.Error("Start after Stop succeeded")
		}
	})
	t.Run("wait-ctx", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/sleep", "1000")
		s := create(t, b, spec)
		if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if s.Pid() <= 0 {
			t.Errorf("Pid = %d", s.Pid())
		}
		if _, err := s.Wait(ctxT(t, 50*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait = %v, want deadline exceeded", err)
		}
		if err := s.Stop(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		st, err := s.Wait(ctxT(t, time.Second))
		if err != nil || st.Signal != syscall.SIGKILL {
			t.Errorf("after Stop: %v, %v; want signal: killed", st, err)
		}
		if err := s.Stop(ctxT(t, time.Second)); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
	t.Run("start-cancelled", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/true")
		s := create(t, b, spec)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Start(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Start(cancelled) = %v", err)
		}
	})
}

func testInvalidSpec(t *testing.T, b sandbox.Backend) {
	good, _ := newSpec(t, "/bin/true")
	tests := []struct {
		name string
		mod  func(s *sandbox.Spec)
	}{
		{"empty-id", func(s *sandbox.Spec) { s.ID = "" }},
		{"bad-id", func(s *sandbox.Spec) { s.ID = "a/b" }},
		{"dot-id", func(s *sandbox.Spec) { s.ID = ".." }},
		{"no-argv", func(s *sandbox.Spec) { s.Argv = nil }},
		{"relative-argv0", func(s *sandbox.Spec) { s.Argv = []string{"true"} }},
		{"relative-dir", func(s *sandbox.Spec) { s.Dir = "x" }},
		{"root-tmp", func(s *sandbox.Spec) { s.TmpDir = "/" }},
		{"negative-memory", func(s *sandbox.Spec) { s.MemoryBytes = -1 }},
		{"bad-env", func(s *sandbox.Spec) { s.Env = []string{"NOEQUALS"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			tc.mod(&spec)
			s, err := b.Create(ctxT(t, time.Second), spec)
			if !errors.Is(err, sandbox.ErrInvalidSpec) {
				if s != nil {
					_ = s.Delete(ctxT(t, 10*time.Second))
				}
				t.Fatalf("Create = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func testDuplicateID(t *testing.T, b sandbox.Backend) {
	spec, _ := newSpec(t, "/bin/true")
	s := create(t, b, spec)
	dup := spec
	dup.TmpDir = filepath.Join(t.TempDir(), "other")
	if _, err := b.Create(ctxT(t, time.Second), dup); !errors.Is(err, sandbox.ErrExists) {
		t.Errorf("duplicate Create = %v, want ErrExists", err)
	}
	if err := s.Delete(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The ID is free again once deleted.
	create(t, b, dup)
}

func testExecFailure(t *testing.T, b sandbox.Backend) {
	spec, _ := newSpec(t, "/nonexistent/bootstrap")
	s := create(t, b, spec)
	err := s.Start(ctxT(t, 10*time.Second))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Start = %v, want not-exist", err)
	}
	if err := s.Delete(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Delete after failed Start: %v", err)
	}
}

// treeScript starts a child and a double-forked, setsid'd daemon, records
// their pids in $TMPDIR and waits.
const treeScript = `
sleep 1000 & echo $! > "$TMPDIR/child.tmp"; mv "$TMPDIR/child.tmp" "$TMPDIR/child"
( setsid /bin/sh -c 'echo $$ > "$TMPDIR/daemon.tmp"; mv "$TMPDIR/daemon.tmp" "$TMPDIR/daemon"; exec sleep 1000' & )
wait`

func startTree(t *testing.T, b sandbox.Backend) (sandbox.Sandbox, string, []int) {
	spec, marker := newSpec(t, sh(treeScript)...)
	s := create(t, b, spec)
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	pids := []int{mainPid(t, b, s, marker), hostPid(b, s, readPidFile(t, filepath.Join(spec.TmpDir, "child"))), hostPid(b, s, readPidFile(t, filepath.Join(spec.TmpDir, "daemon")))}
	for _, p := range pids {
		// A process in the middle of exec briefly has no environment to read.
		for end := time.Now().Add(2 * time.Second); !isMarked(p, marker); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("pid %d not running as part of the sandbox", p)
			}
		}
	}
	if sid, _ := sessionOf(pids[2]); sid != pids[2] {
		t.Fatalf("daemon %d did not start its own session (sid %d)", pids[2], sid)
	}
	return s, marker, pids
}

func testStopKillsTree(t *testing.T, b sandbox.Backend) {
	caps := sandbox.CapabilitiesOf(b)
	s, marker, pids := startTree(t, b)
	if err := s.Stop(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if !caps.KillDetached {
		pids = pids[:2]
	}
	waitGone(t, pids, marker, caps.KillDetached)
}

// testExitKillsRest: when the main process exits, the rest of the sandbox
// dies with it.
func testExitKillsRest(t *testing.T, b sandbox.Backend) {
	caps := sandbox.CapabilitiesOf(b)
	spec, marker := newSpec(t, sh(`sleep 1000 & echo $! > "$TMPDIR/child.tmp"; mv "$TMPDIR/child.tmp" "$TMPDIR/child"
( setsid /bin/sh -c 'echo $$ > "$TMPDIR/daemon.tmp"; mv "$TMPDIR/daemon.tmp" "$TMPDIR/daemon"; exec sleep 1000' & )
while [ ! -e "$TMPDIR/daemon" ]; do sleep 0.01; done
exit 7`)...)
	s, st := run(t, b, spec)
	if st.Code != 7 {
		t.Fatalf("status %v, want exit status 7", st)
	}
	// Isolated sandboxes' pids are their own namespace's; once they are
	// gone they cannot be translated, and the marker search covers them.
	pids := []int{s.Pid(), hostPid(b, s, readPidFile(t, filepath.Join(spec.TmpDir, "child")))}
	if caps.KillDetached {
		pids = append(pids, hostPid(b, s, readPidFile(t, filepath.Join(spec.TmpDir, "daemon"))))
	}
	waitGone(t, pids, marker, caps.KillDetached)
}

func testMemoryLimitOOM(t *testing.T, b sandbox.Backend) {
	if !sandbox.CapabilitiesOf(b).MemoryLimit {
		t.Skip("backend does not enforce memory limits")
	}
	const limit = 32 << 20
	// tail buffers a line it never finishes: it grows until killed.
	spec, _ := newSpec(t, "/usr/bin/tail", "/dev/zero")
	spec.MemoryBytes = limit
	s, st := run(t, b, spec)
	if !st.OOMKilled || st.Signal != syscall.SIGKILL {
		t.Fatalf("status = %+v (%v), want OOMKilled by SIGKILL", st, st)
	}
	if got := st.String(); got != "signal: killed" {
		t.Errorf("String() = %q", got)
	}
	stats, err := s.Stats(ctxT(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if stats.OOMKills == 0 || stats.MaxMemoryBytes < limit*9/10 || stats.MaxMemoryBytes > limit+(1<<20) {
		t.Errorf("stats after OOM = %+v, want ≥1 kill and a peak near %d", stats, limit)
	}
	// Below the limit nothing is killed.
	spec2, _ := newSpec(t, sh("head -c 8388608 /dev/zero | tail | wc -c")...)
	spec2.MemoryBytes = limit
	var out syncBuffer
	spec2.Stdout = &out
	if _, st := run(t, b, spec2); !st.Success() || st.OOMKilled || strings.TrimSpace(out.String()) != "8388608" {
		t.Errorf("within limit: %+v, output %q", st, out.String())
	}
}

func testPidsLimit(t *testing.T, b sandbox.Backend) {
	if !sandbox.CapabilitiesOf(b).PidsLimit {
		t.Skip("backend does not enforce a pids limit")
	}
	const pidsMax = 24
	spec, marker := newSpec(t, sh(`f() { f | f & }; f; while :; do sleep 1; done`)...)
	spec.PidsMax = pidsMax
	s := create(t, b, spec)
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	peak := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		peak = max(peak, len(findMarked(marker)))
	}
	if peak > pidsMax {
		t.Errorf("saw %d processes with pids limit %d", peak, pidsMax)
	}
	if err := s.Stop(ctxT(t, 15*time.Second)); err != nil {
		t.Fatalf("Stop of a fork bomb: %v", err)
	}
	waitGone(t, nil, marker, true)
	// The host can still fork.
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Errorf("host fork after bomb: %v", err)
	}
}

func testStats(t *testing.T, b sandbox.Backend) {
	caps := sandbox.CapabilitiesOf(b)
	const alloc = 64 << 20
	// tail holds all 64 MiB (no newline), then the shell waits for a
	// signal to go on, so stats are read while it runs and after.
	spec, _ := newSpec(t, sh(`head -c 67108864 /dev/zero | tail >/dev/null; touch "$TMPDIR/phase1"; while [ ! -e "$TMPDIR/go" ]; do sleep 0.01; done; head -c 4194304 /dev/zero | tail >/dev/null`)...)
	spec.MemoryBytes = 256 << 20
	s := create(t, b, spec)
	if err := s.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(spec.TmpDir, "phase1"))
	st1, err := s.Stats(ctxT(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if caps.UsageStats {
		if st1.MaxMemoryBytes < alloc || st1.MaxMemoryBytes > uint64(spec.MemoryBytes) {
			t.Errorf("peak after 64 MiB = %d, want in [%d, %d]", st1.MaxMemoryBytes, alloc, spec.MemoryBytes)
		}
		if st1.MemoryBytes > st1.MaxMemoryBytes {
			t.Errorf("current %d > peak %d", st1.MemoryBytes, st1.MaxMemoryBytes)
		}
		if st1.CPUUsageNanos == 0 {
			t.Error("no CPU usage")
		}
	}
	if err := s.ResetPeak(ctxT(t, time.Second)); err != nil {
		t.Fatalf("ResetPeak: %v", err)
	}
	st2, err := s.Stats(ctxT(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st2.MaxMemoryBytes > st1.MaxMemoryBytes {
		t.Errorf("peak grew across ResetPeak: %d → %d", st1.MaxMemoryBytes, st2.MaxMemoryBytes)
	}
	if err := os.WriteFile(filepath.Join(spec.TmpDir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Wait(ctxT(t, 20*time.Second)); err != nil || !st.Success() {
		t.Fatalf("Wait = %v, %v", st, err)
	}
	st3, err := s.Stats(ctxT(t, time.Second))
	if err != nil {
		t.Fatalf("Stats after exit: %v", err)
	}
	if caps.UsageStats && (st3.CPUUsageNanos < st1.CPUUsageNanos || st3.MaxMemoryBytes < 4<<20) {
		t.Errorf("stats after exit = %+v (before %+v)", st3, st1)
	}
	t.Logf("stats: running %+v, after reset %+v, after exit %+v", st1, st2, st3)
}

func testDelete(t *testing.T, b sandbox.Backend) {
	t.Run("running", func(t *testing.T) {
		s, marker, pids := startTree(t, b)
		paths := hostPaths(s)
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("host path before Delete: %v", err)
			}
		}
		if err := s.Delete(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s survives Delete: %v", p, err)
			}
		}
		caps := sandbox.CapabilitiesOf(b)
		if !caps.KillDetached {
			pids = pids[:2]
		}
		waitGone(t, pids, marker, caps.KillDetached)
		if err := s.Delete(ctxT(t, time.Second)); err != nil {
			t.Errorf("second Delete: %v", err)
		}
		if _, err := s.Stats(ctxT(t, time.Second)); !errors.Is(err, sandbox.ErrDeleted) {
			t.Errorf("Stats after Delete = %v, want ErrDeleted", err)
		}
		if err := s.Start(ctxT(t, time.Second)); err == nil {
			t.Error("Start after Delete succeeded")
		}
		if st, err := s.Wait(ctxT(t, time.Second)); err != nil || st.Signal != syscall.SIGKILL {
			t.Errorf("Wait after Delete = %v, %v", st, err)
		}
	})
	t.Run("never-started", func(t *testing.T) {
		spec, _ := newSpec(t, "/bin/true")
		s, err := b.Create(ctxT(t, time.Second), spec)
		if err != nil {
			t.Fatal(err)
		}
		paths := hostPaths(s)
		if err := s.Delete(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s survives Delete: %v", p, err)
			}
		}
	})
}

func hostPaths(s sandbox.Sandbox) []string {
	if r, ok := s.(sandbox.HostPathsReporter); ok {
		return r.HostPaths()
	}
	return nil
}

func testConcurrent(t *testing.T, b sandbox.Backend) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		spec, _ := newSpec(t, sh(`echo "$0"`+"; sleep 0.0$0")...)
		spec.Argv = append(spec.Argv, strconv.Itoa(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var out syncBuffer
				spec.Stdout = &out
				s, err := b.Create(ctx, spec)
				if err != nil {
					return err
				}
				defer s.Delete(ctx)
				if err := s.Start(ctx); err != nil {
					return err
				}
				st, err := s.Wait(ctx)
				if err != nil {
					return err
				}
				if !st.Success() || out.String() != strconv.Itoa(i)+"\n" {
					return fmt.Errorf("sandbox %d: %v, output %q", i, st, out.String())
				}
				return s.Delete(ctx)
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// testNoLeaks runs many create/start/wait/delete cycles and checks that
// the test process's fds and goroutines and the host paths' parent
// directories (e.g. cgroup parents) end where they began.
func testNoLeaks(t *testing.T, b sandbox.Backend) {
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	cycle := func() []string {
		spec, _ := newSpec(t, sh("echo hi")...)
		var out syncBuffer
		spec.Stdout = &out
		spec.Stderr = &out
		s, st := run(t, b, spec)
		if !st.Success() || out.String() != "hi\n" {
			t.Fatalf("cycle: %v %q", st, out.String())
		}
		paths := hostPaths(s)
		if err := s.Delete(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		return paths
	}
	parents := map[string]int{}
	for _, p := range cycle() {
		parents[filepath.Dir(p)] = 0
	}
	for d := range parents {
		parents[d] = countEntries(t, d)
	}
	fds, gor := countFDs(t), runtime.NumGoroutine()
	for range cycles {
		cycle()
	}
	for d, n := range parents {
		if got := countEntries(t, d); got != n {
			t.Errorf("%s: %d entries after %d cycles, %d before", d, got, cycles, n)
		}
	}
	if got := countFDs(t); got > fds {
		t.Errorf("open fds: %d after %d cycles, %d before", got, cycles, fds)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > gor && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > gor {
		t.Errorf("goroutines: %d after %d cycles, %d before", got, cycles, gor)
	}
}

func countEntries(t *testing.T, dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return len(ents)
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// readPidFile waits for a pid file the sandbox writes.
func readPidFile(t *testing.T, path string) int {
	t.Helper()
	waitFile(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", path, b)
	}
	return pid
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

// waitGone waits until none of pids runs as part of the sandbox marked
// marker and, if all, no process carries the marker at all.
func waitGone(t *testing.T, pids []int, marker string, all bool) {
	t.Helper()
	var left []int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		left = left[:0]
		for _, p := range pids {
			if isMarked(p, marker) {
				left = append(left, p)
			}
		}
		if all {
			left = append(left, findMarked(marker)...)
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("processes survive: %v", left)
}

// isMarked reports whether pid is a live (not zombie) process whose
// environment carries the sandbox's marker; a recycled pid will not.
func isMarked(pid int, marker string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.Contains(env, []byte("KILN_SANDBOXTEST="+marker+"\x00"))
}

// findMarked lists the live processes carrying marker.
func findMarked(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if isMarked(pid, marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMarked is the suite's own safety net: whatever a failing backend
// leaves behind does not outlive the test.
func killMarked(marker string) {
	for range 3 {
		pids := findMarked(marker)
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionOf reads the session id from /proc/PID/stat.
func sessionOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which ends at the last ')':
	// state ppid pgrp session ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return 0, fmt.Errorf("malformed stat %q", b)
	}
	return strconv.Atoi(f[3])
}

// mainPid is the host pid of the sandbox's main process: Pid, or for an
// isolating backend, whose Pid is its init, the init's marked child.
func mainPid(t *testing.T, b sandbox.Backend, s sandbox.Sandbox, marker string) int {
	t.Helper()
	if !sandbox.IsIsolated(b) {
		return s.Pid()
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		for _, p := range findMarked(marker) {
			if ppid, _ := statusField(p, "PPid:"); ppid == strconv.Itoa(s.Pid()) {
				return p
			}
		}
	}
	t.Fatalf("no main process below the init %d", s.Pid())
	return 0
}

// hostPid translates a pid a sandbox process wrote (as its pid namespace
// numbers it) into the host's; -1 when no such process runs. Without
// isolation it is the identity.
func hostPid(b sandbox.Backend, s sandbox.Sandbox, pid int) int {
	if !sandbox.IsIsolated(b) {
		return pid
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(s.Pid()) + "/ns/pid")
	if err != nil {
		return -1
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		v, _ := statusField(p, "NSpid:")
		f := strings.Fields(v)
		if len(f) < 2 || f[len(f)-1] != strconv.Itoa(pid) {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l == ns {
			return p
		}
	}
	return -1
}

func statusField(pid int, key string) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, key); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in status of %d", key, pid)
}
