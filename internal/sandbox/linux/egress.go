//go:build linux

package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Egress defaults (see Config).
const (
	defaultEgressBridge = "kiln0"
	defaultEgressSubnet = "100.64.0.0/16"
	// defaultEgressMaxConns bounds the connections one sandbox may have
	// open through the bridge at once, so no sandbox can fill the host's
	// conntrack table (nf_conntrack_max is often 65536 or 262144).
	defaultEgressMaxConns = 1024
)

// egressDenied are the destinations a sandbox never reaches unless
// Config.EgressAllow names them: loopback, link-local (the 169.254.169.254
// metadata service), the private ranges a Kiln cluster lives in, the CGNAT
// range the sandboxes themselves use, and what is not unicast.
var egressDenied = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
}

// egress is the host side of sandbox networking: a bridge every sandbox's
// veth is a port of (isolated from the other ports), and an nftables table
// that masquerades the sandboxes' traffic and filters it.
//
// The filter, for packets arriving from the bridge: everything addressed to
// the host itself (any of its addresses, the bridge's included) is
// rejected in the input hook; forwarded packets to another sandbox, to a
// denied range (unless allowed) or that are not IPv4 are rejected; the
// nameservers get port 53 only; a sandbox address with maxConns tracked
// connections gets no new one (DNS to the nameservers excepted, so a
// function resolving many names is not cut off while its finished queries
// wait out their conntrack timeout). Nothing enters the bridge from
// outside unless it belongs to a connection a sandbox opened. IPv6: the
// bridge has none, sandboxes get no IPv6 route, and whatever IPv6 reaches
// the bridge is rejected or dropped.
type egress struct {
	log      *slog.Logger
	bridge   string
	prefix   string // of the host-side veth names
	subnet   netip.Prefix
	gw       netip.Addr
	brIndex  int
	table    *nftables.Table
	nameserv []netip.Addr
	resolv   string // the sandboxes' /etc/resolv.conf
	allow    []netip.Prefix
	maxConns int
	// off: the host could not give sandboxes a network (see setUp); they
	// keep only their loopback, as with Egress unset.
	off bool
	fw  hostFirewall // accept rules Kiln put in other forward chains
}

func egressTableName(bridge string) string { return "kiln-" + bridge }

func vethPrefix(bridge string) string {
	return "k" + bridge[:min(len(bridge), 9)] + "-"
}

// newEgress checks cfg, then makes the bridge and the rules, replacing
// what a previous Kiln with the same bridge name left behind. A bad cfg is
// an error; a host that cannot give sandboxes a network (a subnet already
// routed, no nf_tables, a host firewall it cannot open) is logged loudly
// and the egress is off: sandboxes keep only their loopback, as with
// Config.Egress unset, rather than Kiln not starting at all.
func newEgress(cfg Config, log *slog.Logger) (*egress, error) {
	e, err := egressFromConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := e.setUp(); err != nil {
		log.Error("sandbox egress unavailable: sandboxes get loopback only (no outbound network); fix the cause or run kiln server with --sandbox-egress=false to silence this",
			"err", err, "bridge", e.bridge, "subnet", e.subnet)
		e.off = true
		e.resolv = sandboxResolvConf()
		return e, nil
	}
	return e, nil
}

// egressFromConfig validates cfg; it changes nothing on the host.
func egressFromConfig(cfg Config, log *slog.Logger) (*egress, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &egress{log: log, bridge: cfg.EgressBridge, maxConns: defaultEgressMaxConns}
	if e.bridge == "" {
		e.bridge = defaultEgressBridge
	}
	if len(e.bridge) > 15 {
		return nil, fmt.Errorf("egress bridge name %q longer than 15 bytes", e.bridge)
	}
	e.prefix = vethPrefix(e.bridge)
	sub := cfg.EgressSubnet
	if sub == "" {
		sub = defaultEgressSubnet
	}
	p, err := netip.ParsePrefix(sub)
	if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
		return nil, fmt.Errorf("egress subnet %q: want an IPv4 prefix of /28 or larger", sub)
	}
	e.subnet = p.Masked()
	e.gw = e.subnet.Addr().Next()
	for _, a := range cfg.EgressAllow {
		ap, err := netip.ParsePrefix(a)
		if err != nil || !ap.Addr().Is4() {
			return nil, fmt.Errorf("egress allow %q: want an IPv4 prefix", a)
		}
		e.allow = append(e.allow, ap.Masked())
	}
	ns := cfg.EgressNameservers
	if ns == nil {
		ns = hostNameservers()
	}
	var resolv strings.Builder
	for _, s := range ns {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("egress nameserver %q: want an IPv4 address", s)
		}
		if a.IsLoopback() {
			// A resolver on the host's loopback (systemd-resolved) is out of
			// a sandbox's reach; name one with EgressNameservers instead.
			log.Warn("sandbox egress: skipping loopback nameserver", "nameserver", s)
			continue
		}
		e.nameserv = append(e.nameserv, a)
		resolv.WriteString("nameserver " + a.String() + "\n")
	}
	e.resolv = resolv.String()
	if len(e.nameserv) == 0 && cfg.EgressNameservers == nil {
		log.Warn("sandbox egress: the host names no nameserver a sandbox can reach; sandboxes cannot resolve names (name one with --sandbox-nameservers)")
	}
	return e, nil
}

