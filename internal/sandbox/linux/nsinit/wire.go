package nsinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The C init (cinit_cgo.go) reads its two messages in a small binary
// format instead of JSON: "KP1\0" or "KC1\0", then records of a one-letter
// op and its NUL-terminated fields; a byte string field is its decimal
// length, NUL, then the bytes. Every decision is made here, in Go: the C
// side carries out a list of steps and understands nothing else.

// Hello lines: the first thing an init writes on StatusFD says which
// message format it reads.
const (
	HelloGo = "hello go"
	HelloC  = "hello c"
)

type wire struct{ b []byte }

func (w *wire) op(op byte, fields ...string) {
	w.b = append(w.b, op, 0)
	for _, f := range fields {
		w.b = append(w.b, f...)
		w.b = append(w.b, 0)
	}
}

func (w *wire) bytes(op byte, p []byte) {
	w.op(op, strconv.Itoa(len(p)))
	w.b = append(w.b, p...)
}

// noNUL: fields are C strings.
func noNUL(ss ...string) error {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return errors.New("nsinit: NUL byte in a field")
		}
	}
	return nil
}

// EncodePrepC is the C init's first message: the steps that build the
// sandbox's base root under c.RootDir and pivot into it, as prepare does
// for the Go init. It reads the host's / (as the init will see it: its
// mount namespace is a copy of the host's) to choose binds and symlinks.
// With prefork the init also starts the runtime's process ahead, under the
// seccomp filter; only for an init that is in its sandbox's cgroup before
// it is claimed, since that process makes its cgroup namespace then.
func EncodePrepC(c *Config, prefork bool) ([]byte, error) {
	if c.RootDir == "" || !filepath.IsAbs(c.RootDir) {
		return nil, errors.New("nsinit: prepare needs an absolute root dir")
	}
	r := filepath.Clean(c.RootDir)
	host := c.Hostname
	if host == "" {
		host = "localhost"
	}
	w := &wire{b: []byte("KP1\x00")}
	w.op('S') // mounts private
	w.op('T', r, "size=1m,mode=0755", itoa(unix.MS_NOSUID|unix.MS_NODEV))
	for _, d := range hostDirs {
		src := "/" + d
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		dst := filepath.Join(r, d)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(src)
			if err != nil {
				return nil, err
			}
			w.op('L', t, dst)
		case fi.IsDir():
			w.op('B', src, dst, "d")
		}
	}
	etc := filepath.Join(r, "etc")
	w.op('M', etc, "493") // 0755
	for _, f := range etcFiles(c.ResolvConf, host) {
		w.op('W', filepath.Join(etc, f[0]), f[1])
	}
	if fi, err := os.Stat("/etc/ld.so.cache"); err == nil && fi.Mode().IsRegular() {
		w.op('B', "/etc/ld.so.cache", filepath.Join(etc, "ld.so.cache"), "f")
	}
	if fi, err := os.Stat("/etc/ssl/certs"); err == nil && fi.IsDir() {
		w.op('B', "/etc/ssl/certs", filepath.Join(etc, "ssl", "certs"), "d")
	}
	dev := filepath.Join(r, "dev")
	w.op('T', dev, "size=64k,mode=0755", itoa(unix.MS_NOSUID|unix.MS_NOEXEC))
	for _, n := range devNodes {
		w.op('V', "/dev/"+n, filepath.Join(dev, n))
	}
	for _, l := range devLinks {
		w.op('L', l[1], filepath.Join(dev, l[0]))
	}
	w.op('T', filepath.Join(dev, "shm"), "size=64m,mode=1777", itoa(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC))
	w.op('P', filepath.Join(r, "proc"))
	for _, d := range []string{"var", "root", "home", "opt", "tmp"} {
		w.op('M', filepath.Join(r, d), "493")
	}
	w.op('H', host)
	if c.NoFile > 0 {
		w.op('N', strconv.FormatUint(c.NoFile, 10))
	}
	w.op('R', r) // pivot
	w.op('C')    // drop the bounding set and ambient caps, no_new_privs
	if prefork {
		w.bytes('F', filterBytes())
		w.op('K')
	}
	if err := noNUL(r, host, c.ResolvConf); err != nil {
		return nil, err
	}
	if len(w.b) > maxConfig {
		return nil, errors.New("nsinit: prepare message too large")
	}
	return w.b, nil
}

// EncodeClaimC is the C init's second message: the sandbox's own part,
// with the seccomp program to load. Mount.FD indexes the descriptors sent
// with it, as for Encode.
func EncodeClaimC(c *Config) ([]byte, error) {
	if len(c.Argv) == 0 || !filepath.IsAbs(c.Argv[0]) {
		return nil, errors.New("nsinit: claim needs an absolute argv[0]")
	}
	if err := noNUL(append(append([]string{c.Dir}, c.Argv...), c.Env...)...); err != nil {
		return nil, err
	}
	w := &wire{b: []byte("KC1\x00")}
	w.op('A', append([]string{itoa(len(c.Argv))}, c.Argv...)...)
	w.op('E', append([]string{itoa(len(c.Env))}, c.Env...)...)
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	w.op('D', dir)
	tmp := c.TmpBytes
	if tmp <= 0 {
		tmp = 512 << 20
	}
	w.op('T', fmt.Sprintf("size=%d,mode=1777", tmp))
	for _, m := range c.Mounts {
		if m.FD < 3 || !filepath.IsAbs(m.Target) || filepath.Clean(m.Target) != m.Target || m.Target == "/" {
			return nil, fmt.Errorf("nsinit: bad mount %q", m.Target)
		}
		if err := noNUL(m.Target); err != nil {
			return nil, err
		}
		kind := "f"
		if m.IsDir {
			kind = "d"
		}
		w.op('m', itoa(m.FD), m.Target, kind)
	}
	w.op('U', itoa(RuntimeUID), itoa(RuntimeGID))
	w.bytes('F', filterBytes())
	if len(w.b) > maxConfig {
		return nil, fmt.Errorf("nsinit: claim message of %d bytes exceeds %d", len(w.b), maxConfig)
	}
	return w.b, nil
}

func itoa(v int) string { return strconv.Itoa(v) }

// filterBytes is Filter as struct sock_filter's in memory.
func filterBytes() []byte {
	f := Filter()
	prog := make([]byte, 0, len(f)*int(unsafe.Sizeof(unix.SockFilter{})))
	for _, in := range f {
		prog = binary.NativeEndian.AppendUint16(prog, in.Code)
		prog = append(prog, in.Jt, in.Jf)
		prog = binary.NativeEndian.AppendUint32(prog, in.K)
	}
	return prog
}

// devNodes are bound from the host into /dev (a user namespace cannot
// mknod); devLinks are /dev's usual links.
var (
	devNodes = []string{"null", "zero", "full", "random", "urandom"}
	devLinks = [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}}
)

// etcFiles are the sandbox's /etc: only public, non-identifying content.
func etcFiles(resolv, hostname string) [][2]string {
	return [][2]string{
		{"passwd", "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"},
		{"group", "root:x:0:\nsbx_user1051:x:990:\nnobody:x:65534:\n"},
		{"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
		{"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"},
		{"resolv.conf", resolv},
		{"hostname", hostname + "\n"},
	}
}
