package worker_test

import (
	"testing"

	"github.com/kiln-dev/kiln/internal/sandbox/linux"
	"github.com/kiln-dev/kiln/internal/worker"
)

// TestColdStartPhases: a cold start is recorded phase by phase, the
// backend's own phases between the worker's.
func TestColdStartPhases(t *testing.T) {
	e := newEnv(t, 1024)
	e.create(t, e.goSpec())
	e.create(t, e.goSpec())
	got := map[string]worker.ColdStartPhase{}
	var order []string
	for _, p := range e.w.ColdStartPhases() {
		got[p.Name] = p
		order = append(order, p.Name)
	}
	for _, name := range []string{worker.PhaseWorkerPrep, linux.PhaseCgroup, linux.PhaseFork, worker.PhaseRuntimeInit, worker.PhaseEndInit} {
		p, ok := got[name]
		if !ok || p.Count != 2 || p.Total <= 0 || p.P50 <= 0 || p.P50 > p.Max || p.P99 > p.Max {
			t.Errorf("phase %s: %+v (phases %v)", name, p, order)
		}
	}
	if order[0] != worker.PhaseWorkerPrep || order[len(order)-1] != worker.PhaseEndInit {
		t.Errorf("phases out of order: %v", order)
	}
}
