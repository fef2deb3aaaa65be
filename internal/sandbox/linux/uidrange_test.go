//go:build linux

package linux

import "testing"

// Two servers on one host never get the same uid range, and a range comes
// back when its holder goes.
func TestClaimUIDRangeDistinct(t *testing.T) {
	a, fa, err := claimUIDRange(65536)
	if err != nil {
		t.Fatal(err)
	}
	b, fb, err := claimUIDRange(65536)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a < defaultUIDBase || b < defaultUIDBase {
		t.Fatalf("ranges %#x and %#x", a, b)
	}
	if err := fa.Close(); err != nil {
		t.Fatal(err)
	}
	c, fc, err := claimUIDRange(65536)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	defer fb.Close()
	if c == b {
		t.Fatalf("claimed the held range %#x again", c)
	}
}
