//go:build linux

package linux

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
)

// ErrIsolationUnavailable: this host or binary cannot run isolated sandboxes.
var ErrIsolationUnavailable = errors.New("sandbox isolation unavailable")

// initStartTimeout bounds the init's setup when Start's ctx has no deadline.
const initStartTimeout = 30 * time.Second

// iso is the backend's isolation state.
type iso struct {
	pool       chan *initProc // pre-started inits
	poolStop   chan struct{}
	poolWG     sync.WaitGroup
	poolKick   chan struct{} // wakes the filler: an init was taken or a cold start settled
	fillMu     sync.Mutex    // one refill at a time (pool.go)
	starting   atomic.Int64  // sandboxes between Create and the end of their runtime's init
	lastSettle atomic.Int64  // when one last stopped starting, Unix ns
	initPath   string
	initFile   *os.File // O_PATH: the init is exec'd through it, by a uid that may not walk to initPath
	rootDir    string
	hostNet    int // fd of the host's network namespace, to return to after setns
	base       uint32
	slots      []bool   // guarded by Backend.mu: true = in use
	uidLock    *os.File // holds this server's claim on its uid range (uidrange.go)
	next       int      // guarded by Backend.mu: where the next slot search starts
	resolv     string
	eg         *egress                // nil: loopback only
	groupSeq   atomic.Uint64          // names pooled inits' cgroups, with poolTag
	poolTag    string                 // random, per backend
	listenAddr atomic.Pointer[string] // what the last Listen asked for: opened ahead in new sandboxes
}

// boxIso is a sandbox's isolation state.
type boxIso struct {
	slot   int
	netfd  int // its network namespace, -1 once released
	status *bufio.Reader
	statf  *os.File
	// A listener opened ahead in its network at the address the last
	// Listen asked for (the worker always asks for the same), handed out
	// by Listen; closed before Start if nobody took it. Guarded by the
	// box's mu once the init is claimed.
	preL    net.Listener
	preAddr string
}

func newIso(cfg Config) (_ *iso, err error) {
	if !nsinit.SeccompSupported() {
		return nil, fmt.Errorf("%w: no seccomp syscall list for %s", ErrIsolationUnavailable, runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root", ErrIsolationUnavailable)
	}
	i := &iso{initPath: cfg.InitPath, rootDir: cfg.RootDir, base: cfg.UIDBase}
	if i.initPath == "" {
		p, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
		}
		i.initPath = p
	}
	f, err := os.OpenFile(i.initPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
	}
	i.initFile = f
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	n := cfg.UIDCount
	if n == 0 {
		n = 65536
	}
	if i.base == 0 {
		base, lock, cerr := claimUIDRange(n)
		if cerr != nil {
			return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, cerr)
		}
		i.base, i.uidLock = base, lock
		defer func() {
			if err != nil {
				_ = lock.Close()
			}
		}()
	}
	if n < 2 || uint64(i.base)+uint64(n) >= 1<<32-1 {
		return nil, fmt.Errorf("%w: bad uid range %d+%d", ErrIsolationUnavailable, i.base, n)
	}
	i.slots = make([]bool, n/2)
	pool := cfg.InitPool
	if pool == 0 {
		pool = 2
	}
	i.pool = make(chan *initProc, max(pool, 0))
	i.poolStop = make(chan struct{})
	i.poolKick = make(chan struct{}, 1)
	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
	}
	i.poolTag = hex.EncodeToString(tag[:])
	if i.rootDir == "" {
		i.rootDir = filepath.Join(os.TempDir(), "kiln-sandbox-root")
	}
	if err := os.MkdirAll(i.rootDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
	}
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
	}
	i.hostNet = fd
	i.resolv = sandboxResolvConf()
	if cfg.Egress {
		if i.eg, err = newEgress(cfg, cfg.Logger); err != nil {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("%w: %w", ErrIsolationUnavailable, err)
		}
		i.resolv = i.eg.resolv
	}
	return i, nil
}

// sandboxResolvConf keeps the host's nameserver, search and options lines
// (nothing else of the host's /etc reaches a sandbox).
func sandboxResolvConf() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	var out strings.Builder
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "nameserver" || f[0] == "search" || f[0] == "options") {
			out.WriteString(strings.Join(f, " ") + "\n")
		}
	}
	return out.String()
}

