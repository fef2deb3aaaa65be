package async

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// Names in JetStream.
const (
	eventStream   = "KILN_EVENTS_" // KILN_EVENTS_<partition>
	eventSubject  = "kiln.ev"      // kiln.ev.<partition>.<account>
	pollerName    = "kiln-pollers"
	runsBucket    = "KILN_ASYNC_RUNS"
	queueStreamPf = "KILNQ_" // KILNQ_<account>_<name>
	queueSubject  = "kiln.q" // kiln.q.<account>.<name>
	queueConsumer = "kiln-receivers"
)

// Lambda's async defaults and limits.
const (
	DefaultMaxRetries = 2
	DefaultMaxAge     = 6 * time.Hour
	// MaxPayload is the Event payload limit (1 MB today; 256 KB before 2025).
	MaxPayload = 1048576
)

// Invoker runs one event through the synchronous invoke path.
type Invoker interface {
	Invoke(ctx context.Context, in *frontend.InvokeInput) (*frontend.InvokeOutput, error)
}

// ConfigSource gives the FunctionEventInvokeConfig that applies to a
// function and qualifier ("$LATEST" for unqualified invokes).
type ConfigSource interface {
	EventInvokeConfig(account, function, qualifier string) (controlplane.EventInvokeConfig, bool)
}

// ReservedConcurrency is optionally implemented by the ConfigSource: a
// function with reserved concurrency 0 sends its events straight to the
// failure destination.
type ReservedConcurrency interface {
	ReservedConcurrency(account, function string) (int, bool)
}

// Config wires an Engine.
type Config struct {
	// DataDir is the server's data dir; the embedded store is DataDir/nats.
	DataDir string
	// NATSURL selects an external NATS server instead of the embedded one.
	NATSURL string
	Region  string
	Invoker Invoker
	Configs ConfigSource
	// RetryScale multiplies Lambda's retry delays (1 min, 2 min) and the
	// 1 s → 5 min throttle backoff; tests use 0.01 or less. 0 means 1.
	RetryScale float64
	// Lease is the consumer's AckWait: an event not acked or extended within
	// it is redelivered. Runs extend it while they last. 0 means 30 s.
	Lease time.Duration
	// Concurrency is how many events run at once on this node (default 64).
	Concurrency int
	// Mappings lists event-source mappings to run; nil runs none.
	Mappings MappingSource
	// MappingSync is how often mapping changes are picked up (default 1 s).
	MappingSync time.Duration
	// Partitions is how many event streams share the queue (default 4).
	// Each stream fsyncs on its own, so accepts on different partitions
	// are stored in parallel. Fixed for the life of a store.
	Partitions int
	// NoSync turns off fsync-per-write (SyncAlways). An acked event then
	// survives a SIGKILL of the server (it is in the kernel's page cache)
	// but not a power loss or kernel crash within the 2 min sync interval.
	NoSync bool
	// Cluster joins the embedded NATS server to the other Kiln nodes' (a
	// NATS cluster with JetStream clustering, cluster.go); nil runs it alone.
	// Its store is then DataDir/nats-cluster.
	Cluster *ClusterConfig
	// IsAdmin, when set, limits the node-wide metrics route to the accounts
	// it accepts (the counters span every account).
	IsAdmin func(account string) bool
	Logger  *slog.Logger
	Now     func() time.Time
}

