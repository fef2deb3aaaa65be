package placement

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/worker"
)

// Host is one worker's capacity report.
type Host = worker.Capacity

// Inventory returns the current picture of every host.
type Inventory interface {
	Hosts(ctx context.Context) ([]Host, error)
}

// Filter rejects hosts that cannot take the sandbox.
type Filter interface {
	Feasible(h *Host, spec *worker.FunctionSpec) bool
}

// Scorer ranks feasible hosts; higher is better. Scores are summed.
type Scorer interface {
	Score(h *Host, spec *worker.FunctionSpec) float64
}

// FilterFunc adapts a function to Filter.
type FilterFunc func(h *Host, spec *worker.FunctionSpec) bool

// Feasible implements Filter.
func (f FilterFunc) Feasible(h *Host, s *worker.FunctionSpec) bool { return f(h, s) }

// ScorerFunc adapts a function to Scorer.
type ScorerFunc func(h *Host, spec *worker.FunctionSpec) float64

// Score implements Scorer.
func (f ScorerFunc) Score(h *Host, s *worker.FunctionSpec) float64 { return f(h, s) }

// Policy is a placement chain.
type Policy struct {
	Inventory Inventory
	Filters   []Filter
	Scorers   []Scorer
}

// Default is Kiln's policy: healthy hosts with enough free memory, ranked by
// how full they already are (bin packing) and whether they cache the code.
func Default(inv Inventory) *Policy {
	return &Policy{
		Inventory: inv,
		Filters:   []Filter{Healthy, HasMemory},
		Scorers:   []Scorer{BinPack, CodeLocality},
	}
}

// Healthy keeps hosts that report themselves healthy.
var Healthy = FilterFunc(func(h *Host, _ *worker.FunctionSpec) bool { return h.Healthy })

// HasMemory keeps hosts with room for the sandbox's memory.
var HasMemory = FilterFunc(func(h *Host, s *worker.FunctionSpec) bool {
	return h.MemoryMB-h.UsedMemoryMB >= s.MemoryMB
})

// BinPack prefers fuller hosts so fewer hosts run close to full (0..1).
var BinPack = ScorerFunc(func(h *Host, s *worker.FunctionSpec) float64 {
	if h.MemoryMB == 0 {
		return 0
	}
	return float64(h.UsedMemoryMB+s.MemoryMB) / float64(h.MemoryMB)
})

// CodeLocality prefers hosts that already unpacked the code (skips a fetch).
var CodeLocality = ScorerFunc(func(h *Host, s *worker.FunctionSpec) float64 {
	if h.CachedCode[s.CodeSha256Hex] {
		return 0.5
	}
	return 0
})

// Place picks the best feasible host.
func (p *Policy) Place(ctx context.Context, spec worker.FunctionSpec) (string, error) {
	hosts, err := p.Inventory.Hosts(ctx)
	if err != nil {
		return "", fmt.Errorf("placement: inventory: %w", err)
	}
	best, bestScore := -1, 0.0
	for i := range hosts {
		h := &hosts[i]
		ok := true
		for _, f := range p.Filters {
			if !f.Feasible(h, &spec) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		score := 0.0
		for _, s := range p.Scorers {
			score += s.Score(h, &spec)
		}
		if best < 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return "", &errdefs.APIError{Class: errdefs.ErrThrottled, Code: "TooManyRequestsException",
			Reason: "ConcurrentInvocationLimitExceeded", RetryAfterSeconds: 1,
			Message: "Rate Exceeded."}
	}
	return hosts[best].WorkerID, nil
}

// Static is an Inventory over in-process workers.
type Static []interface {
	Capacity(ctx context.Context) (worker.Capacity, error)
}

// Hosts implements Inventory.
func (s Static) Hosts(ctx context.Context) ([]Host, error) {
	out := make([]Host, 0, len(s))
	for _, w := range s {
		c, err := w.Capacity(ctx)
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}
