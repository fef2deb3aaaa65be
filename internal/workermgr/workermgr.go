package workermgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/worker"
)

// Worker is what the manager needs from a host agent. In one process it is
// *worker.Worker; in a cluster a remote client implements it.
type Worker interface {
	ID() string
	CreateSandbox(ctx context.Context, spec worker.FunctionSpec) (worker.SandboxInfo, error)
	DestroySandbox(ctx context.Context, sandboxID string) error
	Invoke(ctx context.Context, sandboxID string, req *worker.InvokeRequest) (*worker.InvokeResponse, error)
}

// Placer picks the worker for a new sandbox.
type Placer interface {
	Place(ctx context.Context, spec worker.FunctionSpec) (workerID string, err error)
}

// Config wires a Manager.
type Config struct {
	Workers   []Worker
	Placement Placer
	// KeepAlive is how long an idle sandbox is kept warm (0 → 5 min).
	KeepAlive time.Duration
	// ColdStartGate, when set, is asked before a new sandbox is made (the
	// function's scaling rate); its error is returned from Reserve as is.
	ColdStartGate func(spec worker.FunctionSpec) error
	Logger        *slog.Logger
	Now           func() time.Time
}

// Manager is the sandbox table.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	workers map[string]Worker

	mu    sync.Mutex
	pools map[string]*pool // by FunctionSpec.Key
	// retired keys, with when they were retired: a sandbox of a retired key
	// is destroyed on release, even one reserved by a stale invoke that
	// resolved the version just before it was retired. Keys are never
	// reused (they include the revision), so marks are pruned after a while.
	retired map[string]time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

type pool struct {
	idle            []*entry // LIFO: the most recently used sandbox is the warmest
	busy            int
	provisionedPool // provisioned.go
}

type entry struct {
	info     worker.SandboxInfo
	worker   Worker
	lastUsed time.Time
	// provisioned sandboxes return to the provisioned list and are never reaped.
	provisioned bool
}

// Lease is one reserved sandbox. Exactly one Release per Lease.
type Lease struct {
	key  string
	e    *entry
	m    *Manager
	Cold bool // this invoke pays the cold start

	released bool // guarded by m.mu: a second Release is ignored
}

// SandboxID names the reserved sandbox.
func (l *Lease) SandboxID() string { return l.e.info.ID }

// WorkerID names the worker that holds it.
func (l *Lease) WorkerID() string { return l.e.info.WorkerID }

// New starts a manager and its keep-alive reaper.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Workers) == 0 || cfg.Placement == nil {
		return nil, errors.New("workermgr: Workers and Placement are required")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:     cfg,
		log:     log,
		workers: make(map[string]Worker),
		pools:   make(map[string]*pool),
		retired: make(map[string]time.Time),
		stop:    make(chan struct{}),
	}
	for _, w := range cfg.Workers {
		m.workers[w.ID()] = w
	}
	interval := cfg.KeepAlive / 4
	if interval > 10*time.Second {
		interval = 10 * time.Second
	}
	if interval < 10*time.Millisecond {
		interval = 10 * time.Millisecond
	}
	m.wg.Add(1)
	go m.reaper(interval)
	return m, nil
}

// Reserve returns a sandbox that will serve exactly this one invoke: an idle
// one for spec.Key, or a new one made through placement (a cold start).
func (m *Manager) Reserve(ctx context.Context, spec worker.FunctionSpec) (*Lease, error) {
	m.mu.Lock()
	p := m.pools[spec.Key]
	if p == nil {
		p = &pool{}
		m.pools[spec.Key] = p
	}
	if e := p.takeProvisioned(); e != nil {
		p.busy++
		m.mu.Unlock()
		return &Lease{key: spec.Key, e: e, m: m}, nil
	}
	if n := len(p.idle); n > 0 {
		e := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.busy++
		m.mu.Unlock()
		return &Lease{key: spec.Key, e: e, m: m}, nil
	}
	p.busy++ // counted now so a concurrent retire sees it
	m.mu.Unlock()

	var e *entry
	var err error
	if m.cfg.ColdStartGate != nil {
		err = m.cfg.ColdStartGate(spec)
	}
	if err == nil {
		e, err = m.create(ctx, spec)
	}
	if err != nil {
		m.mu.Lock()
		p.busy--
		m.dropPoolIfEmpty(spec.Key, p)
		m.mu.Unlock()
		return nil, err
	}
	return &Lease{key: spec.Key, e: e, m: m, Cold: true}, nil
}

func (m *Manager) create(ctx context.Context, spec worker.FunctionSpec) (*entry, error) {
	id, err := m.cfg.Placement.Place(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("workermgr: place: %w", err)
	}
	w := m.workers[id]
	if w == nil {
		return nil, fmt.Errorf("workermgr: placement chose unknown worker %q", id)
	}
	info, err := w.CreateSandbox(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("workermgr: create sandbox on %s: %w", id, err)
	}
	return &entry{info: info, worker: w}, nil
}

