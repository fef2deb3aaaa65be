package hostile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The "outside": a network namespace behind a host veth, in TEST-NET-3
// (other packages' tests use other names and ranges). It also holds the
// metadata address, which policy routing sends there for the server's
// sandbox subnet only: if a rule of Kiln's were broken, a sandbox's packet
// to 169.254.169.254 would reach this namespace (and the test would see it
// connect), never the real network. Names and ranges depend on the pid, so
// runs of this package side by side (several people, one machine) do not
// take each other's veth.
var (
	egSlot      = os.Getpid() % 31
	egHostVeth  = fmt.Sprintf("kilnh-out%d", egSlot)
	egHostAddr  = fmt.Sprintf("203.0.113.%d", 8*egSlot+1)
	egOutAddr   = fmt.Sprintf("203.0.113.%d", 8*egSlot+2)
	egHostAddr6 = fmt.Sprintf("2001:db8:203:%x::1", egSlot)
	egOutAddr6  = fmt.Sprintf("2001:db8:203:%x::2", egSlot)
	egTable     = 7203 + egSlot // routing table and rule priority
)

const (
	egMetadata = "169.254.169.254"
	egBits     = "/29"
)

// egressDataDir returns a data dir whose sandbox subnet, as internal/server
// derives it, no host address or route overlaps (another package's server
// may run beside this one), with that subnet and the bridge's name.
func egressDataDir(t *testing.T) (string, string, netip.Prefix) {
	t.Helper()
	base := t.TempDir()
	for i := range 64 {
		dir := filepath.Join(base, fmt.Sprint("d", i))
		sum := sha256.Sum256([]byte(dir))
		p := netip.MustParsePrefix(fmt.Sprintf("100.%d.0.0/16", 64+sum[4]%32))
		if subnetUnused(t, p) {
			return dir, "kiln" + hex.EncodeToString(sum[:3]), p
		}
	}
	t.Fatal("no free sandbox subnet in 100.64.0.0/11")
	return "", "", netip.Prefix{}
}

