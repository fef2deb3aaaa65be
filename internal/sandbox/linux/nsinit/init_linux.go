package nsinit

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main runs the init and never returns.
func Main() {
	// Everything below (namespaces' caps, no_new_privs, the seccomp filter)
	// is per thread; the runtime is forked from this one.
	runtime.LockOSThread()
	status := os.NewFile(StatusFD, "status")
	unix.CloseOnExec(StatusFD)
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "kiln sandbox init: %v\n", err)
		var errno syscall.Errno
		errors.As(err, &errno)
		fmt.Fprintf(status, "error %d %s\n", int(errno), strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(126)
	}
	os.Clearenv()
	fmt.Fprint(status, HelloGo+"\n")
	// First the backend-wide part: the base root is built while the init
	// waits in the pool, so a sandbox that claims it pays only for its own
	// mounts.
	prep, err := receivePrep()
	if err != nil {
		fail(err)
	}
	if prep == nil {
		os.Exit(0) // the backend closed without using this init
	}
	if err := prepare(prep); err != nil {
		fail(err)
	}
	fmt.Fprint(status, "ready\n")
	// The init may wait here a while: the backend starts inits ahead of
	// need and sends each its sandbox when one is wanted.
	cfg, err := receive()
	if err != nil {
		fail(err)
	}
	if cfg == nil {
		os.Exit(0)
	}
	var tl timeline
	tl.mark(PhaseWake)
	pid, err := setup(prep, cfg, &tl)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(status, "ok %d%s\n", pid, tl.String())
	// pid 1 stays for the sandbox's life and its memory is charged to the
	// function: give back what set-up (and the binary's package
	// initialisation) left behind, and keep the heap small from here on.
	debug.SetGCPercent(10)
	debug.FreeOSMemory()
	os.Exit(supervise(pid, status))
}

// recvConfig reads one message from ConfigFD: its body and the descriptors
// sent with it (close-on-exec). n == 0 without descriptors: the backend
// closed the socket.
func recvConfig() (string, []int, error) {
	buf := make([]byte, maxConfig)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(ConfigFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("receive config: %w", err)
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return "", nil, fmt.Errorf("receive config: %w", err)
		}
		for i := range msgs {
			f, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				return "", nil, fmt.Errorf("receive config: %w", err)
			}
			fds = append(fds, f...)
		}
	}
	return string(buf[:n]), fds, nil
}

// receivePrep reads the first message, the backend-wide part of the
// config. nil, nil: the backend closed the socket.
func receivePrep() (*Config, error) {
	body, fds, err := recvConfig()
	if err != nil {
		return nil, err
	}
	if len(fds) > 0 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, errors.New("receive config: descriptors with the prepare message")
	}
	if body == "" {
		return nil, nil
	}
	return decodePrep(body)
}

// receive reads the Config and its descriptors (stdin, stdout, stderr, then
// one per FD mount) from ConfigFD, puts the stdio in place and maps the
// mounts' indexes to descriptors. nil, nil: the backend closed the socket.
func receive() (*Config, error) {
	body, fds, err := recvConfig()
	if err != nil {
		return nil, err
	}
	if body == "" && len(fds) == 0 {
		return nil, nil
	}
	_ = unix.Close(ConfigFD)
	c, err := decode(body)
	if err != nil {
		return nil, err
	}
	if len(fds) < 3 {
		return nil, fmt.Errorf("receive config: %d descriptors, want stdio and mounts", len(fds))
	}
	for i := range 3 {
		if err := unix.Dup3(fds[i], i, 0); err != nil {
			return nil, fmt.Errorf("stdio: %w", err)
		}
		_ = unix.Close(fds[i])
	}
	for i := range c.Mounts {
		k := c.Mounts[i].FD
		if k < 3 || k >= len(fds) {
			return nil, fmt.Errorf("mount %s: descriptor %d not sent", c.Mounts[i].Target, k)
		}
		c.Mounts[i].FD = fds[k]
	}
	return c, nil
}

// setup finishes the sandbox the prepared root started and starts the
// runtime; it returns its pid.
func setup(prep, c *Config, tl *timeline) (int, error) {
	// The cgroup namespace is made here rather than at clone time so that
	// its root is the sandbox's cgroup, which the init is in by now.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return 0, fmt.Errorf("unshare cgroup: %w", err)
	}
	tl.mark(PhaseCgroup)
	if err := finishRoot(c); err != nil {
		return 0, err
	}
	tl.mark(PhaseMounts)
	if err := installSeccomp(); err != nil {
		return 0, fmt.Errorf("seccomp: %w", err)
	}
	tl.mark(PhaseSeccomp)
	// Nothing the init inherited (mount sources, its own binary, the
	// status pipe) may reach the runtime.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, fmt.Errorf("close_range: %w", err)
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	pid, err := syscall.ForkExec(c.Argv[0], c.Argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   c.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: RuntimeUID, Gid: RuntimeGID, Groups: []uint32{}},
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", c.Argv[0], err)
	}
	tl.mark(PhaseExec)
	return pid, nil
}

// dropPrivileges empties the bounding and ambient capability sets, so the
// runtime (which runs as a non-root uid) can never regain a capability,
// and sets no_new_privs.
func dropPrivileges() error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// supervise is pid 1's loop: forward signals to the runtime, reap every
// child, and return when the runtime has exited (the kernel then kills the
// rest of the namespace).
func supervise(pid int, status *os.File) int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go func() {
		for s := range sigs {
			_ = unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(status, "exit 127\n")
			return 127
		}
		if p != pid {
			continue
		}
		switch {
		case ws.Signaled():
			fmt.Fprintf(status, "signal %d\n", int(ws.Signal()))
			return 128 + int(ws.Signal())
		default:
			fmt.Fprintf(status, "exit %d\n", ws.ExitStatus())
			return ws.ExitStatus()
		}
	}
}

