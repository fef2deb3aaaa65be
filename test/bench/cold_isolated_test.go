package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox/linux"
)

// BenchmarkColdStartIsolated is BenchmarkColdStart with the linux backend's
// isolation on (namespaces, pivot_root, seccomp, own network), next to a
// bare fork+exec of the same bootstrap with the same interpreter
// (/usr/bin/python3, not a version manager's). The benchmark binary itself
// serves as the sandboxes' init (see TestMain).
func BenchmarkColdStartIsolated(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("isolation needs root")
	}
	cases := []coldCase{
		{"go", "provided.al2023", "bootstrap", func(b *testing.B) string { return filepath.Dir(buildGoFunction(b, b.TempDir())) }},
		{"python", "python3.12", "app.handler", func(*testing.B) string { return "testdata/python" }},
		{"node", "nodejs20.x", "index.handler", func(*testing.B) string { return "testdata/node" }},
	}
	for _, cc := range cases {
		b.Run(cc.name, func(b *testing.B) {
			benchCold(b, cc, "isolated cold start ", linux.Config{CgroupParent: "kiln-bench-iso", Isolation: true}, true)
		})
	}
}