// setUp makes the bridge, the nftables table and the host firewall's
// openings, in the calling thread's network namespace, and logs once what
// it changed on the host.
func (e *egress) setUp() (err error) {
	e.reapOrphans()
	e.removeStale()
	if err := subnetFree(e.subnet); err != nil {
		return err
	}
	fwdWas, err := setSysctl("/proc/sys/net/ipv4/ip_forward", "1")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	la := netlink.NewLinkAttrs()
	la.Name = e.bridge
	// A bridge without an address of its own takes its lowest port's,
	// so the gateway's MAC would change as sandboxes come and go and
	// the sandboxes' ARP entries for it would point nowhere.
	la.HardwareAddr = bridgeMAC(e.bridge)
	br := &netlink.Bridge{LinkAttrs: la}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s: %w", e.bridge, err)
	}
	// No IPv6 on the host side: the input rule rejects it anyway, this
	// keeps the bridge from even answering neighbour discovery.
	_ = writeSysctl("/proc/sys/net/ipv6/conf/"+e.bridge+"/disable_ipv6", "1")
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: e.gw.AsSlice(), Mask: net.CIDRMask(e.subnet.Bits(), 32)}}); err != nil {
		return fmt.Errorf("bridge %s address: %w", e.bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", e.bridge, err)
	}
	e.brIndex = br.Attrs().Index
	if err := netlink.LinkSetAlias(br, ownerAlias()); err != nil {
		return fmt.Errorf("bridge %s alias: %w", e.bridge, err)
	}
	if err := e.keepCarrier(); err != nil {
		return err
	}
	if err := e.installRules(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := e.installConnLimit(); err != nil {
		e.log.Warn("sandbox egress: no per-sandbox connection limit (kernel without nft connlimit?); a sandbox can fill the host's conntrack table",
			"err", err)
		e.maxConns = 0
	}
	opened, err := e.openHostFirewall()
	if err != nil {
		return fmt.Errorf("host firewall: %w", err)
	}
	fwd := "already 1"
	if fwdWas != "1" {
		fwd = "set to 1 (was " + fwdWas + "): the host now routes between its interfaces"
	}
	e.log.Info("sandbox egress on: sandboxes reach the outside through NAT; the host, loopback, 169.254.0.0/16, private ranges and other sandboxes stay unreachable",
		"bridge", e.bridge, "subnet", e.subnet, "gateway", e.gw, "nameservers", e.nameserv,
		"net.ipv4.ip_forward", fwd, "max_conns_per_sandbox", e.maxConns,
		"host_firewall_opened", opened, "nftables_table", "inet "+egressTableName(e.bridge))
	return nil
}

// bridgeMAC is a locally administered unicast address derived from the
// bridge's name: stable across restarts, different per bridge.
func bridgeMAC(name string) net.HardwareAddr {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.Sum64())
	mac := net.HardwareAddr(b[:6])
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// sandboxMAC is a locally administered address derived from the
// sandbox's IPv4 address, so a slot's MAC never changes and the host's
// neighbour entry for it can be permanent.
func sandboxMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x6b, a[0], a[1], a[2], a[3]}
}

// subnetFree checks that no address or route of the host (a VPN such as
// Tailscale also lives in 100.64.0.0/10) overlaps the sandboxes' subnet.
func subnetFree(p netip.Prefix) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ap, ok := prefixOf(a.IPNet); ok && ap.Overlaps(p) {
			return fmt.Errorf("egress subnet %s overlaps address %s of link %d; choose another", p, a.IPNet, a.LinkIndex)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if rp, ok := prefixOf(r.Dst); ok && rp.Bits() > 0 && rp.Overlaps(p) && r.Table != unix.RT_TABLE_LOCAL {
			return fmt.Errorf("egress subnet %s overlaps route %s (table %d); choose another", p, r.Dst, r.Table)
		}
	}
	return nil
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

