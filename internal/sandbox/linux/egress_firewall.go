//go:build linux

package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// A host firewall may drop forwarded traffic by default: Docker sets the
// iptables FORWARD policy to DROP, ufw and firewalld drop or reject what
// they do not know. Every base chain at the forward hook sees a sandbox's
// packets and a drop in any of them is final, whatever Kiln's own table
// accepts. So Kiln puts two accept rules (in from its bridge, out to it) at
// the top of each such chain (or of Docker's DOCKER-USER chain, which Docker
// documents for this and never flushes) and removes them on close. Kiln's
// own table still filters: an accept there only ends that chain.

// hostFirewall remembers the legacy iptables rules Kiln inserted; the
// nftables ones are found again by their comment.
type hostFirewall struct {
	legacyBin   string
	legacyRules [][]string // iptables arguments after -I/-D
}

// fwComment marks Kiln's rules in other tables' chains.
func (e *egress) fwComment() string { return egressTableName(e.bridge) }

// ifName is an interface name as nft compares it: NUL-padded to IFNAMSIZ.
func ifName(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// dropsByDefault: the chain's policy is drop, or its last rule is an
// unconditional drop or reject (firewalld's style).
func dropsByDefault(ch *nftables.Chain, rules []*nftables.Rule) bool {
	if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
		return true
	}
	if len(rules) == 0 {
		return false
	}
	for _, x := range rules[len(rules)-1].Exprs {
		switch v := x.(type) {
		case *expr.Counter, *expr.Log:
		case *expr.Reject:
			return true
		case *expr.Verdict:
			return v.Kind == expr.VerdictDrop
		default:
			return false // a condition: not unconditional
		}
	}
	return false
}

// forwardDropChains lists, in the calling thread's network namespace, the
// base chains at the forward hook that IPv4 traffic passes (families ip
// and inet), that are not a Kiln table's, and that drop by default.
func forwardDropChains(c *nftables.Conn) ([]*nftables.Chain, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []*nftables.Chain
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Type != nftables.ChainTypeFilter ||
			(ch.Table.Family != nftables.TableFamilyIPv4 && ch.Table.Family != nftables.TableFamilyINet) ||
			strings.HasPrefix(ch.Table.Name, "kiln-") {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("rules of %s %s: %w", ch.Table.Name, ch.Name, err)
		}
		if dropsByDefault(ch, rules) {
			out = append(out, ch)
		}
	}
	return out, nil
}

// openHostFirewall inserts the accept rules wherever a forward chain would
// drop the sandboxes' traffic, and returns what it opened, for the log.
func (e *egress) openHostFirewall() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	drops, err := forwardDropChains(c)
	if err != nil {
		return nil, err
	}
	var opened []string
	if len(drops) > 0 {
		chains, err := c.ListChains()
		if err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
		for _, ch := range drops {
			target := ch
			for _, o := range chains {
				if o.Table.Name == ch.Table.Name && o.Table.Family == ch.Table.Family && o.Name == "DOCKER-USER" && o.Hooknum == nil {
					target = o
				}
			}
			ud := userdata.AppendString(nil, userdata.TypeComment, e.fwComment())
			for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
				c.InsertRule(&nftables.Rule{Table: target.Table, Chain: target, UserData: ud, Exprs: []expr.Any{
					&expr.Meta{Key: key, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifName(e.bridge)},
					accept,
				}})
			}
			opened = append(opened, fmt.Sprintf("nftables %s %s chain %s", familyName(target.Table.Family), target.Table.Name, target.Name))
		}
		if err := c.Flush(); err != nil {
			return nil, fmt.Errorf("insert accept rules into %v: %w", opened, err)
		}
	}
	legacy, err := e.openLegacyForward()
	if err != nil {
		return nil, err
	}
	return append(opened, legacy...), nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(int(f))
}

