package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/internal/async"
	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/counting"
	"github.com/kiln-dev/kiln/internal/frontend"
	"github.com/kiln-dev/kiln/internal/logstore"
	"github.com/kiln-dev/kiln/internal/placement"
	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/sigv4"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/internal/workermgr"
)

// Config is `kiln server`'s configuration.
type Config struct {
	Listen  string // default 127.0.0.1:9001
	DataDir string // default ./.kiln
	Region  string // default us-east-1
	// KeepAlive is how long idle sandboxes stay warm (default 5 min).
	KeepAlive time.Duration
	// UnsafeNoCgroups lets the worker run without cgroup limits (development
	// on machines where Kiln is not root). Never in production.
	UnsafeNoCgroups bool
	// ScaleBurst new execution environments per ScaleWindow per function,
	// refilled continuously (0 → Lambda's 1000 per 10 s).
	ScaleBurst  int
	ScaleWindow time.Duration
	Async       AsyncConfig // async.go
	Logger      *slog.Logger
	// Out receives the start-up banner (how to use the credentials).
	Out io.Writer
	// Isolation runs every sandbox in namespaces on its own read-only root
	// with seccomp and its own network (linux.Config.Isolation).
	Isolation bool
	// SandboxEgress gives isolated sandboxes filtered, masqueraded access
	// to the outside (linux.Config.Egress); otherwise only loopback.
	SandboxEgress bool
	// SandboxEgressAllow and SandboxNameservers are linux.Config's
	// EgressAllow and EgressNameservers.
	SandboxEgressAllow, SandboxNameservers []string
	// Cluster makes this server one voter of a cluster (cluster.go).
	Cluster ClusterConfig
}

// Server is a running `kiln server`.
type Server struct {
	cfg      Config
	log      *slog.Logger
	lock     *os.File
	node     *consensus.Node
	counts   *counting.Store
	counter  *counting.Counter
	prov     *provisioning
	cp       *controlplane.Service
	worker   *worker.Worker
	backend  *linux.Backend
	wm       *workermgr.Manager
	http     *http.Server
	listener net.Listener
	served   chan error
	async    *async.Engine
	root     *rootHandler
	// clusterKey signs node-to-node requests (cluster.go).
	clusterKey []byte
	// natsRoutes publishes NATS route addresses (natscluster.go).
	natsRoutes *natsRoutes
}

// codeSource lets the in-process worker read code from the control plane's store.
type codeSource struct{ cp *controlplane.Service }

// In a cluster a zip this node lacks is fetched from a peer.
func (c codeSource) ReadCode(ctx context.Context, sha string) ([]byte, error) {
	return c.cp.ReadCode(ctx, sha)
}

