package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// linkedVersion is set only by the linker (-ldflags "-X
// github.com/kiln-dev/kiln/internal/cli.linkedVersion=v1.2.3") for releases.
var linkedVersion string

func newVersionCommand() *command {
	return newCommand("version", "version", "Prints the version of this kiln binary.", 0, 0, true)
}

func runVersion(_ context.Context, e *env, args []string) int {
	cmd := newVersionCommand()
	if _, code, done := cmd.parse(e, args); done {
		return code
	}
	fmt.Fprintf(e.stdout, "kiln %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// version is the release version, else the module version and VCS revision
// recorded in the build, else "dev".
func version() string {
	if linkedVersion != "" {
		return linkedVersion
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