func (i *iso) close() {
	if i.eg != nil {
		i.eg.close()
	}
	if i.uidLock != nil {
		_ = i.uidLock.Close()
	}
	_ = unix.Close(i.hostNet)
	_ = i.initFile.Close()
}

// Isolated implements sandbox.IsolationReporter.
func (b *Backend) Isolated() bool { return b.iso != nil }

// allocSlot reserves a uid pair; the caller holds b.mu.
func (b *Backend) allocSlotLocked() (int, error) {
	n := len(b.iso.slots)
	for k := range n {
		s := (b.iso.next + k) % n
		if !b.iso.slots[s] {
			b.iso.slots[s] = true
			b.iso.next = s + 1
			return s, nil
		}
	}
	return 0, fmt.Errorf("sandbox/linux: all %d uid slots in use", n)
}

func (b *Backend) freeSlot(s int) {
	b.mu.Lock()
	b.iso.slots[s] = false
	b.mu.Unlock()
}

// createIso prepares a sandbox's uid pair and network namespace.
func (b *Backend) createIso(ctx context.Context) (*boxIso, error) {
	b.mu.Lock()
	slot, err := b.allocSlotLocked()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	bi := &boxIso{slot: slot, netfd: -1}
	var nerr error
	err = b.sp.do(ctx, func() bool {
		if nerr = unix.Unshare(unix.CLONE_NEWNET); nerr != nil {
			return false
		}
		bi.netfd, nerr = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if nerr == nil {
			nerr = loopbackUp()
		}
		if a := b.iso.listenAddr.Load(); nerr == nil && a != nil {
			// Best effort: Listen opens one itself if this failed.
			if l, err := (&net.ListenConfig{}).Listen(context.WithoutCancel(ctx), "tcp", *a); err == nil {
				bi.preL, bi.preAddr = l, *a
			}
		}
		return unix.Setns(b.iso.hostNet, unix.CLONE_NEWNET) != nil
	})
	if err == nil {
		err = nerr
	}
	if err == nil && b.iso.eg != nil {
		err = b.iso.eg.attach(slot, bi.netfd)
	}
	if err != nil {
		b.releaseIso(bi)
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return bi, nil
}

func (b *Backend) releaseIso(bi *boxIso) {
	// An egress veth goes with its network namespace, which the kernel
	// tears down in batches once the last descriptor, process and socket
	// in it are gone: deleting it here would cost an RCU grace period
	// (~30 ms) per sandbox. Slots are handed out round-robin, so a name
	// is reused only much later (attach removes a survivor).
	if bi.netfd >= 0 {
		_ = unix.Close(bi.netfd)
		bi.netfd = -1
	}
	bi.dropListener()
	if bi.statf != nil {
		_ = bi.statf.Close()
		bi.statf = nil
	}
	if bi.slot >= 0 {
		b.freeSlot(bi.slot)
		bi.slot = -1
	}
}

func (bi *boxIso) dropListener() {
	if bi.preL != nil {
		_ = bi.preL.Close()
		bi.preL = nil
	}
}

// loopbackUp brings lo up in the calling thread's network namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// Listen implements sandbox.Listener: the socket is made inside the
// sandbox's network namespace, so only the sandbox can reach it.
func (x *box) Listen(ctx context.Context, addr string) (net.Listener, error) {
	if x.iso == nil {
		return nil, fmt.Errorf("sandbox %s: no network of its own", x.spec.ID)
	}
	x.phases.begin()
	defer x.phases.step(PhaseListen)
	x.b.iso.listenAddr.Store(&addr)
	x.mu.Lock()
	fd := x.iso.netfd
	pre := x.iso.preL
	if pre != nil && x.iso.preAddr == addr && x.state == created {
		x.iso.preL = nil
	} else {
		pre = nil
	}
	x.mu.Unlock()
	if fd < 0 {
		return nil, sandbox.ErrDeleted
	}
	if pre != nil {
		return pre, nil
	}
	var l net.Listener
	var lerr error
	err := x.b.sp.do(ctx, func() bool {
		if lerr = unix.Setns(fd, unix.CLONE_NEWNET); lerr != nil {
			return false
		}
		l, lerr = (&net.ListenConfig{}).Listen(context.WithoutCancel(ctx), "tcp", addr)
		return unix.Setns(x.b.iso.hostNet, unix.CLONE_NEWNET) != nil
	})
	if err == nil {
		err = lerr
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: listen %s: %w", x.spec.ID, addr, err)
	}
	return l, nil
}

// detachedMount clones src into a detached, read-only, nosuid, nodev
// mount. Host root makes it here because the init, an unprivileged host uid,
// may not be able to walk to src, and a mount opened in the host's mount
// namespace cannot be bind-mounted from another one; a detached tree can be
// attached anywhere.
func detachedMount(src string, readOnly bool) (*os.File, bool, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, false, err
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, false, fmt.Errorf("open_tree: %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		_ = unix.Close(fd)
		return nil, false, fmt.Errorf("mount_setattr: %w", err)
	}
	return os.NewFile(uintptr(fd), src), fi.IsDir(), nil
}

// HostUID is the host uid the sandbox's runtime runs as (tests use it).
func (x *box) HostUID() int {
	if x.iso == nil {
		return -1
	}
	return int(x.b.iso.base) + 2*x.iso.slot + 1
}

// initProc is a sandbox init started ahead of its sandbox: in its
// namespaces, with its uid slot and network, waiting for its Config.
type initProc struct {
	iso    *boxIso
	cinit  bool           // the C init (nsinit.HelloC): its messages are in nsinit's wire format
	grp    renamableGroup // its own cgroup while pooled (isocgroup.go), or nil
	placed bool           // it is in its sandbox's cgroup already
	pid    int
	pidfd  int // -1 without pidfd support
	sock   *os.File
	statR  *os.File
	status *bufio.Reader
}

// discard kills and reaps an init that never got (or never started) its
// sandbox, and releases its slot and network.
func (b *Backend) discard(p *initProc) {
	_ = unix.Kill(p.pid, unix.SIGKILL)
	reap(p.pid)
	if p.pidfd >= 0 {
		_ = unix.Close(p.pidfd)
	}
	_ = p.sock.Close()
	_ = p.statR.Close()
	if p.grp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		if err := p.grp.destroy(ctx); err != nil {
			b.log.Warn("cannot remove a pooled init's cgroup", "err", err)
		}
		cancel()
		p.grp.close()
		p.grp = nil
	}
	b.releaseIso(p.iso)
}