// setSysctl writes v unless already there and returns the old value.
func setSysctl(path, v string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", path, err)
	}
	old := strings.TrimSpace(string(b))
	return old, writeSysctl(path, v)
}

func writeSysctl(path, v string) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == v {
		return nil
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

// hostNameservers are the host's IPv4 nameservers; where /etc/resolv.conf
// names only a local stub (systemd-resolved's 127.0.0.53), the upstream
// servers the stub uses.
func hostNameservers() []string {
	ns := nameserversIn("/etc/resolv.conf")
	if !slices.ContainsFunc(ns, func(s string) bool { return !netip.MustParseAddr(s).IsLoopback() }) {
		if up := nameserversIn("/run/systemd/resolve/resolv.conf"); len(up) > 0 {
			return up
		}
	}
	return ns
}

func nameserversIn(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Is4() {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// removeStale deletes a table, bridge and veths of this bridge's name.
func (e *egress) removeStale() {
	if c, err := nftables.New(); err == nil {
		if t, err := c.ListTableOfFamily(egressTableName(e.bridge), nftables.TableFamilyINet); err == nil && t != nil {
			c.DelTable(t)
			_ = c.Flush()
		}
	}
	e.closeHostFirewall()
	links, _ := netlink.LinkList()
	for _, l := range links {
		if e.ours(l) {
			_ = netlink.LinkDel(l)
		}
	}
}

func (e *egress) close() {
	if e.off {
		return
	}
	e.closeHostFirewall()
	if c, err := nftables.New(); err == nil {
		c.DelTable(&nftables.Table{Name: egressTableName(e.bridge), Family: nftables.TableFamilyINet})
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			e.log.Warn("sandbox egress: cannot remove nftables table", "err", err)
		}
	}
	// The veths of namespaces something still holds, then the bridge.
	links, _ := netlink.LinkList()
	for _, l := range links {
		a := l.Attrs()
		if e.ours(l) {
			// A veth whose namespace just went is gone by itself.
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				e.log.Warn("sandbox egress: cannot remove link", "link", a.Name, "err", err)
			}
		}
	}
}

// Rule building blocks (register 1 throughout).
func ifIndex(key expr.MetaKey, op expr.CmpOp, idx int) []expr.Any {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, uint32(idx))
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

func isIPv4(op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

// ipIn matches the IPv4 source (src) or destination address in p; an
// isIPv4 match must come first.
func ipIn(src bool, p netip.Prefix) []expr.Any {
	off := uint32(16)
	if src {
		off = 12
	}
	mask := net.CIDRMask(p.Bits(), 32)
	a := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func l4Port(proto byte, port uint16) []expr.Any {
	pb := make([]byte, 2)
	binary.BigEndian.PutUint16(pb, port)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pb},
	}
}

func ctEstablished() []expr.Any {
	m := make([]byte, 4)
	binary.NativeEndian.PutUint32(m, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctNew() []expr.Any {
	m := make([]byte, 4)
	binary.NativeEndian.PutUint32(m, expr.CtStateBitNEW)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
	// reject makes a denied connect fail at once (EHOSTUNREACH) rather
	// than time out.
	reject = &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
)

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (e *egress) installRules() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Name: egressTableName(e.bridge), Family: nftables.TableFamilyINet})
	e.table = t
	pol := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &pol})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &pol})
	fromBr := ifIndex(expr.MetaKeyIIF, expr.CmpOpEq, e.brIndex)
	toBr := ifIndex(expr.MetaKeyOIF, expr.CmpOpEq, e.brIndex)
	rule := func(ch *nftables.Chain, ex ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: join(ex...)})
	}

	// The host itself, on any of its addresses: nothing.
	rule(input, fromBr, []expr.Any{reject})

	// Forwarded from a sandbox.
	rule(fwd, fromBr, toBr, []expr.Any{reject}) // another sandbox, through the gateway
	rule(fwd, fromBr, isIPv4(expr.CmpOpNeq), []expr.Any{drop})
	for _, ns := range e.nameserv {
		p := netip.PrefixFrom(ns, 32)
		rule(fwd, fromBr, isIPv4(expr.CmpOpEq), ipIn(false, p), l4Port(unix.IPPROTO_UDP, 53), []expr.Any{accept})
		rule(fwd, fromBr, isIPv4(expr.CmpOpEq), ipIn(false, p), l4Port(unix.IPPROTO_TCP, 53), []expr.Any{accept})
	}
	for _, p := range e.allow {
		rule(fwd, fromBr, isIPv4(expr.CmpOpEq), ipIn(false, p), []expr.Any{accept})
	}
	for _, s := range egressDenied {
		rule(fwd, fromBr, isIPv4(expr.CmpOpEq), ipIn(false, netip.MustParsePrefix(s)), []expr.Any{reject})
	}
	rule(fwd, fromBr, []expr.Any{accept})
	// Towards a sandbox: replies only.
	rule(fwd, toBr, ctEstablished(), []expr.Any{accept})
	rule(fwd, toBr, []expr.Any{drop})

	// Masquerade what leaves for anywhere but the bridge.
	rule(post, isIPv4(expr.CmpOpEq), ipIn(true, e.subnet), ifIndex(expr.MetaKeyOIF, expr.CmpOpNeq, e.brIndex), []expr.Any{&expr.Masq{}})
	return c.Flush()
}

