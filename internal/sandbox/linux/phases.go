//go:build linux

package linux

import (
	"iter"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox/linux/nsinit"
)

// Phase names of a cold start, in the order they happen. Those of an
// isolated start's init are nsinit's Phase constants.
const (
	PhaseCgroup      = "cgroup"       // Create: the sandbox's cgroups made, limits written
	PhasePool        = "pool"         // Create: a pre-started init taken (or started, when none was ready)
	PhaseListen      = "listen"       // the Runtime API listener opened in the sandbox's network
	PhaseCgroupEnter = "cgroup_enter" // Start: the init moved into the sandbox's cgroups
	PhaseMountFDs    = "mount_fds"    // Start: the function's directories cloned as detached mounts
	PhaseSend        = "send"         // Start: config, stdio and mounts sent to the init
	PhaseReport      = "report"       // Start: the init's "ok" read back after it exec'd the runtime
	PhaseFork        = "fork"         // Start without isolation: fork+exec into the cgroups
)

// phaseLog records where one sandbox's start went, for the worker's
// metrics and debug log (StartPhases).
type phaseLog struct {
	mu    sync.Mutex
	names []string
	d     []time.Duration
	last  time.Time
}

// begin sets the clock the next step is measured from.
func (p *phaseLog) begin() {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
}

// step ends a phase that began at the previous begin or step.
func (p *phaseLog) step(name string) {
	p.mu.Lock()
	now := time.Now()
	if !p.last.IsZero() {
		p.names = append(p.names, name)
		p.d = append(p.d, now.Sub(p.last))
	}
	p.last = now
	p.mu.Unlock()
}

// marks adds the init's phases, measured on CLOCK_MONOTONIC from sentAt,
// then the time until the status line was read.
func (p *phaseLog) marks(sentAt int64, ms []nsinit.Mark) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := sentAt
	for _, m := range ms {
		if m.At < prev {
			continue // not monotonic: not a mark of this start
		}
		p.names = append(p.names, m.Name)
		p.d = append(p.d, time.Duration(m.At-prev))
		prev = m.At
	}
	if now := nsinit.Monotonic(); now >= prev {
		p.names = append(p.names, PhaseReport)
		p.d = append(p.d, time.Duration(now-prev))
	}
	p.last = time.Now()
}

func (p *phaseLog) all() iter.Seq2[string, time.Duration] {
	p.mu.Lock()
	names, d := append([]string(nil), p.names...), append([]time.Duration(nil), p.d...)
	p.mu.Unlock()
	return func(yield func(string, time.Duration) bool) {
		for i := range names {
			if !yield(names[i], d[i]) {
				return
			}
		}
	}
}

// StartPhases reports where the sandbox's Create, Listen and Start went,
// phase by phase (the Phase constants here and in nsinit), for the
// worker's metrics. Complete once Start has returned.
func (x *box) StartPhases() iter.Seq2[string, time.Duration] { return x.phases.all() }
