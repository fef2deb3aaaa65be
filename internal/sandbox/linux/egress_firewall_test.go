//go:build linux

package linux

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestLegacyDrops(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     bool
	}{
		{"docker", "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n", true},
		{"accept", "-P FORWARD ACCEPT\n", false},
		{"final drop", "-P FORWARD ACCEPT\n-A FORWARD -i eth0 -j ACCEPT\n-A FORWARD -j DROP\n", true},
		{"final reject", "-P FORWARD ACCEPT\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n", true},
		{"conditional drop", "-P FORWARD ACCEPT\n-A FORWARD -i eth1 -j DROP\n", false},
		{"empty", "", false},
	} {
		if got := legacyDrops(tc.in); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDropsByDefault(t *testing.T) {
	drop, acc := nftables.ChainPolicyDrop, nftables.ChainPolicyAccept
	rule := func(e ...expr.Any) *nftables.Rule { return &nftables.Rule{Exprs: e} }
	for _, tc := range []struct {
		name  string
		pol   *nftables.ChainPolicy
		rules []*nftables.Rule
		want  bool
	}{
		{"policy drop", &drop, nil, true},
		{"policy accept", &acc, nil, false},
		{"no policy", nil, nil, false},
		{"final drop", &acc, []*nftables.Rule{rule(&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})}, true},
		{"final reject", &acc, []*nftables.Rule{rule(&expr.Reject{})}, true},
		{"final accept", &acc, []*nftables.Rule{rule(&expr.Verdict{Kind: expr.VerdictAccept})}, false},
		{"conditional drop", &acc, []*nftables.Rule{rule(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Register: 1, Data: ifName("eth1")}, &expr.Verdict{Kind: expr.VerdictDrop})}, false},
	} {
		if got := dropsByDefault(&nftables.Chain{Policy: tc.pol}, tc.rules); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