// installConnLimit adds, in a chain of its own, the per-sandbox connection
// limit: one element per sandbox address in a dynamic set, each counting
// that address's tracked connections; a new one beyond maxConns is refused
// at once. The nameservers are exempt (see egress). Its own batch, so a
// kernel without connlimit costs the limit only, not the egress.
func (e *egress) installConnLimit() error {
	if e.maxConns <= 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: egressTableName(e.bridge), Family: nftables.TableFamilyINet}
	pol := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "connlimit", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1), Policy: &pol})
	set := &nftables.Set{Table: t, Name: "conns", KeyType: nftables.TypeIPAddr, Dynamic: true, Size: 65535}
	if err := c.AddSet(set, nil); err != nil {
		return err
	}
	fromBr := ifIndex(expr.MetaKeyIIF, expr.CmpOpEq, e.brIndex)
	rule := func(ex ...[]expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: join(ex...)}) }
	rule(fromBr, isIPv4(expr.CmpOpNeq), []expr.Any{accept}) // the forward chain drops it
	for _, ns := range e.nameserv {
		rule(fromBr, isIPv4(expr.CmpOpEq), ipIn(false, netip.PrefixFrom(ns, 32)), []expr.Any{accept})
	}
	rule(fromBr, ctNew(),
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}},
		[]expr.Any{&expr.Dynset{SrcRegKey: 1, SetName: set.Name, SetID: set.ID, Operation: unix.NFT_DYNSET_OP_ADD,
			Exprs: []expr.Any{&expr.Connlimit{Count: uint32(e.maxConns), Flags: expr.NFT_CONNLIMIT_F_INV}}}},
		[]expr.Any{reject})
	return c.Flush()
}

// addr is a uid slot's sandbox address: the gateway is .1, slot 0 is .2.
func (e *egress) addr(slot int) (netip.Addr, error) {
	a := e.gw
	for range slot + 1 {
		a = a.Next()
	}
	// The last address is the broadcast.
	if !e.subnet.Contains(a) || !e.subnet.Contains(a.Next()) {
		return netip.Addr{}, fmt.Errorf("egress subnet %s has no address for sandbox slot %d", e.subnet, slot)
	}
	return a, nil
}

func (e *egress) vethName(slot int) string { return fmt.Sprintf("%s%x", e.prefix, slot) }

