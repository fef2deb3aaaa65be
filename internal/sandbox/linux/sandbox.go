//go:build linux

package linux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

const (
	// killTimeout bounds the teardown after the main process exits; only
	// processes stuck in the kernel (D state) can take longer.
	killTimeout = 30 * time.Second
	// drainTimeout bounds output copying after teardown. With cgroups every
	// writer is dead by then and the pipes reach EOF at once; without, a
	// process that escaped the process group may hold a pipe open.
	drainTimeout = time.Second
)

type boxState int

const (
	created boxState = iota
	running
	exited  // the main process is reaped and Done is closed
	stopped // stopped before it ever started
	deleted
)

// box is a sandbox of the linux backend.
type box struct {
	b    *Backend
	spec sandbox.Spec
	grp  group     // nil without cgroups
	iso  *boxIso   // nil without isolation
	init *initProc // isolation: the init waiting for Start; guarded by mu
	log  *slog.Logger
	done chan struct{}

	phases     phaseLog  // where Create, Listen and Start went
	settleOnce sync.Once // isolation: the start is over for the pool's filler (pool.go)

	delMu sync.Mutex // serialises Delete

	capOnce sync.Once // EndInit applies the CPU cap once
	capErr  error

	mu     sync.Mutex // guards the fields below; held for all of Start
	state  boxState
	pid    int
	status sandbox.ExitStatus
	rusage syscall.Rusage // of the main process, once reaped

	killMu sync.Mutex // serialises kills against the reap
	reaped bool       // guarded by killMu
}

var (
	_ sandbox.Sandbox          = (*box)(nil)
	_ sandbox.PeakMemoryReader = (*box)(nil)
	_ sandbox.InitBooster      = (*box)(nil)
)
var _ sandbox.HostPathsReporter = (*box)(nil)

func (x *box) ID() string { return x.spec.ID }

func (x *box) Pid() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.pid
}

func (x *box) Done() <-chan struct{} { return x.done }

// HostPaths implements sandbox.HostPathsReporter.
func (x *box) HostPaths() []string {
	var p []string
	if x.grp != nil {
		p = x.grp.paths()
	}
	if x.spec.TmpDir != "" {
		p = append(p, x.spec.TmpDir)
	}
	return p
}

// Start implements sandbox.Sandbox. The process starts in its own process
// group, inside the sandbox's cgroups from its first instruction (v2:
// CLONE_INTO_CGROUP; v1: see v1Group.spawn), with SIGKILL as its
// parent-death signal, stdin on /dev/null and RLIMIT_NOFILE 1024 (soft and
// hard, as on Lambda). Go cannot set a child's rlimits before its exec, so
// the limit lands microseconds after it: the runtime's first instructions
// may see the limit Kiln was started with. The re-exec'd init of the full
// isolation closes that window.
func (x *box) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch x.state {
	case created:
	case deleted:
		return sandbox.ErrDeleted
	default:
		return sandbox.ErrAlreadyStarted
	}
	x.phases.begin()
	if x.b.iso != nil {
		if x.init == nil {
			return sandbox.ErrAlreadyStarted
		}
		return x.startIsolatedLocked(ctx)
	}
	sio, err := newStdio(x.spec.Stdout, x.spec.Stderr, x.b.devnull)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", x.spec.ID, err)
	}
	dir := x.spec.Dir
	if dir == "" {
		dir = "/"
	}
	attr := &syscall.ProcAttr{Dir: dir, Env: x.env(), Files: sio.fds()}
	pidfd := -1
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if x.b.pidfd {
		sys.PidFD = &pidfd
	}
	fork := func(s *syscall.SysProcAttr) (int, error) {
		attr.Sys = s
		return syscall.ForkExec(x.spec.Argv[0], x.spec.Argv, attr)
	}
	var pid int
	var serr, lerr error
	err = x.b.sp.do(ctx, func() bool {
		var tainted bool
		if x.grp != nil {
			pid, tainted, serr = x.grp.spawn(fork, sys)
		} else {
			pid, serr = fork(sys)
		}
		if serr == nil {
			// As early as Go allows: right after the exec, on this thread.
			// The pid cannot have been reaped yet (the waiter has not
			// started); ESRCH means it already exited.
			lerr = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: nofileLimit, Max: nofileLimit}, nil)
		}
		return tainted
	})
	sio.closeChildEnds()
	runtime.KeepAlive(sio)
	x.phases.step(PhaseFork)
	if err == nil {
		err = serr
	}
	if err != nil {
		if pid > 0 {
			// Forked but not properly placed: it must not run.
			_ = unix.Kill(pid, unix.SIGKILL)
			reap(pid)
			if pidfd >= 0 {
				_ = unix.Close(pidfd)
			}
		}
		sio.closeAll()
		return fmt.Errorf("sandbox %s: start %s: %w", x.spec.ID, x.spec.Argv[0], err)
	}
	x.pid = pid
	x.state = running
	sio.startCopying()
	go x.waitLoop(pid, pidfd, sio)
	if lerr != nil && lerr != unix.ESRCH {
		x.killMu.Lock()
		_ = x.killTreeLocked(ctx)
		x.killMu.Unlock()
		return fmt.Errorf("sandbox %s: set file limit: %w", x.spec.ID, lerr)
	}
	x.log.Debug("sandbox started", "pid", pid)
	return nil
}