// closeHostFirewall removes every rule carrying this bridge's comment
// (those of a crashed predecessor too) and the legacy rules it inserted.
func (e *egress) closeHostFirewall() {
	if c, err := nftables.New(); err == nil {
		if chains, err := c.ListChains(); err == nil {
			n := 0
			for _, ch := range chains {
				if ch.Table.Family != nftables.TableFamilyIPv4 && ch.Table.Family != nftables.TableFamilyINet ||
					strings.HasPrefix(ch.Table.Name, "kiln-") {
					continue
				}
				rules, err := c.GetRules(ch.Table, ch)
				if err != nil {
					continue
				}
				for _, r := range rules {
					if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == e.fwComment() {
						if c.DelRule(r) == nil {
							n++
						}
					}
				}
			}
			if n > 0 {
				if err := c.Flush(); err != nil {
					e.log.Warn("sandbox egress: cannot remove accept rules from the host firewall", "err", err)
				}
			}
		}
	}
	for _, r := range e.fw.legacyRules {
		if _, err := runIptables(e.fw.legacyBin, append([]string{"-D"}, r...)...); err != nil {
			e.log.Warn("sandbox egress: cannot remove accept rule from legacy iptables", "rule", r, "err", err)
		}
	}
	if e.fw.legacyRules == nil {
		// Another process's (a crashed Kiln's): remove what it would have
		// inserted, if legacy iptables is there at all.
		if bin := legacyBinIfFilter(); bin != "" {
			for _, chain := range []string{"FORWARD", "DOCKER-USER"} {
				for _, r := range e.legacyRuleSpecs(chain) {
					for range 8 {
						if _, err := runIptables(bin, append([]string{"-D"}, r...)...); err != nil {
							break
						}
					}
				}
			}
		}
	}
	e.fw.legacyRules = nil
}

// legacyRuleSpecs are the rules openLegacyForward inserts into chain.
func (e *egress) legacyRuleSpecs(chain string) [][]string {
	var out [][]string
	for _, dir := range []string{"-i", "-o"} {
		out = append(out, []string{chain, dir, e.bridge, "-m", "comment", "--comment", e.fwComment(), "-j", "ACCEPT"})
	}
	return out
}

// legacyBinIfFilter is legacyIptables when a legacy filter table exists.
func legacyBinIfFilter() string {
	names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if err != nil || !bytes.Contains(append([]byte("\n"), names...), []byte("\nfilter\n")) {
		return ""
	}
	return legacyIptables()
}

// openLegacyForward does for iptables-legacy (x_tables, invisible to
// nftables) what openHostFirewall does for nftables, through the iptables
// binary. No legacy filter table: nothing to do.
func (e *egress) openLegacyForward() ([]string, error) {
	if names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names"); err != nil || !bytes.Contains(append([]byte("\n"), names...), []byte("\nfilter\n")) {
		return nil, nil
	}
	bin := legacyIptables()
	if bin == "" {
		// The table exists but cannot be read: say so, and go on.
		e.log.Warn("sandbox egress: a legacy iptables filter table exists but no iptables-legacy binary to inspect it; if its FORWARD chain drops, sandboxes have no network (allow traffic in from and out to the bridge)",
			"bridge", e.bridge)
		return nil, nil
	}
	out, err := runIptables(bin, "-S", "FORWARD")
	if err != nil {
		return nil, fmt.Errorf("%s -S FORWARD: %w", bin, err)
	}
	if !legacyDrops(out) {
		return nil, nil
	}
	chain := "FORWARD"
	if _, err := runIptables(bin, "-S", "DOCKER-USER"); err == nil {
		chain = "DOCKER-USER"
	}
	e.fw.legacyBin = bin
	for _, rule := range e.legacyRuleSpecs(chain) {
		// A crashed predecessor's copy first, so rules never pile up.
		for range 8 {
			if _, err := runIptables(bin, append([]string{"-D"}, rule...)...); err != nil {
				break
			}
		}
		if _, err := runIptables(bin, append([]string{"-I", chain, "1"}, rule[1:]...)...); err != nil {
			return nil, fmt.Errorf("%s -I %s: %w", bin, chain, err)
		}
		e.fw.legacyRules = append(e.fw.legacyRules, rule)
	}
	return []string{"iptables-legacy filter chain " + chain}, nil
}

// legacyDrops reads `iptables -S FORWARD`: policy DROP, or a last rule
// that drops or rejects everything.
func legacyDrops(s string) bool {
	var last string
	for l := range strings.Lines(s) {
		l = strings.TrimSpace(l)
		if l == "-P FORWARD DROP" {
			return true
		}
		if strings.HasPrefix(l, "-A FORWARD") {
			last = l
		}
	}
	return last == "-A FORWARD -j DROP" || strings.HasPrefix(last, "-A FORWARD -j REJECT")
}

// legacyIptables finds a binary that speaks to x_tables: iptables-legacy,
// or an iptables that says it is the legacy one.
func legacyIptables() string {
	if p, err := exec.LookPath("iptables-legacy"); err == nil {
		return p
	}
	p, err := exec.LookPath("iptables")
	if err != nil {
		return ""
	}
	if out, err := runIptables(p, "-V"); err == nil && strings.Contains(out, "legacy") {
		return p
	}
	return ""
}

func runIptables(bin string, args ...string) (string, error) {
	if bin == "" {
		return "", errors.New("no iptables binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// -w: wait for the xtables lock rather than fail beside another user.
	if len(args) == 0 || args[0] != "-V" {
		args = append([]string{"-w"}, args...)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