// spawnInit starts an init: new user, pid, mount, uts and ipc namespaces,
// forked from inside a fresh network namespace, as the root of a fresh uid
// slot, outside any sandbox cgroup (it enters one in Start).
func (b *Backend) spawnInit(ctx context.Context) (_ *initProc, err error) {
	// Recreated if something (a tmp cleaner) removed it.
	if err := os.MkdirAll(b.iso.rootDir, 0o755); err != nil {
		return nil, fmt.Errorf("root mount point: %w", err)
	}
	var grp renamableGroup
	if b.poolGroups() {
		// First, so that a refill's group exists (and host counts are
		// steady) as soon as the refill begins.
		if grp, err = b.makePoolGroup(ctx, int(b.iso.groupSeq.Add(1))); err != nil {
			return nil, fmt.Errorf("init cgroup: %w", err)
		}
		defer func() {
			if err != nil && grp != nil {
				dropGroup(grp)
			}
		}()
	}
	bi, err := b.createIso(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.releaseIso(bi)
		}
	}()
	statR, statW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statW.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		_ = statR.Close()
		return nil, fmt.Errorf("config socket: %w", err)
	}
	sock, child := os.NewFile(uintptr(pair[0]), "init-config"), os.NewFile(uintptr(pair[1]), "init-config")
	defer child.Close()
	dn := b.devnull.Fd()
	files := []uintptr{dn, dn, dn, statW.Fd(), child.Fd(), b.iso.initFile.Fd()}
	// Exec'd through its descriptor: the init runs as an unprivileged host
	// uid that may not be able to walk to the binary's path.
	initExe := "/proc/self/fd/" + strconv.Itoa(nsinit.ExeFD)
	h := int(b.iso.base) + 2*bi.slot
	p := &initProc{iso: bi, pidfd: -1, sock: sock, statR: statR}
	sys := &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
		// The namespace's root and the runtime's user, each a host id of
		// this slot's own.
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: h, Size: 1}, {ContainerID: nsinit.RuntimeUID, HostID: h + 1, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: h, Size: 1}, {ContainerID: nsinit.RuntimeGID, HostID: h + 1, Size: 1}},
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
	}
	if b.pidfd {
		sys.PidFD = &p.pidfd
	}
	attr := &syscall.ProcAttr{Dir: "/", Env: []string{nsinit.EnvMarker + "=" + nsinit.EnvValue}, Files: files, Sys: sys}
	var ferr error
	err = b.sp.do(ctx, func() bool {
		// Forked from inside the sandbox's network namespace: a user
		// namespace's root could not join one the host owns.
		if ferr = unix.Setns(bi.netfd, unix.CLONE_NEWNET); ferr != nil {
			return false
		}
		p.pid, ferr = syscall.ForkExec(initExe, []string{nsinit.Argv0}, attr)
		return unix.Setns(b.iso.hostNet, unix.CLONE_NEWNET) != nil
	})
	// The child's ends go now: the pool holds inits for long, and a
	// descriptor count taken meanwhile should see only what each keeps.
	_ = statW.Close()
	_ = child.Close()
	if err == nil {
		err = ferr
	}
	if err != nil {
		if p.pid > 0 {
			_ = unix.Kill(p.pid, unix.SIGKILL)
			reap(p.pid)
		}
		if p.pidfd >= 0 {
			_ = unix.Close(p.pidfd)
		}
		_ = sock.Close()
		_ = statR.Close()
		return nil, fmt.Errorf("start init: %w", err)
	}
	p.status = bufio.NewReader(statR)
	if grp != nil {
		// Moved now rather than at Start: see isocgroup.go. The init is
		// Kiln's own code until it is claimed, so the moment it spent
		// outside the group does not matter.
		p.grp, grp = grp, nil // discard removes it from here on
		if err = p.grp.enter(p.pid); err != nil {
			b.discard(p)
			return nil, fmt.Errorf("init cgroup: %w", err)
		}
	}
	if err = b.prepareInit(ctx, p); err != nil {
		b.discard(p) // releases bi and grp; the deferred releases are then no-ops
		return nil, fmt.Errorf("prepare init: %w", err)
	}
	return p, nil
}

