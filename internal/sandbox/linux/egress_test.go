//go:build linux

package linux

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Test network: an "outside" network namespace reached through a veth
// whose host end has a TEST-NET-2 (public-looking) address and whose far
// end has the next one plus two addresses a sandbox must not reach
// although they route the same way: the metadata address and a private
// one. A fourth, private, address plays the nameserver, and a fifth is
// private but allowed. Host-side names and ranges depend on the pid, so
// runs of this package side by side (several people, one machine) do not
// take each other's bridge or veth.
var (
	testSlot       = os.Getpid() % 16
	testBridge     = fmt.Sprintf("kilnt%d", testSlot)
	testSubnet     = fmt.Sprintf("100.%d.0.0/16", 96+testSlot)
	testHostVeth   = fmt.Sprintf("kilnt-out%d", testSlot)
	outsideHost    = fmt.Sprintf("198.51.100.%d", 8*testSlot+1)
	outsideAddr    = fmt.Sprintf("198.51.100.%d", 8*testSlot+2)
	testRouteTable = 7107 + testSlot // holds the routes to the outside's denied addresses
)

const (
	outsideBits  = "/29"
	outsideMeta  = "169.254.169.254"
	outsidePriv  = "10.255.77.1"
	outsideNS    = "10.255.77.53"
	outsideAllow = "10.255.78.1" // private but in EgressAllow
)

func newEgressBackend(t testing.TB) *Backend {
	t.Helper()
	return newHostBackend(t, Config{Isolation: true, Egress: true, EgressBridge: testBridge,
		EgressSubnet: testSubnet, EgressNameservers: []string{outsideNS}, EgressAllow: []string{"10.255.78.0/24"}})
}

// inNetns runs f on a thread inside the network namespace fd.
func inNetns(t testing.TB, fd int, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(host)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
		if unix.Setns(host, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread dies with the goroutine
	}()
	return <-errc
}

// outside makes the outside namespace, with TCP listeners that answer
// "hi" on every address at the returned port (and on 53), and removes it
// all at cleanup.
func outside(t *testing.T) (port int) {
	t.Helper()
	if l, err := netlink.LinkByName(testHostVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	nsfd := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		// A thread of its own: it stays in the new namespace and dies.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		nsfd <- fd
	}()
	var fd int
	select {
	case fd = <-nsfd:
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	la := netlink.NewLinkAttrs()
	la.Name = testHostVeth
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(testHostVeth); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	hl, err := netlink.LinkByName(testHostVeth)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netlink.AddrAdd(hl, mustAddr(outsideHost+outsideBits)))
	must(netlink.LinkSetUp(hl))
	// The outside's denied addresses are routed there only for the
	// sandboxes' subnet: the host's own traffic (its real metadata
	// service, say) keeps its routes.
	for _, a := range []string{outsideMeta, outsidePriv, outsideNS, outsideAllow} {
		must(netlink.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: mustAddr(a + "/32").IPNet,
			Gw: net.ParseIP(outsideAddr), Table: testRouteTable}))
	}
	rule := netlink.NewRule()
	rule.Src = mustAddr(testSubnet).IPNet
	rule.Table = testRouteTable
	rule.Priority = testRouteTable
	_ = netlink.RuleDel(rule) // a crashed run's
	must(netlink.RuleAdd(rule))
	t.Cleanup(func() { _ = netlink.RuleDel(rule) })
	var ls []net.Listener
	must(inNetns(t, fd, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, a := range []string{outsideAddr + outsideBits, outsideMeta + "/32", outsidePriv + "/32", outsideNS + "/32", outsideAllow + "/32"} {
			if err := netlink.AddrAdd(eth, mustAddr(a)); err != nil {
				return err
			}
		}
		for _, l := range []string{"lo", "eth0"} {
			if ln, err := netlink.LinkByName(l); err != nil {
				return err
			} else if err := netlink.LinkSetUp(ln); err != nil {
				return err
			}
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(outsideHost),
			Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
			return err
		}
		for _, a := range []string{"0.0.0.0:0", "0.0.0.0:53"} {
			l, err := net.Listen("tcp4", a)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		// Bound to the nameserver's address: an answer from 0.0.0.0 would
		// leave from the link's first address.
		pc, err := net.ListenPacket("udp4", outsideNS+":53")
		if err != nil {
			return err
		}
		t.Cleanup(func() { _ = pc.Close() })
		go serveDNS(pc, netip.MustParseAddr(outsideAddr))
		return nil
	}))
	for _, l := range ls {
		serveHi(t, l)
	}
	return ls[0].Addr().(*net.TCPAddr).Port
}

// serveDNS answers every A query with a, anything else with no answer:
// enough of DNS for a sandbox's resolver to show that its resolv.conf and
// the UDP path to the nameserver work.
func serveDNS(pc net.PacketConn, a netip.Addr) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if len(q) < 12 {
			continue
		}
		// The question's name, then type and class.
		i := 12
		for i < len(q) && q[i] != 0 {
			i += int(q[i]) + 1
		}
		if i+5 > len(q) {
			continue
		}
		end := i + 5
		isA := q[i+1] == 0 && q[i+2] == 1
		resp := append([]byte{}, q[:end]...)
		resp[2], resp[3] = 0x81, 0x80 // response, recursion desired and available
		resp[6], resp[7], resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0, 0, 0
		if isA {
			resp[7] = 1
			ip := a.As4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
			resp = append(resp, ip[:]...)
		}
		_, _ = pc.WriteTo(resp, from)
	}
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

