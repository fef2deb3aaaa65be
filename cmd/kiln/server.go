package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/server"
)

const serverUsage = `Usage: kiln server [flags]

Runs the whole Kiln platform in one process on embedded defaults: the AWS
Lambda API, the control plane (one Raft voter on the data dir), a worker with
the linux sandbox backend, placement, the worker manager and counting.
On first start it creates an account and writes its keys to
<data-dir>/credentials and the region to <data-dir>/config.

Cluster (3 or 5 voters): give every node the same --peers list and the same
cluster key (--cluster-key-file, or KILN_CLUSTER_KEY as 64 hex digits), e.g.
  kiln server --node-id n1 --listen 10.0.0.1:9001 --raft-addr 10.0.0.1:7100 \
    --peers n1=10.0.0.1:7100@10.0.0.1:9001,n2=...,n3=... --cluster-key-file key
or start the first node alone with --node-id and --raft-addr (it writes
<data-dir>/cluster.key) and add others with --node-id, --raft-addr,
--join <its --listen address> and that key. (A server first started without
--raft-addr is a lone in-memory voter and cannot grow into a cluster.)
A restart needs only --data-dir: the node id, Raft and API addresses,
membership and key are kept in the data dir.

Flags:
`

func runServer(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("kiln server", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	listen := fs.String("listen", "127.0.0.1:9001", "address of the Lambda API (a cluster node keeps it in its data dir)")
	dataDir := fs.String("data-dir", ".kiln", "where Kiln keeps its state")
	region := fs.String("region", "us-east-1", "the region Kiln reports and checks signatures against")
	keepAlive := fs.Duration("keep-alive", 5*time.Minute, "how long an idle sandbox stays warm")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	natsURL := fs.String("nats-url", "", "use this NATS JetStream server for the async queue instead of the embedded one (set max_payload: 8MB on it: 1 MB Event payloads and destination records exceed the 1 MB default)")
	asyncLease := fs.Duration("async-lease", 30*time.Second, "how long a poller holds an async event before another may run it (extended while the event runs)")
	asyncFsync := fs.Bool("async-fsync", true, "fsync every accepted async event before answering 202 (false: the event survives a crash of kiln but not of the machine)")
	asyncRetryScale := fs.Float64("async-retry-scale", 1, "scale Lambda's async retry delays (1 min, 2 min; 1 s to 5 min backoff); e.g. 0.01 for tests")
	unsafeNoIsolation := fs.Bool("unsafe-no-isolation", false, "DEVELOPMENT ONLY: run functions as plain host processes, without namespaces, seccomp or a root filesystem of their own (isolation needs root)")
	sandboxEgress := fs.Bool("sandbox-egress", true, "give isolated sandboxes outbound network access through a NAT bridge, as Lambda does (the host, loopback, 169.254.0.0/16, private ranges and other sandboxes stay unreachable; sets net.ipv4.ip_forward=1); false: loopback only")
	sandboxEgressAllow := fs.String("sandbox-egress-allow", "", "with --sandbox-egress: comma-separated IPv4 prefixes sandboxes may reach although private (the host's own addresses stay unreachable)")
	sandboxNameservers := fs.String("sandbox-nameservers", "", "with --sandbox-egress: comma-separated IPv4 resolvers for sandboxes (default: the host's non-loopback ones)")
	nodeID := fs.String("node-id", "", "cluster: this voter's id (first start; kept in the data dir)")
	raftAddr := fs.String("raft-addr", "", "cluster: TCP address for Raft traffic, e.g. 10.0.0.1:7100 (first start; kept in the data dir)")
	peers := fs.String("peers", "", "cluster: the static voter set id=raftaddr@httpaddr,... (the same on every node; bootstraps on first start)")
	join := fs.String("join", "", "cluster: API address (host:port) of a running member to join as a voter (first start only)")
	clusterKeyFile := fs.String("cluster-key-file", "", "cluster: file with the cluster key (64 hex digits; the first node's <data-dir>/cluster.key); or set KILN_CLUSTER_KEY")
	natsClusterAddr := fs.String("nats-cluster-addr", "", "cluster: host:port where the embedded NATS server takes routes from the other nodes (default: the --raft-addr host with a free port; kept in the data dir)")
	leaseTTL := fs.Duration("counting-lease-ttl", 10*time.Second, "how long a node's leased concurrency tokens stay taken after it dies")
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
	clusterKey, err := readClusterKey(*clusterKeyFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln server: %v\n", err)
		return 2
	}
	// An unset --listen lets a cluster node reuse the address kept in its
	// data dir (server.Config.Listen "" → stored, else the default).
	listenAddr := ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "listen" {
			listenAddr = *listen
		}
	})
	srv, err := server.Start(ctx, server.Config{
		Listen:             listenAddr,
		DataDir:            *dataDir,
		Region:             *region,
		KeepAlive:          *keepAlive,
		UnsafeNoCgroups:    *unsafeNoCgroups,
		Isolation:          !*unsafeNoIsolation,
		SandboxEgress:      *sandboxEgress,
		SandboxEgressAllow: splitList(*sandboxEgressAllow),
		SandboxNameservers: splitList(*sandboxNameservers),
		Async:              server.AsyncConfig{NATSURL: *natsURL, RetryScale: *asyncRetryScale, Lease: *asyncLease, NoSync: !*asyncFsync},
		Cluster: server.ClusterConfig{
			NodeID:   *nodeID,
			RaftAddr: *raftAddr,
			Peers:    splitList(*peers),
			Join:     splitList(*join),
			Key:      clusterKey,
			LeaseTTL: *leaseTTL,
			NATSAddr: *natsClusterAddr,
		},
		Logger: log,
		Out:    os.Stdout,
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

// readClusterKey reads the cluster key from a file, else KILN_CLUSTER_KEY;
// nil when neither is given.
func readClusterKey(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cluster key: %w", err)
		}
		return consensus.ParseKey(b)
	}
	if v := os.Getenv("KILN_CLUSTER_KEY"); v != "" {
		return consensus.ParseKey([]byte(v))
	}
	return nil, nil
}