// prepareInit sends a fresh init the backend-wide part of its config and
// waits until it has built its base root ("ready"), so what the pool holds
// is ready to be claimed and a broken host shows up here, not in a cold
// start.
func (b *Backend) prepareInit(ctx context.Context, p *initProc) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(initStartTimeout)
	}
	_ = p.statR.SetReadDeadline(deadline)
	defer p.statR.SetReadDeadline(time.Time{})
	// The init says first which init it is: the C one (cgo builds) or Go.
	hello, err := p.status.ReadString('\n')
	switch strings.TrimSpace(hello) {
	case nsinit.HelloC:
		p.cinit = true
	case nsinit.HelloGo:
	default:
		return errors.Join(err, fmt.Errorf("unexpected %q", hello))
	}
	prep := &nsinit.Config{RootDir: b.iso.rootDir, Hostname: "localhost", NoFile: nofileLimit, ResolvConf: b.iso.resolv}
	var body []byte
	if p.cinit {
		// The runtime's process is made ahead where the init is in its
		// sandbox's cgroup already (isocgroup.go).
		body, err = nsinit.EncodePrepC(prep, p.grp != nil)
	} else {
		body, err = nsinit.Encode(prep)
	}
	if err != nil {
		return err
	}
	if err := sendConfig(p.sock, body, nil); err != nil {
		return err
	}
	line, err := p.status.ReadString('\n')
	if line == "ready\n" {
		return nil
	}
	if err != nil {
		return err
	}
	return errors.New(strings.TrimSpace(line))
}

// sendConfig sends one message to an init.
func sendConfig(sock *os.File, body []byte, fds []int) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), body, oob, nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	return err
}

