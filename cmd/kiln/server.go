package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kiln-dev/kiln/internal/server"
)

const serverUsage = `Usage: kiln server [flags]

Runs the whole Kiln platform in one process on embedded defaults: the AWS
Lambda API, the control plane (one Raft voter on the data dir), a worker with
the linux sandbox backend, placement, the worker manager and counting.
On first start it creates an account and writes its keys to
<data-dir>/credentials and the region to <data-dir>/config.

Flags:
`

func runServer(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("kiln server", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	listen := fs.String("listen", "127.0.0.1:9001", "address of the Lambda API")
	dataDir := fs.String("data-dir", ".kiln", "where Kiln keeps its state")
	region := fs.String("region", "us-east-1", "the region Kiln reports and checks signatures against")
	keepAlive := fs.Duration("keep-alive", 5*time.Minute, "how long an idle sandbox stays warm")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	natsURL := fs.String("nats-url", "", "use this NATS JetStream server for the async queue instead of the embedded one")
	asyncLease := fs.Duration("async-lease", 30*time.Second, "how long a poller holds an async event before another may run it (extended while the event runs)")
	asyncFsync := fs.Bool("async-fsync", true, "fsync every accepted async event before answering 202 (false: the event survives a crash of kiln but not of the machine)")
	asyncRetryScale := fs.Float64("async-retry-scale", 1, "scale Lambda's async retry delays (1 min, 2 min; 1 s to 5 min backoff); e.g. 0.01 for tests")
	unsafeNoIsolation := fs.Bool("unsafe-no-isolation", false, "DEVELOPMENT ONLY: run functions as plain host processes, without namespaces, seccomp or a root filesystem of their own (isolation needs root)")
	sandboxEgress := fs.Bool("sandbox-egress", false, "give isolated sandboxes outbound network access through a NAT bridge (the host, loopback, 169.254.0.0/16, private ranges and other sandboxes stay unreachable); default: loopback only")
	sandboxEgressAllow := fs.String("sandbox-egress-allow", "", "with --sandbox-egress: comma-separated IPv4 prefixes sandboxes may reach although private (the host's own addresses stay unreachable)")
	sandboxNameservers := fs.String("sandbox-nameservers", "", "with --sandbox-egress: comma-separated IPv4 resolvers for sandboxes (default: the host's non-loopback ones)")
	unsafeNoCgroups := fs.Bool("unsafe-no-cgroups", false, "DEVELOPMENT ONLY: run sandboxes without cgroup limits when Kiln is not root")
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, serverUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "kiln server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "kiln server: bad --log-level %q\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.Start(ctx, server.Config{
		Listen:             *listen,
		DataDir:            *dataDir,
		Region:             *region,
		KeepAlive:          *keepAlive,
		UnsafeNoCgroups:    *unsafeNoCgroups,
		Isolation:          !*unsafeNoIsolation,
		SandboxEgress:      *sandboxEgress,
		SandboxEgressAllow: splitList(*sandboxEgressAllow),
		SandboxNameservers: splitList(*sandboxNameservers),
		Async:              server.AsyncConfig{NATSURL: *natsURL, RetryScale: *asyncRetryScale, Lease: *asyncLease, NoSync: !*asyncFsync},
		Logger:             log,
		Out:                os.Stdout,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln server: %v\n", err)
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Wait() }()
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			fmt.Fprintf(os.Stderr, "kiln server: %v\n", err)
			code = 1
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Close(sctx)
	return code
}
