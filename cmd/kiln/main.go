// Command kiln is the one Kiln binary: `kiln server` runs the platform;
// every other verb is a client of its API.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
)

func main() {
	// An isolated sandbox's init is this binary re-executed (nsinit). In
	// cgo builds nsinit's C constructor takes the init over before main
	// runs; this is the pure-Go init of CGO_ENABLED=0 builds.
	if nsinit.IsInit() {
		nsinit.Main()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "server" {
		os.Exit(runServer(ctx, os.Args[2:]))
	}
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
