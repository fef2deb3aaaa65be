package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/internal/async"
	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// AsyncConfig configures the async data plane (package async).
type AsyncConfig struct {
	// NATSURL selects an external NATS server; "" embeds one with its
	// store in <data-dir>/nats.
	NATSURL string
	// RetryScale scales Lambda's async retry delays (tests: 0.01).
	RetryScale float64
	// Lease is the poller lease (JetStream AckWait); 0 means 30 s.
	Lease time.Duration
	// NoSync acks events once written (page cache) instead of fsynced.
	NoSync bool
}

// asyncRef lets the frontend be built before the engine that invokes
// through it; it is filled in before the API starts listening.
type asyncRef struct{ e *async.Engine }

func (a *asyncRef) Enqueue(ctx context.Context, ev *frontend.AsyncEvent) error {
	if a.e == nil {
		return errdefs.ServiceUnavailable("The async queue is not running.")
	}
	return a.e.Enqueue(ctx, ev)
}

func (a *asyncRef) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.e.Handler().ServeHTTP(w, r) }

// asyncConfigs adds reserved concurrency (when counting provides it) to
// the control plane's event invoke configs.
type asyncConfigs struct {
	*controlplane.Service
	reserved interface {
		Reserved(account, function string) int
	}
}

func (c asyncConfigs) ReservedConcurrency(account, function string) (int, bool) {
	if c.reserved == nil {
		return 0, false
	}
	n := c.reserved.Reserved(account, function)
	return n, n >= 0
}

func (s *Server) startAsync(ctx context.Context, ref *asyncRef, fe *frontend.Frontend) error {
	cfgs := asyncConfigs{Service: s.cp}
	if r, ok := any(s.counts).(interface {
		Reserved(account, function string) int
	}); ok {
		cfgs.reserved = r
	}
	cluster, err := s.natsCluster(ctx) // natscluster.go
	if err != nil {
		return err
	}
	e, err := async.Open(ctx, async.Config{
		Cluster:    cluster,
		DataDir:    s.cfg.DataDir,
		NATSURL:    s.cfg.Async.NATSURL,
		Region:     s.cfg.Region,
		Invoker:    fe,
		Configs:    cfgs,
		Mappings:   s.cp,
		RetryScale: s.cfg.Async.RetryScale,
		Lease:      s.cfg.Async.Lease,
		NoSync:     s.cfg.Async.NoSync,
		IsAdmin:    s.cp.IsAdmin,
		Logger:     s.log,
	})
	if err != nil {
		return fmt.Errorf("server: async: %w", err)
	}
	ref.e = e
	s.async = e
	s.cp.SetStreams(e) // CreateEventSourceMapping checks a stream exists
	s.cp.SetMetrics("Async", func(ctx context.Context) any { return e.Stats(ctx) })
	return nil
}

// Async exposes the async engine (for tests and metrics).
func (s *Server) Async() *async.Engine { return s.async }