// Invoke runs req in the leased sandbox.
func (l *Lease) Invoke(ctx context.Context, req *worker.InvokeRequest) (*worker.InvokeResponse, error) {
	return l.e.worker.Invoke(ctx, l.e.info.ID, req)
}

// InitDuration is the reserved sandbox's init time (meaningful when Cold).
func (l *Lease) InitDuration() time.Duration { return l.e.info.InitDuration }

// Release gives the sandbox back. A sandbox that must not be reused (it
// timed out, crashed, or its version was retired meanwhile) is destroyed.
func (l *Lease) Release(reusable bool) {
	m := l.m
	m.mu.Lock()
	if l.released {
		m.mu.Unlock()
		return
	}
	l.released = true
	p := m.pools[l.key]
	p.busy--
	if reusable && !m.isRetired(l.key) && l.e.provisioned && p.keepProvisioned(l.e) {
		m.mu.Unlock()
		return
	}
	if l.e.provisioned {
		p.provAlive--
	}
	if reusable && !m.isRetired(l.key) && !l.e.provisioned {
		l.e.lastUsed = m.cfg.Now()
		p.idle = append(p.idle, l.e)
		m.mu.Unlock()
		return
	}
	m.dropPoolIfEmpty(l.key, p)
	m.mu.Unlock()
	m.destroy(l.e)
	if l.e.provisioned {
		m.replenish(l.key) // a crashed provisioned sandbox is replaced
	}
}

func (m *Manager) dropPoolIfEmpty(key string, p *pool) {
	if p.busy == 0 && len(p.idle) == 0 && p.provEmpty() {
		delete(m.pools, key)
	}
}

func (m *Manager) destroy(e *entry) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.worker.DestroySandbox(ctx, e.info.ID); err != nil {
			m.log.Warn("destroy sandbox", "sandbox", e.info.ID, "err", err)
		}
	}()
}

// Retire drops every sandbox of a version that was deleted or replaced.
// Busy ones finish their invoke and are destroyed on release.
func (m *Manager) Retire(key string) {
	m.mu.Lock()
	m.retired[key] = m.cfg.Now()
	p := m.pools[key]
	if p == nil {
		m.mu.Unlock()
		return
	}
	idle := append(p.idle, p.dropProvisioned()...)
	p.idle = nil
	if p.busy == 0 {
		delete(m.pools, key)
	}
	m.mu.Unlock()
	for _, e := range idle {
		m.destroy(e)
	}
}

// Stats is a snapshot of the table (Idle includes idle provisioned sandboxes).
type Stats struct{ Idle, Busy int }

// Stats counts sandboxes for key ("" → all).
func (m *Manager) Stats(key string) Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s Stats
	for k, p := range m.pools {
		if key == "" || k == key {
			s.Idle += len(p.idle) + len(p.prov)
			s.Busy += p.busy
		}
	}
	return s
}

func (m *Manager) reaper(interval time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.reap()
		}
	}
}

// reap destroys sandboxes idle for longer than the keep-alive.
func (m *Manager) reap() {
	cutoff := m.cfg.Now().Add(-m.cfg.KeepAlive)
	var victims []*entry
	m.mu.Lock()
	for k, p := range m.pools {
		kept := p.idle[:0]
		for _, e := range p.idle {
			if e.lastUsed.Before(cutoff) {
				victims = append(victims, e)
			} else {
				kept = append(kept, e)
			}
		}
		for i := len(kept); i < len(p.idle); i++ {
			p.idle[i] = nil
		}
		p.idle = kept
		m.dropPoolIfEmpty(k, p)
	}
	// An invoke that resolved a version before it was retired finishes
	// within the 15-minute timeout limit; after that its mark is useless.
	for k, at := range m.retired {
		if m.cfg.Now().Sub(at) > retiredMarkTTL {
			delete(m.retired, k)
		}
	}
	m.mu.Unlock()
	for _, e := range victims {
		m.destroy(e)
	}
}

// Close stops the reaper and destroys every idle sandbox.
func (m *Manager) Close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	m.mu.Lock()
	var all []*entry
	for _, p := range m.pools {
		all = append(all, p.idle...)
		all = append(all, p.dropProvisioned()...)
		p.idle = nil
	}
	m.mu.Unlock()
	for _, e := range all {
		m.destroy(e)
	}
	m.wg.Wait()
}

// retiredMarkTTL outlives the longest invoke (900 s) with room to spare.
const retiredMarkTTL = 20 * time.Minute

// isRetired reports whether key was retired; m.mu is held.
func (m *Manager) isRetired(key string) bool {
	_, ok := m.retired[key]
	return ok
}