// hostDirs are the host's read-only base: interpreters and libraries.
var hostDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// prepare builds everything of the sandbox's root that does not depend on
// the sandbox: a tmpfs root with the host's /usr and libraries bound
// read-only, /etc, /dev and /proc; pivots into it (nothing of the host's
// tree stays reachable from here on), sets the hostname and file limit and
// drops every privilege the init does not need for the sandbox's own
// mounts. It runs while the init waits in the pool.
func prepare(p *Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	r := p.RootDir
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		return fmt.Errorf("mount root: %w", err)
	}
	for _, d := range hostDirs {
		src := "/" + d
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		dst := filepath.Join(r, d)
		if fi.Mode()&os.ModeSymlink != 0 {
			t, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, dst); err != nil {
				return err
			}
			continue
		}
		if !fi.IsDir() {
			continue
		}
		if err := bindRO(src, dst); err != nil {
			return err
		}
	}
	if err := writeEtc(p, filepath.Join(r, "etc")); err != nil {
		return err
	}
	if err := buildDev(filepath.Join(r, "dev")); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(r, "proc"), 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", filepath.Join(r, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, d := range []string{"var", "root", "home", "opt", "tmp"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	host := p.Hostname
	if host == "" {
		host = "localhost"
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if p.NoFile > 0 {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: p.NoFile, Max: p.NoFile}); err != nil {
			return fmt.Errorf("rlimit: %w", err)
		}
	}
	if err := pivot(r); err != nil {
		return err
	}
	// The bounding set and no_new_privs bind what an exec may gain; the
	// init keeps the capabilities it has (in its own namespaces) for the
	// claim's mounts.
	return dropPrivileges()
}

// finishRoot adds the sandbox's own parts to the prepared root, which is
// the init's root by now: /tmp of its size and the function's mounts; then
// makes the root read-only.
func finishRoot(c *Config) error {
	tmp := c.TmpBytes
	if tmp <= 0 {
		tmp = 512 << 20
	}
	if err := mountTmpfs("/tmp", fmt.Sprintf("size=%d,mode=1777", tmp), unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	for _, m := range c.Mounts {
		if m.FD <= 0 {
			// Host paths are out of reach once the root is pivoted.
			return fmt.Errorf("mount %s: only descriptor mounts are supported", m.Target)
		}
		if err := attach(m.FD, filepath.Join("/", m.Target), m.IsDir); err != nil {
			return err
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount root read-only: %w", err)
	}
	return nil
}

// pivot makes r the root. pivot_root(".", ".") stacks the old root under
// the new one; detaching it leaves nothing of the host's tree reachable.
// The root stays writable until finishRoot has made the sandbox's mount
// points.
func pivot(r string) error {
	if err := unix.Chdir(r); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// attach moves a detached mount the backend prepared onto dst.
func attach(fd int, dst string, isDir bool) error {
	var err error
	if isDir {
		err = os.MkdirAll(dst, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
			_ = f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s: %w", dst, err)
	}
	return unix.Close(fd)
}

func mountTmpfs(dst, opts string, flags uintptr) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", flags, opts); err != nil {
		return fmt.Errorf("mount tmpfs %s: %w", dst, err)
	}
	return nil
}

// bindRO bind-mounts src on dst read-only, nosuid, nodev. The remount must
// repeat the flags the source mount has locked in a user namespace
// (noexec, atime) or the kernel refuses it.
func bindRO(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if fi.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
		if err == nil {
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
				_ = f.Close()
			}
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dst, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for _, f := range [][2]uintptr{
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", dst, err)
	}
	return nil
}

// buildDev makes a minimal /dev: the harmless character devices bound from
// the host (a user namespace cannot mknod), the usual links and /dev/shm.
func buildDev(dev string) error {
	if err := mountTmpfs(dev, "size=64k,mode=0755", unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
		return err
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom"} {
		if err := bindDev("/dev/"+n, filepath.Join(dev, n)); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return mountTmpfs(filepath.Join(dev, "shm"), "size=64m,mode=1777", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

func bindDev(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o666)
	if err != nil {
		return err
	}
	_ = f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// writeEtc writes a minimal /etc; the host's is never shown. Only public,
// non-identifying files are copied (the dynamic linker cache, CA
// certificates via /etc/ssl/certs).
func writeEtc(c *Config, etc string) error {
	if err := os.Mkdir(etc, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"passwd":        "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
		"group":         "root:x:0:\nsbx_user1051:x:990:\nnobody:x:65534:\n",
		"hosts":         "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
		"resolv.conf":   c.ResolvConf,
		"hostname":      c.Hostname + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	// Bound rather than copied: a copy would cost every sandbox its size
	// in tmpfs pages.
	if fi, err := os.Stat("/etc/ld.so.cache"); err == nil && fi.Mode().IsRegular() {
		if err := bindRO("/etc/ld.so.cache", filepath.Join(etc, "ld.so.cache")); err != nil {
			return err
		}
	}
	if fi, err := os.Stat("/etc/ssl/certs"); err == nil && fi.IsDir() {
		if err := bindRO("/etc/ssl/certs", filepath.Join(etc, "ssl", "certs")); err != nil {
			return err
		}
	}
	return nil
}