// attach gives the network namespace netfd an eth0 on the bridge with
// slot's address and a default route through the gateway.
func (e *egress) attach(slot, netfd int) (err error) {
	if e.off {
		return nil
	}
	ip, err := e.addr(slot)
	if err != nil {
		return err
	}
	name := e.vethName(slot)
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l) // a crashed predecessor's
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.MasterIndex = e.brIndex
	mac := sandboxMAC(ip)
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(netfd), PeerHardwareAddr: mac}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = netlink.LinkDel(veth)
		}
	}()
	host, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if host.Attrs().MasterIndex != e.brIndex {
		if err := netlink.LinkSetMasterByIndex(host, e.brIndex); err != nil {
			return fmt.Errorf("veth %s master: %w", name, err)
		}
	}
	// Isolated bridge ports forward only to the bridge, never to each
	// other: no sandbox sees another at layer 2.
	if err := netlink.LinkSetIsolated(host, true); err != nil {
		return fmt.Errorf("veth %s isolated: %w", name, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("veth %s up: %w", name, err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(netfd))
	if err != nil {
		return fmt.Errorf("sandbox netns: %w", err)
	}
	defer h.Close()
	in, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("sandbox eth0: %w", err)
	}
	if err := h.AddrAdd(in, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(e.subnet.Bits(), 32)}}); err != nil {
		return fmt.Errorf("sandbox eth0 address: %w", err)
	}
	if err := h.LinkSetUp(in); err != nil {
		return fmt.Errorf("sandbox eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index, Gw: e.gw.AsSlice(),
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
		return fmt.Errorf("sandbox default route: %w", err)
	}
	// Both MACs are fixed (bridgeMAC, sandboxMAC), so neither side needs
	// ARP: no round trip before a sandbox's first packet or its first
	// answer, and nothing lost to a port that is still coming up.
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: e.brIndex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: ip.AsSlice(), HardwareAddr: mac}); err != nil {
		return fmt.Errorf("sandbox neighbour: %w", err)
	}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: in.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: e.gw.AsSlice(), HardwareAddr: bridgeMAC(e.bridge)}); err != nil {
		return fmt.Errorf("sandbox gateway neighbour: %w", err)
	}
	return e.waitUp(netlink.LinkByIndex, host.Attrs().Index, h.LinkByIndex, in.Attrs().Index)
}

// carrierNames are keepCarrier's veth pair (not of the sandboxes' prefix).
func (e *egress) carrierNames() (string, string) {
	b := "c" + e.bridge[:min(len(e.bridge), 12)]
	return b + "-a", b + "-b"
}

// ours: a link of this egress (bridge, a sandbox's veth, the carrier pair).
func (e *egress) ours(l netlink.Link) bool {
	a := l.Attrs()
	port, peer := e.carrierNames()
	return a.Name == e.bridge || (l.Type() == "veth" && (strings.HasPrefix(a.Name, e.prefix) || a.Name == port || a.Name == peer))
}

// keepCarrier gives the bridge a port of its own that is always up. A
// bridge has a carrier only while one of its ports forwards, and the kernel
// applies a bridge's carrier change up to a second late (linkwatch does not
// hurry for bridges); until it has, what the host sends through the bridge
// is dropped. Without this port, the first sandbox after start, or after
// the bridge was left without sandboxes, would lose its first packets.
func (e *egress) keepCarrier() error {
	la := netlink.NewLinkAttrs()
	port, peer := e.carrierNames()
	la.Name = port
	la.MasterIndex = e.brIndex
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		return fmt.Errorf("bridge %s carrier port: %w", e.bridge, err)
	}
	for _, n := range []string{peer, port} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			// Nothing may use it: no addresses, no IPv6.
			_ = writeSysctl("/proc/sys/net/ipv6/conf/"+n+"/disable_ipv6", "1")
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("bridge %s carrier port %s: %w", e.bridge, n, err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		br, err := netlink.LinkByIndex(e.brIndex)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", e.bridge, err)
		}
		if br.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			e.log.Warn("sandbox egress: bridge has no carrier yet; the first sandboxes may lose their first packets", "bridge", e.bridge)
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUp waits for the kernel to see both veth ends' carrier: it does so
// asynchronously (linkwatch), within a millisecond or so, and until then a
// device drops what it sends (its queue is not yet set up) and the bridge
// does not forward the port's frames, so a sandbox's first packets would be
// lost and cost it a TCP retransmission (1 s). Bounded: a link that stays
// down only costs the sandbox its first packets, so the wait then gives up
// rather than fail the sandbox.
func (e *egress) waitUp(hostLink func(int) (netlink.Link, error), hostIndex int, boxLink func(int) (netlink.Link, error), boxIndex int) error {
	deadline := time.Now().Add(time.Second)
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 5*time.Millisecond) {
		hl, err := hostLink(hostIndex)
		if err != nil {
			return fmt.Errorf("veth state: %w", err)
		}
		bl, err := boxLink(boxIndex)
		if err != nil {
			return fmt.Errorf("sandbox eth0 state: %w", err)
		}
		if hl.Attrs().OperState == netlink.OperUp && bl.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			e.log.Warn("sandbox egress: veth not up yet; the sandbox's first packets may be lost", "veth", hl.Attrs().Name)
			return nil
		}
		time.Sleep(wait)
	}
}
