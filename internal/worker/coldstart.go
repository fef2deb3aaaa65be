package worker

import (
	"context"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Phases the worker adds to the sandbox's own (which come between the
// first and the others).
const (
	// PhaseWorkerPrep: the worker's own set-up before the backend's Create
	// (Runtime API server, log pipe, environment).
	PhaseWorkerPrep = "worker_prep"
	// PhaseRuntimeInit is the runtime's own start-up: from the sandbox's
	// Start returning (the runtime exec'd) to its first GET /next.
	PhaseRuntimeInit = "runtime_init"
	// PhaseEndInit: the CPU cap applied once init is over.
	PhaseEndInit = "end_init"
)

// coldTimes are the phases the worker measures itself.
type coldTimes struct{ prep, runtimeInit, endInit time.Duration }

// phaseReporter is implemented by sandboxes that time their start, phase by
// phase (the linux backend: cgroup, pool, listen, mounts, seccomp, exec…).
type phaseReporter interface {
	StartPhases() iter.Seq2[string, time.Duration]
}

// ColdStartPhase summarises one phase over this worker's recent cold starts.
type ColdStartPhase struct {
	Name  string
	Count uint64        // cold starts that went through it since the worker started
	Total time.Duration // their sum
	Max   time.Duration
	// P50 and P99 are over the last phaseWindow samples.
	P50, P99 time.Duration
}

// phaseWindow is how many recent samples each phase keeps for its
// percentiles.
const phaseWindow = 512

type phaseAgg struct {
	count      uint64
	total, max time.Duration
	ring       []time.Duration
	next       int
}

// coldStarts aggregates the phases of successful cold starts.
type coldStarts struct {
	mu    sync.Mutex
	order []string
	by    map[string]*phaseAgg
}

func (c *coldStarts) add(name string, d time.Duration) {
	a := c.by[name]
	if a == nil {
		if c.by == nil {
			c.by = make(map[string]*phaseAgg)
		}
		a = &phaseAgg{}
		c.by[name] = a
		c.order = append(c.order, name)
	}
	a.count++
	a.total += d
	a.max = max(a.max, d)
	if len(a.ring) < phaseWindow {
		a.ring = append(a.ring, d)
	} else {
		a.ring[a.next] = d
		a.next = (a.next + 1) % phaseWindow
	}
}

// record adds one cold start: the sandbox's own phases and the runtime's
// init, and logs them at debug level.
func (w *Worker) recordColdStart(id string, box sandbox.Sandbox, t coldTimes) {
	names := []string{PhaseWorkerPrep}
	ds := []time.Duration{t.prep}
	if pr, ok := box.(phaseReporter); ok {
		for n, d := range pr.StartPhases() {
			names = append(names, n)
			ds = append(ds, d)
		}
	}
	names = append(names, PhaseRuntimeInit, PhaseEndInit)
	ds = append(ds, t.runtimeInit, t.endInit)
	w.phases.mu.Lock()
	for i := range names {
		w.phases.add(names[i], ds[i])
	}
	w.phases.mu.Unlock()
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := make([]slog.Attr, 0, len(names)+1)
		attrs = append(attrs, slog.String("sandbox", id))
		for i := range names {
			attrs = append(attrs, slog.Duration(names[i], ds[i]))
		}
		w.log.LogAttrs(context.Background(), slog.LevelDebug, "cold start phases", attrs...)
	}
}

// ColdStartPhases reports where this worker's cold starts spent their time,
// phase by phase in the order they happen, for metrics.
func (w *Worker) ColdStartPhases() []ColdStartPhase {
	w.phases.mu.Lock()
	defer w.phases.mu.Unlock()
	out := make([]ColdStartPhase, 0, len(w.phases.order))
	for _, n := range w.phases.order {
		a := w.phases.by[n]
		s := slices.Clone(a.ring)
		slices.Sort(s)
		p := ColdStartPhase{Name: n, Count: a.count, Total: a.total, Max: a.max}
		if len(s) > 0 {
			p.P50, p.P99 = s[(len(s)-1)/2], s[(len(s)-1)*99/100]
		}
		out = append(out, p)
	}
	return out
}