// Engine is the async data plane of one server node.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	ns    *server.Server // nil with an external NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	runs  jetstream.KeyValue
	stats Stats
	// streams holds Kiln streams' shard counts and checkpoints (stream.go).
	streams streamState

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open starts (or connects to) NATS, declares the streams and starts the
// pollers. Close stops them.
func Open(ctx context.Context, cfg Config) (_ *Engine, err error) {
	if cfg.Invoker == nil {
		return nil, errors.New("async: Config.Invoker is required")
	}
	if cfg.RetryScale <= 0 {
		cfg.RetryScale = 1
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.MappingSync <= 0 {
		cfg.MappingSync = time.Second
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "async")
	if e.now == nil {
		e.now = time.Now
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if cfg.NATSURL != "" {
		e.nc, err = nats.Connect(cfg.NATSURL, nats.Name("kiln"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("async: connect %s: %w", cfg.NATSURL, err)
		}
		// An event is one message (payload plus headers) and a destination
		// record carries request and response payloads; a server at the
		// NATS default max_payload (1 MB) refuses Lambda-sized ones.
		if mp := e.nc.MaxPayload(); mp < 8*1024*1024 {
			e.log.Warn("external NATS max_payload is below 8 MB: large Event payloads and destination records will be refused; set max_payload: 8MB on the NATS server", "max_payload", mp)
		}
	} else {
		if err := e.startEmbedded(); err != nil {
			return nil, err
		}
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return nil, fmt.Errorf("async: jetstream: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	if err := e.declareAndStart(ctx, rctx); err != nil {
		return nil, err
	}
	return e, nil
}

// startEmbedded runs nats-server in this process with no network listener:
// the client connects in-process, so nothing outside can reach the store.
func (e *Engine) startEmbedded() error {
	if e.cfg.DataDir == "" {
		return errors.New("async: Config.DataDir is required for the embedded NATS server")
	}
	dir := filepath.Join(e.cfg.DataDir, "nats")
	if e.cfg.Cluster != nil {
		// A clustered store is another layout (meta group, per-stream Raft
		// groups); a server that ran alone before keeps its old store apart.
		dir = filepath.Join(e.cfg.DataDir, "nats-cluster")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("async: store dir: %w", err)
	}
	opts := &server.Options{
		ServerName: "kiln",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		// Durability: JetStream writes every message to its block file
		// before acking the publish (flush in place, not AsyncFlush, for a
		// single-replica stream), so an acked event survives a SIGKILL of
		// this process. SyncAlways adds an fsync per write so it also
		// survives power loss; the default sync_interval (2 min) would leave
		// up to two minutes of acked events in the page cache only.
		SyncAlways:        !e.cfg.NoSync,
		NoLog:             e.cfg.Cluster == nil,
		NoSigs:            true,
		MaxPayload:        8 * 1024 * 1024,
		JetStreamMaxStore: 0,
	}
	connOpts := []nats.Option{nats.InProcessServer(nil), nats.Name("kiln")}
	if e.cfg.Cluster != nil {
		token, err := clusterOptions(opts, e.cfg.Cluster)
		if err != nil {
			return err
		}
		connOpts = append(connOpts, nats.Token(token))
		if old := filepath.Join(e.cfg.DataDir, "nats", "jetstream"); dirExists(old) {
			e.log.Warn("this node ran its NATS store alone before it joined a cluster; events, queues and streams there are not moved into the cluster", "dir", old)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("async: nats server: %w", err)
	}
	if e.cfg.Cluster != nil {
		ns.SetLoggerV2(natsLog{e.log.With("nats", e.cfg.Cluster.Name)}, true, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		// A server whose listeners failed can block in Shutdown waiting for
		// its routing goroutine (it waits for a client listener that never
		// came); don't let a failed start hang kiln server's start too.
		done := make(chan struct{})
		go func() { ns.Shutdown(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			e.log.Error("embedded nats server did not shut down after a failed start")
		}
		return errors.New("async: embedded nats server did not start")
	}
	e.ns = ns
	connOpts[0] = nats.InProcessServer(ns)
	nc, err := nats.Connect("", connOpts...)
	if err != nil {
		return fmt.Errorf("async: in-process connect: %w", err)
	}
	e.nc = nc
	return nil
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func partitionStream(p int) string { return eventStream + strconv.Itoa(p) }

// partition places an event by its request id, so its retries stay put.
func (e *Engine) partition(requestID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(requestID))
	return int(h.Sum32() % uint32(e.cfg.Partitions))
}

func (e *Engine) declare(ctx context.Context) error {
	for p := range e.cfg.Partitions {
		err := e.jsRetry(ctx, func(ctx context.Context) error {
			_, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name:       partitionStream(p),
				Subjects:   []string{eventSubject + "." + strconv.Itoa(p) + ".>"},
				Retention:  jetstream.WorkQueuePolicy,
				Storage:    jetstream.FileStorage,
				Duplicates: 2 * time.Minute,
				MaxMsgSize: 8 * 1024 * 1024,
				Replicas:   e.replicas(),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("async: event stream: %w", err)
		}
		err = e.jsRetry(ctx, func(ctx context.Context) error {
			_, err := e.js.CreateOrUpdateConsumer(ctx, partitionStream(p), jetstream.ConsumerConfig{
				Durable:       pollerName,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       e.cfg.Lease,
				MaxDeliver:    -1,
				MaxAckPending: 100000,
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("async: poller consumer: %w", err)
		}
	}
	err := e.jsRetry(ctx, func(ctx context.Context) (err error) {
		e.runs, err = e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   runsBucket,
			TTL:      DefaultMaxAge + time.Hour,
			Storage:  jetstream.FileStorage,
			Replicas: e.replicas(),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("async: runs bucket: %w", err)
	}
	return nil
}

// Close stops the pollers (running events finish first), then NATS.
func (e *Engine) Close() {
	if e.cancel != nil {
		e.cancel()
	}
	e.wg.Wait()
	if e.nc != nil {
		_ = e.nc.Drain()
		e.nc.Close()
	}
	if e.ns != nil {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
	}
}

// Stats returns a snapshot of the engine's counters plus the queue depth.
func (e *Engine) Stats(ctx context.Context) StatsSnapshot {
	s := e.stats.snapshot()
	for p := range e.cfg.Partitions {
		if st, err := e.js.Stream(ctx, partitionStream(p)); err == nil {
			if info, err := st.Info(ctx); err == nil {
				s.QueueDepth += info.State.Msgs
				if info.State.Msgs > 0 {
					s.OldestEventAgeSeconds = max(s.OldestEventAgeSeconds, e.now().Sub(info.State.FirstTime).Seconds())
				}
			}
		}
	}
	return s
}
