package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// serverPackages are the parts a client must never link: the CLI reaches
// them only over HTTP.
var serverPackages = []string{
	"controlplane", "frontend", "worker", "workermgr", "sandbox",
	"runtimeapi", "consensus", "server", "counting", "placement",
}

// TestNoServerImports checks the package's transitive (non-test) imports.
func TestNoServerImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(goTool, "list", "-e", "-deps", "-f", "{{.ImportPath}}",
		"github.com/kiln-dev/kiln/internal/cli").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !containsAny(strings.Join(deps, " "), "github.com/aws/aws-sdk-go-v2/service/lambda") {
		t.Fatalf("go list output does not look like a dependency list:\n%s", out)
	}
	const prefix = "github.com/kiln-dev/kiln/internal/"
	for _, dep := range deps {
		rest, ok := strings.CutPrefix(dep, prefix)
		if !ok {
			continue
		}
		top, _, _ := strings.Cut(rest, "/")
		for _, banned := range serverPackages {
			if top == banned {
				t.Errorf("internal/cli depends on server-side package %s", dep)
			}
		}
	}
}
