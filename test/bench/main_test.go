package bench

import (
	"os"
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
	"github.com/kiln-dev/kiln/test/kilnproc"
)

// TestMain lets the benchmark binary serve as the isolated sandboxes' init,
// as cmd/kiln does for the real binary (the in-process server re-executes
// its own executable to start each sandbox).
func TestMain(m *testing.M) {
	if nsinit.IsInit() {
		nsinit.Main()
	}
	os.Exit(kilnproc.RunTests(m))
}