// env is Spec.Env with TMPDIR pointing at the sandbox's TmpDir.
func (x *box) env() []string {
	env := make([]string, 0, len(x.spec.Env)+1)
	for _, e := range x.spec.Env {
		if x.spec.TmpDir != "" && strings.HasPrefix(e, "TMPDIR=") {
			continue
		}
		env = append(env, e)
	}
	if x.spec.TmpDir != "" {
		env = append(env, "TMPDIR="+x.spec.TmpDir)
	}
	return env
}

// waitLoop owns the main process from Start to reap: it waits for the exit
// without reaping (so the pid and process group id stay ours), kills what
// else still runs in the sandbox, reaps, lets the output drain and closes
// Done.
func (x *box) waitLoop(pid, pidfd int, sio *stdio) {
	defer close(x.done)
	var pf *os.File
	if pidfd >= 0 {
		if unix.SetNonblock(pidfd, true) == nil {
			pf = os.NewFile(uintptr(pidfd), "pidfd")
		} else {
			_ = unix.Close(pidfd)
		}
	}
	waitExit(pid, pf)

	x.killMu.Lock()
	kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	kerr := x.killTreeLocked(kctx)
	cancel()
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	rerr := wait4(pid, &ws, &ru)
	x.reaped = true
	x.killMu.Unlock()
	if pf != nil {
		_ = pf.Close()
	}
	if kerr != nil {
		x.log.Warn("sandbox teardown incomplete", "err", kerr)
	}
	sio.drain(drainTimeout)

	st := x.initStatus(exitStatusOf(ws, rerr))
	if x.grp != nil {
		st.OOMKilled = x.grp.oomKilled(st.Signal == syscall.SIGKILL)
	}
	x.mu.Lock()
	x.status, x.rusage = st, ru
	if x.state == running {
		x.state = exited
	}
	x.mu.Unlock()
	if x.b.iso != nil {
		x.settle()
	}
	x.log.Debug("sandbox exited", "pid", pid, "status", st.String(), "oom", st.OOMKilled)
}

// waitExit blocks until pid has exited, leaving it unreaped. With a pidfd
// the wait parks in the netpoller (no thread per sandbox); otherwise a
// thread blocks in waitid.
func waitExit(pid int, pf *os.File) {
	if pf != nil {
		if rc, err := pf.SyscallConn(); err == nil {
			err = rc.Read(func(fd uintptr) bool {
				var info unix.Siginfo
				for {
					err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
					switch {
					case err == unix.EINTR:
						continue
					case err == unix.EAGAIN:
						return false
					case err != nil:
						return true // nothing to wait for; the reap reports it
					}
					return info.Signo != 0
				}
			})
			if err == nil {
				return
			}
		}
	}
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
}

func wait4(pid int, ws *syscall.WaitStatus, ru *syscall.Rusage) error {
	for {
		_, err := syscall.Wait4(pid, ws, 0, ru)
		if err != syscall.EINTR {
			return err
		}
	}
}

func reap(pid int) {
	var ws syscall.WaitStatus
	_ = wait4(pid, &ws, nil)
}