// serveHi answers "hi" to every connection until cleanup.
func serveHi(t *testing.T, l net.Listener) {
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hi")
			_ = c.Close()
		}
	}()
}

// probeScript tries each "name host port" target and prints "name ok" or
// "name fail <error>".
func probeScript(targets [][3]string) string {
	var b strings.Builder
	b.WriteString("/usr/bin/python3 -S -c '\nimport socket\nfor n, h, p in [")
	for _, x := range targets {
		fmt.Fprintf(&b, "(%q, %q, %s),", x[0], x[1], x[2])
	}
	b.WriteString(`]:
    try:
        s = socket.create_connection((h, int(p)), timeout=3)
        d = s.recv(10).decode()
        print(n, "ok" if d == "hi" else "other:" + d, flush=True)
    except OSError as e:
        print(n, "fail", e, flush=True)
'`)
	return b.String()
}

func TestEgress(t *testing.T) {
	b := newEgressBackend(t)
	port := outside(t)
	ps := fmt.Sprint(port)
	// A subnet the host already uses is refused.
	if err := subnetFree(netip.MustParsePrefix(outsideHost + "/28")); err == nil {
		t.Error("subnet overlapping the outside link accepted")
	}

	// Host listeners on all addresses: the bridge's and the host's
	// "public" one must not be reachable from a sandbox.
	hl, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	serveHi(t, hl)
	hp := fmt.Sprint(hl.Addr().(*net.TCPAddr).Port)

	// Another sandbox, listening on its own address.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peerOut := &lockedBuf{}
	peer, err := b.Create(ctx, sandbox.Spec{ID: "egress-peer", Argv: []string{"/usr/bin/python3", "-S", "-c", `
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7000)); s.listen(8)
print("listening", flush=True)
s.settimeout(20)
while True:
    try:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
    except OSError:
        break
`}, Stdout: peerOut, Stderr: peerOut, MemoryBytes: 128 << 20, CPUWeightMB: 1769})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Delete(context.Background())
	if err := peer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	peerIP, err := b.iso.eg.addr(peer.(*box).iso.slot)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !strings.Contains(peerOut.String(), "listening"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("peer sandbox never listened: %q", peerOut.String())
		}
	}

	script := probeScript([][3]string{
		{"outside", outsideAddr, ps},
		{"dns", outsideNS, "53"},
		{"nsother", outsideNS, ps},
		{"metadata", outsideMeta, ps},
		{"private", outsidePriv, ps},
		{"allowed", outsideAllow, ps},
		{"hostpub", outsideHost, hp},
		{"bridge", b.iso.eg.gw.String(), hp},
		{"loopback", "127.0.0.1", hp},
		{"peer", peerIP.String(), "7000"},
	}) + "; /usr/bin/python3 -S -c 'import socket; print(\"resolved\", socket.gethostbyname(\"svc.kiln.test\"))'" +
		"; cat /etc/resolv.conf; ip -o -4 addr 2>/dev/null; cat /proc/net/route"
	st, out := runIso(t, b, "egress-probe", script)
	t.Log(out)
	if !st.Success() {
		t.Fatalf("status %v", st)
	}
	for _, want := range []string{
		"outside ok", "dns ok", "nsother fail", "metadata fail", "private fail", "allowed ok",
		"hostpub fail", "bridge fail", "loopback fail", "peer fail",
		"nameserver " + outsideNS, "resolved " + outsideAddr,
	} {
		if !strings.Contains(out, want+" ") && !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q", want)
		}
	}
	// A later sandbox (a reused pool slot) gets out too.
	st, out = runIso(t, b, "egress-nopeer", probeScript([][3]string{{"outside2", outsideAddr, ps}}))
	if !st.Success() || !strings.Contains(out, "outside2 ok") {
		t.Errorf("second sandbox: %v %q", st, out)
	}
}

// TestEgressNoLeaks: veths go with their sandboxes, the bridge and the
// table with the backend.
func TestEgressNoLeaks(t *testing.T) {
	b := newEgressBackend(t)
	cycles := 200
	if v, err := strconv.Atoi(os.Getenv("KILN_LEAK_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	leakCycles(t, b, cycles)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if tab, err := c.ListTableOfFamily(egressTableName(testBridge), nftables.TableFamilyINet); err == nil && tab != nil {
		t.Errorf("nftables table %s survives Close", tab.Name)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	gone := &egress{bridge: testBridge, prefix: vethPrefix(testBridge)}
	for _, l := range links {
		if n := l.Attrs().Name; gone.ours(l) || strings.HasPrefix(n, vethPrefix(testBridge)) {
			t.Errorf("link %s survives Close", n)
		}
	}
}

func TestEgressConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"long bridge", Config{EgressBridge: "kiln-much-too-long"}},
		{"bad subnet", Config{EgressSubnet: "x"}},
		{"ipv6 subnet", Config{EgressSubnet: "fd00::/64"}},
		{"tiny subnet", Config{EgressSubnet: "100.64.0.0/30"}},
		{"bad allow", Config{EgressAllow: []string{"10.0.0.1"}}},
		{"bad nameserver", Config{EgressNameservers: []string{"dns.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Rejected before anything is made on the host.
			if _, err := newEgress(tc.cfg, testLogger(t)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := withDefaults(Config{Egress: true}); err == nil {
		t.Error("Egress without Isolation accepted")
	}
}
