//go:build linux

package linux

import (
	"os"
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
)

// TestMain lets the test binary serve as the isolated sandboxes' init, as
// cmd/kiln does for the real binary.
func TestMain(m *testing.M) {
	if nsinit.IsInit() {
		nsinit.Main()
	}
	os.Exit(m.Run())
}
