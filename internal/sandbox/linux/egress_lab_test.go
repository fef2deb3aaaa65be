//go:build linux

package linux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The lab: a "host" network namespace the test makes (so a test firewall
// there never touches the real host's), an "outside" namespace behind a
// veth from it, and plain namespaces standing in for sandboxes, attached to
// the lab host's egress. No sandbox process is needed to test the network.
const (
	labHostAddr  = "198.51.100.1"
	labOutAddr   = "198.51.100.2"
	labHostAddr6 = "2001:db8:1::1"
	labOutAddr6  = "2001:db8:1::2"
	labNS        = "10.77.0.53" // private: reachable on port 53 only
	labSubnet    = "100.64.0.0/16"
)

type lab struct {
	host, out int // namespace fds
	port      int // TCP listener on every outside address, v4 and v6
}

// newNetns returns a new, empty network namespace (lo up).
func newNetns(t testing.TB) int {
	t.Helper()
	fd, err := makeNetns()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return fd
}

func makeNetns() (int, error) {
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
		if err == nil {
			err = loopbackUp()
		}
		rc <- res{fd, err}
	}()
	r := <-rc
	return r.fd, r.err
}

func labAddr(t testing.TB, s string) *netlink.Addr {
	t.Helper()
	a := mustAddr(s)
	a.Flags = unix.IFA_F_NODAD // usable at once
	return a
}

// newLab builds the namespaces; fw adds a firewall to the lab host before
// the egress is made.
func newLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{host: newNetns(t), out: newNetns(t)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(inNetns(t, l.host, func() error {
		la := netlink.NewLinkAttrs()
		la.Name = "lab-out"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(l.out)}); err != nil {
			return err
		}
		hl, err := netlink.LinkByName("lab-out")
		if err != nil {
			return err
		}
		for _, a := range []string{labHostAddr + "/24", labHostAddr6 + "/64"} {
			if err := netlink.AddrAdd(hl, labAddr(t, a)); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(hl); err != nil {
			return err
		}
		// A host that routes IPv6 (Docker's with ipv6 on, say): the egress
		// must not depend on it not doing so.
		if err := writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: mustAddr(labNS + "/32").IPNet, Gw: net.ParseIP(labOutAddr)})
	}))
	defer func() {
		// Packets sent before the kernel sees the link's carrier are lost.
		must(inNetns(t, l.host, func() error {
			for end := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
				hl, err := netlink.LinkByName("lab-out")
				if err != nil || hl.Attrs().OperState == netlink.OperUp || time.Now().After(end) {
					return err
				}
			}
		}))
	}()
	h, err := netlink.NewHandleAt(netns.NsHandle(l.out))
	must(err)
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	must(err)
	for _, a := range []string{labOutAddr + "/24", labOutAddr6 + "/64", labNS + "/32"} {
		must(h.AddrAdd(eth, labAddr(t, a)))
	}
	must(h.LinkSetUp(eth))
	var ln net.Listener
	var pc net.PacketConn
	must(inNetns(t, l.out, func() (err error) {
		if ln, err = net.Listen("tcp", ":0"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", labNS+":53")
		return err
	}))
	t.Cleanup(func() { _ = ln.Close(); _ = pc.Close() })
	go serveHold(ln)
	go func() {
		// A UDP echo standing in for a nameserver.
		buf := make([]byte, 512)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], a)
		}
	}()
	l.port = ln.Addr().(*net.TCPAddr).Port
	return l
}