func subnetUnused(t *testing.T, p netip.Prefix) bool {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ap, ok := prefixOf(a.IPNet); ok && ap.Overlaps(p) {
			return false
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if rp, ok := prefixOf(r.Dst); ok && rp.Bits() > 0 && rp.Overlaps(p) && r.Table != unix.RT_TABLE_LOCAL {
			return false
		}
	}
	return true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// TestHostileEgress: by default a function reaches a server outside, and
// still nothing of the host (over IPv4 or IPv6), the metadata address or
// another sandbox.
func TestHostileEgress(t *testing.T) {
	s := startServer(t)
	if _, err := netlink.LinkByName(s.bridge); err != nil {
		t.Fatalf("no bridge %s: %v", s.bridge, err)
	}
	c := s.client()
	deploy(t, s, c, "probe", fnOpts{})
	deploy(t, s, c, "peer", fnOpts{})

	hl, err := net.Listen("tcp", ":0") // every host address, v4 and v6
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	go acceptAll(hl)
	hp := hl.Addr().(*net.TCPAddr).Port

	peer := invoke(t, c, "peer", map[string]any{"op": "listen_any"})
	peerIP, _ := peer.payload["ip"].(string)
	if peer.payload["self"] != "CONNECTED" || net.ParseIP(peerIP) == nil {
		t.Fatalf("peer listen: %s", peer.raw)
	}
	targets := map[string]any{
		"outside":   []any{egOutAddr, s.outPort},
		"outside6":  []any{egOutAddr6, s.outPort},
		"metadata":  []any{egMetadata, 80},
		"host_pub":  []any{egHostAddr, hp}, // the host's address on the outside link
		"host_pub6": []any{egHostAddr6, hp},
		"gateway":   []any{"gateway", hp}, // the bridge's own address
		"loopback":  []any{"127.0.0.1", hp},
		"peer":      []any{peerIP, 8081},
	}
	// A generous timeout: a loaded CI machine must not make "outside" look
	// blocked (the blocked targets fail at once, but for the peer).
	r := invoke(t, c, "probe", map[string]any{"op": "connects", "targets": targets, "timeout": 3})
	t.Logf("probe saw: %s", r.raw)
	if r.funcErr != "" {
		t.Fatalf("probe failed: %s", r.raw)
	}
	for name := range targets {
		got := r.payload[name]
		if want := name == "outside"; (got == "CONNECTED") != want {
			t.Errorf("%s: %v (want reachable %v)", name, got, want)
		}
	}
	// IPv6: no route at all.
	for _, name := range []string{"outside6", "host_pub6"} {
		if r.payload[name] != "ENETUNREACH" {
			t.Errorf("%s: %v, want ENETUNREACH", name, r.payload[name])
		}
	}
	// After the server's graceful stop its bridge is gone.
	s.Stop()
	if l, err := netlink.LinkByName(s.bridge); err == nil {
		t.Errorf("bridge %s survives the server", s.bridge)
		_ = netlink.LinkDel(l)
	}
}

// TestHostileNoEgress: with --sandbox-egress=false a sandbox has only its
// loopback, and the server makes no bridge.
func TestHostileNoEgress(t *testing.T) {
	s := startServer(t, "--sandbox-egress=false")
	if _, err := netlink.LinkByName(s.bridge); err == nil {
		t.Errorf("bridge %s made without egress", s.bridge)
	}
	c := s.client()
	deploy(t, s, c, "probe", fnOpts{})
	targets := map[string]any{
		"outside":  []any{egOutAddr, s.outPort},
		"metadata": []any{egMetadata, 80},
	}
	r := invoke(t, c, "probe", map[string]any{"op": "connects", "targets": targets})
	t.Logf("probe saw: %s", r.raw)
	for name := range targets {
		if r.payload[name] != "ENETUNREACH" {
			t.Errorf("%s: %v, want ENETUNREACH", name, r.payload[name])
		}
	}
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// outsideServer makes the outside namespace with listeners on every
// address there (at the returned port, and at 80), routes the metadata
// address there for subnet's packets, all removed at cleanup.
func outsideServer(t *testing.T, subnet netip.Prefix) int {
	t.Helper()
	if l, err := netlink.LinkByName(egHostVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	type res struct {
		fd  int
		err error
	}
	rc := make(chan res, 1)
	go func() {
		// This thread stays in the new namespace and dies with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			rc <- res{err: err}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		rc <- res{fd, err}
	}()
	ns := <-rc
	if ns.err != nil {
		t.Fatal(ns.err)
	}
	t.Cleanup(func() { _ = unix.Close(ns.fd) })
	la := netlink.NewLinkAttrs()
	la.Name = egHostVeth
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.fd)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(egHostVeth); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	hl, err := netlink.LinkByName(egHostVeth)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{egHostAddr + egBits, egHostAddr6 + "/64"} {
		if err := netlink.AddrAdd(hl, mustParseAddr(t, a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{egOutAddr + egBits, egMetadata + "/32", egOutAddr6 + "/64"} {
		if err := h.AddrAdd(eth, mustParseAddr(t, a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"lo", "eth0"} {
		if ln, err := h.LinkByName(l); err != nil {
			t.Fatal(err)
		} else if err := h.LinkSetUp(ln); err != nil {
			t.Fatal(err)
		}
	}
	// The safety net: the sandboxes' packets to the metadata address go
	// to the outside namespace, whatever the host's own routes say.
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: mustParseAddr(t, egMetadata+"/32").IPNet,
		Gw: net.ParseIP(egOutAddr), Table: egTable}); err != nil {
		t.Fatal(err)
	}
	rule := netlink.NewRule()
	rule.Src = &net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}
	rule.Table = egTable
	rule.Priority = egTable
	_ = netlink.RuleDel(rule) // a crashed run's
	if err := netlink.RuleAdd(rule); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.RuleDel(rule) })
	// The listeners' sockets are made inside the namespace.
	lc := make(chan []net.Listener, 1)
	ec := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ec <- err
			return
		}
		defer unix.Close(host)
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			ec <- err
			return
		}
		var ls []net.Listener
		for _, a := range []string{":0", ":80"} {
			l, lerr := net.Listen("tcp", a)
			if lerr != nil {
				err = lerr
				break
			}
			ls = append(ls, l)
		}
		if unix.Setns(host, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			ec <- err
			return
		}
		lc <- ls
	}()
	var ls []net.Listener
	select {
	case ls = <-lc:
	case err := <-ec:
		t.Fatal(err)
	}
	for _, l := range ls {
		t.Cleanup(func() { _ = l.Close() })
		go acceptAll(l)
	}
	return ls[0].Addr().(*net.TCPAddr).Port
}

func mustParseAddr(t *testing.T, s string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD // IPv6 usable at once
	return a
}