// startIsolatedLocked moves the sandbox's init into its cgroups, sends it
// the Config with stdio and mounts, and waits for it to report the runtime
// started. x.mu is held.
func (x *box) startIsolatedLocked(ctx context.Context) error {
	p := x.init
	sio, err := newStdio(x.spec.Stdout, x.spec.Stderr, x.b.devnull)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", x.spec.ID, err)
	}
	fail := func(err error) error {
		x.settle()
		sio.closeAll()
		x.init = nil
		x.b.discard(p) // releases x.iso too
		x.state = stopped
		return fmt.Errorf("sandbox %s: %w", x.spec.ID, err)
	}
	if x.grp != nil && !p.placed {
		if err := x.grp.enter(p.pid); err != nil {
			return fail(err)
		}
		x.phases.step(PhaseCgroupEnter)
	}
	// The sandbox sees no listener it did not ask for.
	x.iso.dropListener()
	cfg := nsinit.Config{Argv: x.spec.Argv, Env: x.env(), Dir: x.spec.Dir, TmpBytes: x.spec.TmpBytes}
	fds := []int{int(sio.child[0].Fd()), int(sio.child[1].Fd()), int(sio.child[2].Fd())}
	var srcs []*os.File
	defer func() {
		for _, f := range srcs {
			_ = f.Close()
		}
	}()
	mounts := slices.Clone(x.spec.Mounts)
	if x.spec.TmpDir != "" {
		mounts = append(mounts, sandbox.Mount{Source: x.spec.TmpDir, Target: x.spec.TmpDir})
	}
	if len(mounts)+3 > nsinit.MaxFDs {
		return fail(fmt.Errorf("%w: %d mounts", sandbox.ErrInvalidSpec, len(mounts)))
	}
	for _, m := range mounts {
		// The TmpDir is the one writable mount, at its host path.
		f, isDir, err := detachedMount(m.Source, m.Source != x.spec.TmpDir)
		if err != nil {
			return fail(fmt.Errorf("mount %s: %w", m.Source, err))
		}
		srcs = append(srcs, f)
		cfg.Mounts = append(cfg.Mounts, nsinit.Mount{FD: len(fds), Target: m.Target, IsDir: isDir})
		fds = append(fds, int(f.Fd()))
	}
	x.phases.step(PhaseMountFDs)
	var body []byte
	if p.cinit {
		body, err = nsinit.EncodeClaimC(&cfg)
	} else {
		body, err = nsinit.Encode(&cfg)
	}
	if err != nil {
		return fail(err)
	}
	err = sendConfig(p.sock, body, fds)
	sentAt := nsinit.Monotonic()
	sio.closeChildEnds()
	runtime.KeepAlive(sio)
	if err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	_ = p.sock.Close()
	x.phases.step(PhaseSend)

	// The init reports "ok <pid>" once the runtime is exec'd, or why not.
	// Read before the wait loop starts, which reads the final status.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(initStartTimeout)
	}
	_ = p.statR.SetReadDeadline(deadline)
	line, rerr := p.status.ReadString('\n')
	_ = p.statR.SetReadDeadline(time.Time{})
	x.iso.statf, x.iso.status = p.statR, p.status
	x.pid = p.pid
	x.state = running
	x.init = nil // the wait loop owns the process now
	sio.startCopying()
	go x.waitLoop(p.pid, p.pidfd, sio)
	if strings.HasPrefix(line, "ok ") {
		if f := strings.Fields(line); len(f) > 2 {
			x.phases.marks(sentAt, nsinit.ParseMarks(f[2:]))
		}
		return nil
	}
	x.killMu.Lock()
	_ = x.killTreeLocked(context.WithoutCancel(ctx))
	x.killMu.Unlock()
	if msg, isErr := strings.CutPrefix(strings.TrimSpace(line), "error "); isErr {
		// "error <errno> <message>": the errno keeps errors.Is working
		// (a missing bootstrap is fs.ErrNotExist, as without isolation).
		code, text, _ := strings.Cut(msg, " ")
		if n, err := strconv.Atoi(code); err == nil && n > 0 {
			text = strings.TrimSuffix(text, ": "+syscall.Errno(n).Error())
			return fmt.Errorf("sandbox %s: init: %s: %w", x.spec.ID, text, syscall.Errno(n))
		}
		return fmt.Errorf("sandbox %s: init: %s", x.spec.ID, msg)
	}
	return fmt.Errorf("sandbox %s: init did not start the runtime: %w", x.spec.ID, errors.Join(rerr, errors.New(strings.TrimSpace(line))))
}

// initStatus replaces the init's own exit status with the runtime's, which
// the init reported before it exited (pid 1 cannot die of its child's
// signal).
func (x *box) initStatus(st sandbox.ExitStatus) sandbox.ExitStatus {
	if x.iso == nil || x.iso.status == nil {
		return st
	}
	_ = x.iso.statf.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	line, _ := x.iso.status.ReadString('\n')
	f := strings.Fields(line)
	if len(f) != 2 {
		return st
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return st
	}
	switch f[0] {
	case "exit":
		return sandbox.ExitStatus{Code: n}
	case "signal":
		return sandbox.ExitStatus{Code: -1, Signal: syscall.Signal(n)}
	}
	return st
}