// serveHold answers "hi" and keeps each connection until its peer closes.
func serveHold(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.WriteString(c, "hi")
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// egress makes the egress in the lab host, after tweak (which may change
// the validated config), and removes it at cleanup.
func (l *lab) egress(t testing.TB, tweak func(*egress)) *egress {
	t.Helper()
	e, err := egressFromConfig(Config{EgressSubnet: labSubnet, EgressNameservers: []string{labNS}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(e)
	}
	if err := inNetns(t, l.host, e.setUp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inNetns(t, l.host, func() error { e.close(); return nil }) })
	return e
}

// sandbox attaches a new namespace to e at slot.
func (l *lab) sandbox(t testing.TB, e *egress, slot int) int {
	t.Helper()
	fd := newNetns(t)
	if err := inNetns(t, l.host, func() error { return e.attach(slot, fd) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// dial connects from namespace fd and reads the greeting; the connection
// stays open (closed at cleanup) unless the caller closes it.
func dial(t testing.TB, fd int, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := inNetns(t, fd, func() (err error) {
		c, err = net.DialTimeout(network, addr, time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		_ = c.Close()
		return nil, errors.Join(errors.New("no greeting"), err)
	}
	return c, nil
}

func (l *lab) outside() string { return net.JoinHostPort(labOutAddr, strconv.Itoa(l.port)) }

// TestEgressHostFirewall: forward chains of the host's firewall that drop
// by default (iptables-nft's filter FORWARD with policy drop and Docker's
// DOCKER-USER, and a firewalld-style chain ending in a drop) are opened for
// the bridge, the sandbox gets out, and the openings go with the egress
// while the firewall itself stays.
func TestEgressHostFirewall(t *testing.T) {
	l := newLab(t)
	drop := nftables.ChainPolicyDrop
	acceptPol := nftables.ChainPolicyAccept
	if err := inNetns(t, l.host, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		// iptables-nft's layout with Docker: FORWARD (policy drop) jumps to
		// DOCKER-USER first.
		ft := c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
		fwd := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: ft, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		c.AddChain(&nftables.Chain{Name: "DOCKER-USER", Table: ft})
		c.AddRule(&nftables.Rule{Table: ft, Chain: fwd, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "DOCKER-USER"}}})
		// firewalld's: policy accept, an unconditional drop at the end.
		it := c.AddTable(&nftables.Table{Name: "fw", Family: nftables.TableFamilyINet})
		ifwd := c.AddChain(&nftables.Chain{Name: "filter_FORWARD", Table: it, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(10), Policy: &acceptPol})
		c.AddRule(&nftables.Rule{Table: it, Chain: ifwd, Exprs: []expr.Any{&expr.Counter{}, drop2()}})
		return c.Flush()
	}); err != nil {
		t.Fatal(err)
	}
	e := l.egress(t, nil)
	sb := l.sandbox(t, e, 0)
	if _, err := dial(t, sb, "tcp4", l.outside()); err != nil {
		t.Fatalf("sandbox cannot get out through the opened firewall: %v", err)
	}
	kilnRules := func() map[string]int {
		out := map[string]int{}
		if err := inNetns(t, l.host, func() error {
			c, err := nftables.New()
			if err != nil {
				return err
			}
			chains, err := c.ListChains()
			if err != nil {
				return err
			}
			for _, ch := range chains {
				rules, err := c.GetRules(ch.Table, ch)
				if err != nil {
					return err
				}
				for _, r := range rules {
					if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == e.fwComment() {
						out[ch.Table.Name+"/"+ch.Name]++
					}
				}
				if ch.Table.Name != "filter" && ch.Table.Name != "fw" {
					continue
				}
				out["chain "+ch.Table.Name+"/"+ch.Name] = 1
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := kilnRules()
	if got["filter/DOCKER-USER"] != 2 || got["fw/filter_FORWARD"] != 2 || got["filter/FORWARD"] != 0 {
		t.Errorf("accept rules: %v, want 2 in DOCKER-USER and 2 in filter_FORWARD", got)
	}
	// Without the openings the firewall drops the sandbox's traffic: the
	// test's firewall does bite.
	if err := inNetns(t, l.host, func() error { e.closeHostFirewall(); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, sb, "tcp4", l.outside()); err == nil {
		t.Error("sandbox got out through a forward chain with policy drop")
	}
	got = kilnRules()
	for _, k := range []string{"filter/DOCKER-USER", "fw/filter_FORWARD"} {
		if got[k] != 0 {
			t.Errorf("%d accept rules left in %s", got[k], k)
		}
	}
	for _, k := range []string{"chain filter/FORWARD", "chain filter/DOCKER-USER", "chain fw/filter_FORWARD"} {
		if got[k] != 1 {
			t.Errorf("%s gone with the egress", k)
		}
	}
}

func drop2() expr.Any { return &expr.Verdict{Kind: expr.VerdictDrop} }

// TestEgressFallsBack: a host that cannot give sandboxes a network (here:
// the subnet is already in use) leaves the egress off, sandboxes with
// loopback only, instead of failing the backend.
func TestEgressFallsBack(t *testing.T) {
	l := newLab(t)
	if err := inNetns(t, l.host, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, mustAddr("100.64.9.1/24"))
	}); err != nil {
		t.Fatal(err)
	}
	var e *egress
	if err := inNetns(t, l.host, func() (err error) {
		e, err = newEgress(Config{EgressSubnet: labSubnet, EgressNameservers: []string{labNS}}, testLogger(t))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !e.off {
		t.Fatal("egress on over a used subnet")
	}
	sb := l.sandbox(t, e, 0)
	h, err := netlink.NewHandleAt(netns.NsHandle(sb))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if links, _ := h.LinkList(); len(links) != 1 {
		t.Errorf("sandbox of an egress that is off has %d links, want lo only", len(links))
	}
	if _, err := dial(t, sb, "tcp4", l.outside()); err == nil {
		t.Error("got out")
	}
	e.close()
}

// TestEgressIPv6: a sandbox has no IPv6 route, and even one that forces a
// route and a neighbour entry onto the bridge reaches nothing over IPv6,
// on a host that forwards IPv6.
func TestEgressIPv6(t *testing.T) {
	l := newLab(t)
	e := l.egress(t, nil)
	sb := l.sandbox(t, e, 0)
	out6 := net.JoinHostPort(labOutAddr6, strconv.Itoa(l.port))
	host6 := net.JoinHostPort(labHostAddr6, strconv.Itoa(l.port))
	// The outside does answer over IPv6, from the lab host.
	var err error
	for try := 0; try < 5; try++ { // the first neighbour solicitation may go before the link is up
		if _, err = dial(t, l.host, "tcp6", out6); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("lab broken: the host cannot reach the outside over IPv6: %v", err)
	}
	if _, err := dial(t, sb, "tcp4", l.outside()); err != nil {
		t.Fatalf("no IPv4 egress: %v", err)
	}
	for _, a := range []string{out6, host6} {
		if _, err := dial(t, sb, "tcp6", a); !errors.Is(err, unix.ENETUNREACH) {
			t.Errorf("sandbox to %s: %v, want ENETUNREACH (no route)", a, err)
		}
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(sb))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := h.AddrList(eth, netlink.FAMILY_V6)
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			t.Errorf("sandbox eth0 has a global IPv6 address %s", a.IPNet)
		}
	}
	// An attacker with the privilege to route (a sandbox has none): the
	// packets reach the bridge and die there.
	var mac net.HardwareAddr
	if err := inNetns(t, l.host, func() error {
		br, err := netlink.LinkByName(e.bridge)
		if err == nil {
			mac = br.Attrs().HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{labOutAddr6, labHostAddr6} {
		if err := h.NeighAdd(&netlink.Neigh{LinkIndex: eth.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(a), HardwareAddr: mac}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{out6, host6} {
		if c, err := dial(t, sb, "tcp6", a); err == nil {
			c.Close()
			t.Errorf("sandbox with a forced IPv6 route reached %s", a)
		}
	}
}

// TestEgressConnLimit: one sandbox address may hold maxConns connections;
// the next is refused at once, another sandbox is unaffected, and a closed
// connection frees its place.
func TestEgressConnLimit(t *testing.T) {
	l := newLab(t)
	const limit = 4
	e := l.egress(t, func(e *egress) { e.maxConns = limit })
	sb := l.sandbox(t, e, 0)
	var conns []net.Conn
	for i := range limit {
		c, err := dial(t, sb, "tcp4", l.outside())
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, limit, err)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	if _, err := dial(t, sb, "tcp4", l.outside()); err == nil {
		t.Fatalf("connection %d beyond the limit of %d accepted", limit+1, limit)
	} else if !errors.Is(err, unix.EHOSTUNREACH) || time.Since(start) > time.Second {
		t.Errorf("over the limit: %v after %v, want EHOSTUNREACH at once", err, time.Since(start))
	}
	other := l.sandbox(t, e, 1)
	if _, err := dial(t, other, "tcp4", l.outside()); err != nil {
		t.Errorf("another sandbox is limited by the first one's connections: %v", err)
	}
	// There is room again once one closes (a closed TCP connection no
	// longer counts, though conntrack keeps it in TIME_WAIT).
	conns[0].Close()
	var err error
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err = dial(t, sb, "tcp4", l.outside()); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("a closed connection did not free its place: %v", err)
	}
}

// TestEgressDNS: the sandboxes' resolv.conf names the nameserver, which
// answers over UDP on port 53 although it is in a private range, while its
// other ports stay closed.
func TestEgressDNS(t *testing.T) {
	l := newLab(t)
	e := l.egress(t, nil)
	if e.resolv != "nameserver "+labNS+"\n" {
		t.Errorf("resolv.conf %q", e.resolv)
	}
	sb := l.sandbox(t, e, 0)
	udp := func(port string) error {
		return inNetns(t, sb, func() error {
			c, err := net.Dial("udp4", net.JoinHostPort(labNS, port))
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("query")); err != nil {
				return err
			}
			b := make([]byte, 16)
			n, err := c.Read(b)
			if err == nil && string(b[:n]) != "query" {
				err = errors.New("wrong answer")
			}
			return err
		})
	}
	if err := udp("53"); err != nil {
		t.Errorf("udp to the nameserver's port 53: %v", err)
	}
	if err := udp("54"); err == nil {
		t.Error("udp to the nameserver's port 54 answered")
	}
	if _, err := dial(t, sb, "tcp4", net.JoinHostPort(labNS, strconv.Itoa(l.port))); err == nil {
		t.Error("tcp to another port of the (private) nameserver connected")
	}
}

// TestEgressReapsOrphans: a bridge whose owning process is gone goes, with
// its table, when another egress starts; a live owner's stays.
func TestEgressReapsOrphans(t *testing.T) {
	if ownerGone(ownerAlias()) {
		t.Fatal("this process counted as gone")
	}
	if ownerGone(aliasPrefix + "pidns=pid:[1] pid=999999999 start=1") {
		t.Fatal("a process of another pid namespace counted as gone")
	}
	l := newLab(t)
	mk := func(bridge, subnet string) *egress {
		e, err := egressFromConfig(Config{EgressBridge: bridge, EgressSubnet: subnet, EgressNameservers: []string{}}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := inNetns(t, l.host, e.setUp); err != nil {
			t.Fatal(err)
		}
		return e
	}
	dead := exec.Command("/bin/true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan, live := mk("kilnorph", "100.64.0.0/16"), mk("kilnlive", "100.65.0.0/16")
	defer inNetns(t, l.host, func() error { live.close(); return nil })
	if err := inNetns(t, l.host, func() error {
		br, err := netlink.LinkByName(orphan.bridge)
		if err != nil {
			return err
		}
		return netlink.LinkSetAlias(br, fmt.Sprintf("%spidns=%s pid=%d start=1", aliasPrefix, pidNS(), dead.Process.Pid))
	}); err != nil {
		t.Fatal(err)
	}
	next := mk("kilnnext", "100.64.0.0/16") // the orphan's subnet: free again
	defer inNetns(t, l.host, func() error { next.close(); return nil })
	if err := inNetns(t, l.host, func() error {
		for _, b := range []struct {
			name string
			want bool
		}{{orphan.bridge, false}, {live.bridge, true}, {next.bridge, true}} {
			if _, err := netlink.LinkByName(b.name); (err == nil) != b.want {
				t.Errorf("bridge %s present: %v, want %v", b.name, err == nil, b.want)
			}
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		if tab, err := c.ListTableOfFamily(egressTableName(orphan.bridge), nftables.TableFamilyINet); err == nil && tab != nil {
			t.Errorf("the orphan's table survives")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkEgressAttach is what egress adds to a sandbox's network
// namespace: the veth, addresses, routes, neighbours and the wait for the
// link (attach-µs); first-conn-µs is attach plus a first TCP connection to
// the outside through NAT.
func BenchmarkEgressAttach(b *testing.B) {
	l := newLab(b)
	e := l.egress(b, nil)
	var attach, first time.Duration
	i := 0
	for b.Loop() {
		fd, err := makeNetns()
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := inNetns(b, l.host, func() error { return e.attach(i%1000, fd) }); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c, err := dial(b, fd, "tcp4", l.outside())
		if err != nil {
			b.Fatal(err)
		}
		first += time.Since(t0)
		attach += t1.Sub(t0)
		c.Close()
		_ = unix.Close(fd)
		i++
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs")
	b.ReportMetric(float64(first.Microseconds())/float64(b.N), "first-conn-µs")
}

// TestEgressLegacyFirewall: the same with iptables-legacy (x_tables, which
// nftables does not see), Docker's layout: FORWARD policy DROP, jumping to
// DOCKER-USER.
func TestEgressLegacyFirewall(t *testing.T) {
	bin, err := exec.LookPath("iptables-legacy")
	if err != nil {
		t.Skip("no iptables-legacy")
	}
	l := newLab(t)
	ipt := func(args ...string) (string, error) {
		var out []byte
		err := inNetns(t, l.host, func() (err error) {
			// Forked from this thread: in the lab's namespace.
			out, err = exec.Command(bin, append([]string{"-w"}, args...)...).CombinedOutput()
			return err
		})
		return string(out), err
	}
	for _, a := range [][]string{{"-P", "FORWARD", "DROP"}, {"-N", "DOCKER-USER"}, {"-A", "FORWARD", "-j", "DOCKER-USER"}} {
		if out, err := ipt(a...); err != nil {
			t.Fatalf("iptables-legacy %v: %v %s", a, err, out)
		}
	}
	e := l.egress(t, nil)
	sb := l.sandbox(t, e, 0)
	if _, err := dial(t, sb, "tcp4", l.outside()); err != nil {
		t.Fatalf("sandbox cannot get out through legacy FORWARD DROP: %v", err)
	}
	out, _ := ipt("-S", "DOCKER-USER")
	if strings.Count(out, e.fwComment()) != 2 {
		t.Errorf("DOCKER-USER:\n%s", out)
	}
	if err := inNetns(t, l.host, func() error { e.closeHostFirewall(); return nil }); err != nil {
		t.Fatal(err)
	}
	if out, _ := ipt("-S"); strings.Contains(out, e.fwComment()) || !strings.Contains(out, "-P FORWARD DROP") {
		t.Errorf("after close:\n%s", out)
	}
	if _, err := dial(t, sb, "tcp4", l.outside()); err == nil {
		t.Error("sandbox got out through legacy FORWARD DROP without the openings")
	}
}

// TestEgressIptablesNft: Docker's layout made by the iptables-nft tool
// itself; Kiln's openings are plain iptables rules to it.
func TestEgressIptablesNft(t *testing.T) {
	bin, err := exec.LookPath("iptables-nft")
	if err != nil {
		t.Skip("no iptables-nft")
	}
	l := newLab(t)
	ipt := func(args ...string) string {
		t.Helper()
		var out []byte
		if err := inNetns(t, l.host, func() (err error) {
			out, err = exec.Command(bin, append([]string{"-w"}, args...)...).CombinedOutput()
			return err
		}); err != nil {
			t.Fatalf("iptables-nft %v: %v %s", args, err, out)
		}
		return string(out)
	}
	ipt("-P", "FORWARD", "DROP")
	ipt("-N", "DOCKER-USER")
	ipt("-A", "FORWARD", "-j", "DOCKER-USER")
	e := l.egress(t, nil)
	sb := l.sandbox(t, e, 0)
	if _, err := dial(t, sb, "tcp4", l.outside()); err != nil {
		t.Fatalf("sandbox cannot get out: %v", err)
	}
	got := ipt("-S", "DOCKER-USER")
	for _, want := range []string{
		"-A DOCKER-USER -i " + e.bridge + " -m comment --comment " + e.fwComment() + " -j ACCEPT",
		"-A DOCKER-USER -o " + e.bridge + " -m comment --comment " + e.fwComment() + " -j ACCEPT",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("DOCKER-USER lacks %q:\n%s", want, got)
		}
	}
	if err := inNetns(t, l.host, func() error { e.closeHostFirewall(); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := ipt("-S"); strings.Contains(got, e.fwComment()) || !strings.Contains(got, "-A FORWARD -j DOCKER-USER") {
		t.Errorf("after close:\n%s", got)
	}
}