// Start brings every part up and starts serving; it returns once the API
// accepts connections.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = ".kiln"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	cfg.DataDir = dataDir
	if cfg.Listen == "" {
		cfg.Listen = storedListen(dataDir) // a cluster node's, else the default
	}
	s := &Server{cfg: cfg, log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.shutdown(context.Background())
		}
	}()

	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	if s.lock, err = lockDir(dataDir); err != nil {
		return nil, err
	}

	// The listener opens first: in a cluster, peers reach this node's
	// internal routes (and it learns its own address) while it starts.
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen: %w", err)
	}
	if err := s.openNode(ctx, filepath.Join(dataDir, "raft")); err != nil {
		return nil, err
	}
	s.cp, err = controlplane.New(controlplane.Config{DataDir: dataDir, Region: cfg.Region, Node: s.node, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("server: control plane: %w", err)
	}
	// Counting's limits and token leases share the Raft log (its own part).
	s.counts = counting.NewStore(s.node)
	s.node.Register(counting.PartName, s.counts.State)
	s.cp.SetConcurrency(s.counts)
	s.root = &rootHandler{internal: s.internalHandler()}
	s.http = &http.Server{
		Handler:           s.root,
		ReadHeaderTimeout: 30 * time.Second,
		// Bounds a slow upload (a 70 MB CreateFunction body); never a
		// WriteTimeout, which would cut a 15-minute invoke short.
		ReadTimeout: 5 * time.Minute,
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { s.served <- s.http.Serve(s.listener) }()
	if err := s.node.Start(ctx); err != nil {
		return nil, fmt.Errorf("server: consensus start: %w", err)
	}
	// Zips that no command references are leftovers of a crash between
	// writing the code and committing the function.
	if _, err := s.cp.SweepCode(ctx); err != nil {
		log.Warn("sweep unreferenced code", "err", err)
	}
	if err := s.waitForAdmin(ctx); err != nil {
		return nil, err
	}
	admin, created, err := s.ensureAdmin(ctx)
	if err != nil {
		return nil, err
	}

	logs := logstore.New(0, nil)
	// Per data dir, so two servers on one host never share sandbox cgroups,
	// egress bridges or subnets.
	sum := sha256.Sum256([]byte(dataDir))
	s.backend, err = linux.New(linux.Config{
		CgroupParent:      linux.CgroupParentFor(dataDir),
		Logger:            log,
		AllowNoCgroups:    cfg.UnsafeNoCgroups,
		Isolation:         cfg.Isolation,
		Egress:            cfg.SandboxEgress,
		EgressBridge:      "kiln" + hex.EncodeToString(sum[:3]),
		EgressSubnet:      fmt.Sprintf("100.%d.0.0/16", 64+sum[4]%32),
		EgressAllow:       cfg.SandboxEgressAllow,
		EgressNameservers: cfg.SandboxNameservers,
	})
	if err != nil {
		return nil, fmt.Errorf("server: sandbox backend: %w (run as root, or pass --unsafe-no-isolation and --unsafe-no-cgroups for development)", err)
	}
	if err := s.backend.Cleanup(ctx); err != nil {
		log.Warn("cleanup leftover sandboxes", "err", err)
	}
	s.worker, err = worker.New(worker.Config{
		ID:      "local",
		DataDir: filepath.Join(dataDir, "worker"),
		Region:  cfg.Region,
		Backend: s.backend,
		Code:    codeSource{s.cp},
		Logs:    logs,
		Logger:  log,
	})
	if err != nil {
		return nil, err
	}
	s.cp.SetMetrics("ColdStartPhases", func(context.Context) any { return coldStartMetrics(s.worker.ColdStartPhases()) })
	scaler := counting.NewSharedScaler(s.counts, cfg.ScaleBurst, cfg.ScaleWindow) // region-wide: blocks leased from the counting state
	s.wm, err = workermgr.New(workermgr.Config{
		Workers:   []workermgr.Worker{s.worker},
		Placement: placement.Default(placement.Static{s.worker}),
		KeepAlive: cfg.KeepAlive,
		ColdStartGate: func(spec worker.FunctionSpec) error {
			return scaler.AllowNew(spec.AccountID, spec.FunctionName)
		},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	s.cp.OnRetire(s.wm.Retire)
	s.prov = &provisioning{store: s.counts, cp: s.cp, wm: s.wm, log: log}
	s.cp.SetProvisioning(s.prov)
	s.prov.start(ctx, time.Second)

	// One frontend in this process: one lease holder. The holder id is new
	// per start, so a crashed predecessor's lease simply expires.
	s.counter = counting.NewCounter(counting.Config{Store: s.counts, Holder: s.node.ID() + "/" + awsapi.RequestID(), LeaseTTL: cfg.Cluster.LeaseTTL, Logger: log})
	aref := &asyncRef{}
	fe := frontend.New(frontend.Config{
		Async:      aref,
		AsyncAPI:   aref,
		Auth:       sigv4.NewVerifier(cfg.Region, "lambda", s.cp, nil),
		Functions:  s.cp,
		Counting:   s.counter,
		Sandboxes:  s.wm,
		Logs:       logs,
		Management: s.cp.Handler(),
		Logger:     log,
	})
	if err := s.startAsync(ctx, aref, fe); err != nil {
		return nil, err
	}
	var feh http.Handler = fe
	s.root.fe.Store(&feh)

	s.banner(admin, created)
	log.Info("kiln server ready", "listen", s.Addr(), "data_dir", dataDir)
	return s, nil
}

// Addr is the API's listen address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Control exposes the control plane (for in-process tooling and tests).
func (s *Server) Control() *controlplane.Service { return s.cp }

// Sandboxes exposes the worker manager (for tests that count sandboxes).
func (s *Server) Sandboxes() *workermgr.Manager { return s.wm }

// Wait blocks until the HTTP server stops.
func (s *Server) Wait() error {
	err := <-s.served
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close shuts down in reverse start order.
func (s *Server) Close(ctx context.Context) error {
	s.shutdown(ctx)
	return nil
}

func (s *Server) shutdown(ctx context.Context) {
	if s.http != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = s.http.Shutdown(sctx)
		cancel()
	} else if s.listener != nil {
		_ = s.listener.Close()
	}
	if s.async != nil {
		s.async.Close()
	}
	if s.counter != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = s.counter.Close(cctx)
		cancel()
	}
	if s.prov != nil {
		s.prov.close()
	}
	if s.wm != nil {
		s.wm.Close()
	}
	if s.worker != nil {
		_ = s.worker.Close(ctx)
	}
	if s.backend != nil {
		_ = s.backend.Close()
	}
	if s.node != nil {
		_ = s.node.Close()
	}
	if s.lock != nil {
		_ = s.lock.Close()
	}
}

// lockDir takes an exclusive lock so two servers never share a data dir.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("server: data dir %s is in use by another kiln server", dir)
	}
	return f, nil
}

// coldStartPhase is one cold-start phase as the metrics route shows it.
type coldStartPhase struct {
	Name                        string
	Count                       uint64
	P50Micros, P99Micros, MaxMs float64
	TotalMs                     float64
}

func coldStartMetrics(ps []worker.ColdStartPhase) []coldStartPhase {
	out := make([]coldStartPhase, 0, len(ps))
	for _, p := range ps {
		out = append(out, coldStartPhase{
			Name: p.Name, Count: p.Count,
			P50Micros: float64(p.P50.Nanoseconds()) / 1e3, P99Micros: float64(p.P99.Nanoseconds()) / 1e3,
			MaxMs: float64(p.Max.Nanoseconds()) / 1e6, TotalMs: float64(p.Total.Nanoseconds()) / 1e6,
		})
	}
	return out
}
