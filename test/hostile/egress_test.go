package hostile

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/test/kilnproc"
)

// The "outside": a network namespace behind a host veth, in TEST-NET-3
// (other packages' tests use other names and ranges).
const (
	egHostVeth = "kilnh-out"
	egHostAddr = "203.0.113.1"
	egOutAddr  = "203.0.113.2"
)

// TestHostileEgress runs a server with --sandbox-egress: a function reaches
// a server outside, and still nothing of the host or another sandbox. The
// metadata address is checked by internal/sandbox/linux's TestEgress, where
// policy routing sends it into a namespace the test owns: here a broken rule
// would send a packet to the real network.
func TestHostileEgress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("isolation needs root; CI runs as root")
	}
	dataDir := t.TempDir()
	sum := sha256.Sum256([]byte(dataDir))
	bridge := "kiln" + hex.EncodeToString(sum[:3]) // as internal/server names it
	t.Cleanup(func() {
		// After the server's graceful stop: its bridge must be gone.
		if l, err := netlink.LinkByName(bridge); err == nil {
			t.Errorf("bridge %s survives the server", bridge)
			_ = netlink.LinkDel(l)
		}
	})
	outPort := outsideServer(t)
	s := &server{Server: kilnproc.Start(t, dataDir, "--keep-alive", "1m", "--sandbox-egress")}
	s.dataDir, s.endpoint = s.DataDir, s.Endpoint
	if _, err := netlink.LinkByName(bridge); err != nil {
		t.Fatalf("no bridge %s: %v", bridge, err)
	}
	c := s.client()
	deploy(t, s, c, "probe", fnOpts{})
	deploy(t, s, c, "peer", fnOpts{})

	hl, err := net.Listen("tcp4", "0.0.0.0:0")
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
		"outside":  []any{egOutAddr, outPort},
		"host_pub": []any{egHostAddr, hp}, // the host's address on the outside link
		"gateway":  []any{"gateway", hp},  // the bridge's own address
		"loopback": []any{"127.0.0.1", hp},
		"peer":     []any{peerIP, 8081},
	}
	r := invoke(t, c, "probe", map[string]any{"op": "connects", "targets": targets})
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

// outsideServer makes the outside namespace with a listener on
// egOutAddr, all removed at cleanup, and returns the listener's port.
func outsideServer(t *testing.T) int {
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
	if err := netlink.AddrAdd(hl, mustParseAddr(t, egHostAddr+"/24")); err != nil {
		t.Fatal(err)
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
	if err := h.AddrAdd(eth, mustParseAddr(t, egOutAddr+"/24")); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	// The listener's socket is made inside the namespace.
	lc := make(chan net.Listener, 1)
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
		l, err := net.Listen("tcp4", egOutAddr+":0")
		if unix.Setns(host, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		if err != nil {
			ec <- err
			return
		}
		lc <- l
	}()
	var l net.Listener
	select {
	case l = <-lc:
	case err := <-ec:
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go acceptAll(l)
	return l.Addr().(*net.TCPAddr).Port
}

func mustParseAddr(t *testing.T, s string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