func exitStatusOf(ws syscall.WaitStatus, err error) sandbox.ExitStatus {
	switch {
	case err != nil:
		return sandbox.ExitStatus{Code: -1, Err: err}
	case ws.Exited():
		return sandbox.ExitStatus{Code: ws.ExitStatus()}
	case ws.Signaled():
		return sandbox.ExitStatus{Code: -1, Signal: ws.Signal()}
	default:
		return sandbox.ExitStatus{Code: -1, Err: fmt.Errorf("unexpected wait status %#x", uint32(ws))}
	}
}

// killTreeLocked kills every process of the sandbox. The caller holds
// killMu, so the main process is not reaped meanwhile: alive or a zombie, it
// keeps its pid and its process group id from being reused, which makes
// kill(-pgid) safe.
func (x *box) killTreeLocked(ctx context.Context) error {
	if x.pid > 0 && !x.reaped {
		_ = unix.Kill(-x.pid, unix.SIGKILL)
	}
	if x.grp == nil {
		return nil
	}
	return x.grp.killAll(ctx)
}

// Wait implements sandbox.Sandbox.
func (x *box) Wait(ctx context.Context) (sandbox.ExitStatus, error) {
	if x.Pid() == 0 {
		return sandbox.ExitStatus{}, sandbox.ErrNotStarted
	}
	select {
	case <-x.done:
	case <-ctx.Done():
		return sandbox.ExitStatus{}, ctx.Err()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.status, nil
}

// Stop implements sandbox.Sandbox.
func (x *box) Stop(ctx context.Context) error {
	x.mu.Lock()
	switch x.state {
	case created:
		x.state = stopped
		x.mu.Unlock()
		return nil
	case running:
		x.mu.Unlock()
	default:
		x.mu.Unlock()
		return nil
	}
	x.killMu.Lock()
	err := x.killTreeLocked(ctx)
	x.killMu.Unlock()
	if err != nil {
		return fmt.Errorf("sandbox %s: stop: %w", x.spec.ID, err)
	}
	select {
	case <-x.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete implements sandbox.Sandbox.
func (x *box) Delete(ctx context.Context) error {
	x.delMu.Lock()
	defer x.delMu.Unlock()
	x.mu.Lock()
	st := x.state
	x.mu.Unlock()
	if st == deleted {
		return nil
	}
	if err := x.Stop(ctx); err != nil {
		return err
	}
	if x.grp != nil {
		if err := x.grp.destroy(ctx); err != nil {
			return fmt.Errorf("sandbox %s: remove cgroup: %w", x.spec.ID, err)
		}
	}
	if x.spec.TmpDir != "" {
		if err := os.RemoveAll(x.spec.TmpDir); err != nil {
			return fmt.Errorf("sandbox %s: remove tmp dir: %w", x.spec.ID, err)
		}
	}
	if x.grp != nil {
		x.grp.close()
	}
	x.mu.Lock()
	if x.init != nil {
		x.b.discard(x.init) // never started
		x.init = nil
	}
	if x.iso != nil {
		x.b.releaseIso(x.iso)
	}
	if x.b.iso != nil {
		x.settle()
	}
	x.state = deleted
	x.mu.Unlock()
	x.b.forget(x.spec.ID)
	if x.b.iso != nil {
		x.b.topUp(ctx)
	}
	x.log.Debug("sandbox deleted")
	return nil
}

// Stats implements sandbox.Sandbox. Without cgroups it covers the main
// process only: VmHWM/VmRSS while it runs, its rusage once reaped.
func (x *box) Stats(ctx context.Context) (sandbox.Stats, error) {
	if err := ctx.Err(); err != nil {
		return sandbox.Stats{}, err
	}
	x.mu.Lock()
	st, pid, ru := x.state, x.pid, x.rusage
	x.mu.Unlock()
	switch {
	case st == deleted:
		return sandbox.Stats{}, sandbox.ErrDeleted
	case x.grp != nil:
		s, err := x.grp.stats()
		if err != nil {
			return s, fmt.Errorf("sandbox %s: stats: %w", x.spec.ID, err)
		}
		return s, nil
	case st == exited:
		return sandbox.Stats{
			MaxMemoryBytes: uint64(ru.Maxrss) * 1024,
			CPUUsageNanos:  uint64(ru.Utime.Nano() + ru.Stime.Nano()),
		}, nil
	case st == running:
		b, err := readFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			return sandbox.Stats{}, nil // exiting right now
		}
		hwm, _ := kvLookup(b, "VmHWM")
		rss, _ := kvLookup(b, "VmRSS")
		return sandbox.Stats{MaxMemoryBytes: hwm * 1024, MemoryBytes: rss * 1024}, nil
	}
	return sandbox.Stats{}, nil
}

// PeakMemory implements sandbox.PeakMemoryReader.
func (x *box) PeakMemory(ctx context.Context) (uint64, error) {
	if x.grp == nil {
		st, err := x.Stats(ctx)
		return st.MaxMemoryBytes, err
	}
	v, err := x.grp.peakMemory()
	if err != nil {
		return 0, fmt.Errorf("sandbox %s: %w", x.spec.ID, err)
	}
	return v, nil
}

// EndInit implements sandbox.InitBooster.
func (x *box) EndInit(ctx context.Context) error {
	if x.b.iso != nil {
		x.settle()
	}
	if x.grp == nil || !x.spec.InitCPUBoost || x.b.cfg.NoCPUQuota {
		return nil
	}
	x.capOnce.Do(func() { x.capErr = x.grp.setCPUCap(x.spec.CPUWeightMB) })
	if x.capErr != nil {
		return fmt.Errorf("sandbox %s: cpu cap: %w", x.spec.ID, x.capErr)
	}
	return nil
}

// ResetPeak implements sandbox.Sandbox.
func (x *box) ResetPeak(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	x.mu.Lock()
	st := x.state
	x.mu.Unlock()
	if st == deleted {
		return sandbox.ErrDeleted
	}
	if x.grp == nil {
		return nil
	}
	if err := x.grp.resetPeak(); err != nil {
		return fmt.Errorf("sandbox %s: reset peak: %w", x.spec.ID, err)
	}
	return nil
}

// stdio is the main process's fds 0-2 and the copying of its output.
type stdio struct {
	child  [3]*os.File // what the child gets as fds 0, 1, 2
	owned  []*os.File  // pipe write ends made here, closed after the fork
	copies []copyJob
	wg     sync.WaitGroup
}

type copyJob struct {
	r *os.File
	w io.Writer
}

func newStdio(stdout, stderr io.Writer, devnull *os.File) (*stdio, error) {
	s := &stdio{}
	s.child[0] = devnull
	var err error
	if s.child[1], err = s.sink(stdout, devnull); err != nil {
		return nil, err
	}
	if sameWriter(stdout, stderr) {
		s.child[2] = s.child[1]
	} else if s.child[2], err = s.sink(stderr, devnull); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
}

// sink is the file the child writes to for w: /dev/null, w itself if it is
// a file, or a pipe copied into w.
func (s *stdio) sink(w io.Writer, devnull *os.File) (*os.File, error) {
	if w == nil {
		return devnull, nil
	}
	if f, ok := w.(*os.File); ok {
		if f == nil {
			return devnull, nil
		}
		return f, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	s.owned = append(s.owned, pw)
	s.copies = append(s.copies, copyJob{r: r, w: w})
	return pw, nil
}

// sameWriter reports whether a and b are the same pointer, so one pipe can
// carry both streams in order.
func sameWriter(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}

// fds returns the child's descriptors; Fd also switches each file to
// blocking mode, which the child expects.
func (s *stdio) fds() []uintptr {
	return []uintptr{s.child[0].Fd(), s.child[1].Fd(), s.child[2].Fd()}
}

func (s *stdio) closeChildEnds() {
	for _, f := range s.owned {
		_ = f.Close()
	}
	s.owned = nil
}

func (s *stdio) closeAll() {
	s.closeChildEnds()
	for _, c := range s.copies {
		_ = c.r.Close()
	}
	s.copies = nil
}

func (s *stdio) startCopying() {
	for _, c := range s.copies {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			copyOut(c.r, c.w)
		}()
	}
}

// drain waits for the copiers, giving them at most d to reach EOF, then
// closes the read ends.
func (s *stdio) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for _, c := range s.copies {
		_ = c.r.SetReadDeadline(deadline)
	}
	s.wg.Wait()
	for _, c := range s.copies {
		_ = c.r.Close()
	}
}

// copyOut copies until EOF. When w fails it keeps reading and discards, so
// the sandbox never blocks on a full pipe.
func copyOut(r *os.File, w io.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}
