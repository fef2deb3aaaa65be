package controlplane

import (
	"context"
	"sync"
)

// MetricsSource is one part's operator metrics (for example the worker's
// cold-start phases, or the async engine's counters), returned as a JSON
// value under its name.
type MetricsSource func(ctx context.Context) any

// metricsRegistry holds the node's metrics sources. They are platform-wide
// figures, so only the admin account reads them.
type metricsRegistry struct {
	mu      sync.RWMutex
	sources map[string]MetricsSource
}

// SetMetrics registers (or replaces) the metrics source name.
func (s *Service) SetMetrics(name string, f MetricsSource) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	if s.metrics.sources == nil {
		s.metrics.sources = map[string]MetricsSource{}
	}
	s.metrics.sources[name] = f
}

// kilnGetMetrics is GET /2026-01-01/kiln/metrics: this node's operator
// metrics, admin account only.
func (s *Service) kilnGetMetrics(c *call) (int, any, error) {
	if err := s.requireAdmin(c); err != nil {
		return 0, nil, err
	}
	s.metrics.mu.RLock()
	srcs := make(map[string]MetricsSource, len(s.metrics.sources))
	for k, v := range s.metrics.sources {
		srcs[k] = v
	}
	s.metrics.mu.RUnlock()
	out := make(map[string]any, len(srcs))
	for k, f := range srcs {
		out[k] = f(c.ctx)
	}
	return 200, out, nil
}
