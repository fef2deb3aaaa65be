package workermgr

import (
	"context"
	"time"

	"github.com/kiln-dev/kiln/internal/worker"
)

// provisionedPool is a version's provisioned concurrency: sandboxes made
// ahead of demand (AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency),
// used before on-demand ones and never reclaimed by the keep-alive reaper.
type provisionedPool struct {
	prov       []*entry // idle provisioned sandboxes
	provTarget int      // how many should exist
	provAlive  int      // how many exist (idle, busy); creations count once done
	provMaking int      // creations under way
	provSpec   worker.FunctionSpec
	// provInitFails counts sandboxes whose init failed since the last one
	// that initialised; at maxProvisionAttempts the allocation has failed
	// (provFailed holds Lambda's StatusReason) and no more are tried until
	// the target changes or RetryProvision is called.
	provInitFails int
	provFailed    string
}

// StatusReasonInitFailure is Lambda's StatusReason for provisioned
// concurrency whose environments fail to initialise.
const StatusReasonInitFailure = "FUNCTION_ERROR_INIT_FAILURE"

// maxProvisionAttempts is how many environments Lambda tries to initialise
// before it reports the allocation FAILED (six, seen in its logs).
const maxProvisionAttempts = 6

// provisionRetryBase is the first back-off between failed initialisations
// (doubling each time).
const provisionRetryBase = 50 * time.Millisecond

func (p *provisionedPool) takeProvisioned() *entry {
	n := len(p.prov)
	if n == 0 {
		return nil
	}
	e := p.prov[n-1]
	p.prov[n-1] = nil
	p.prov = p.prov[:n-1]
	return e
}

// keepProvisioned puts a released provisioned sandbox back unless the
// target was lowered under it.
func (p *provisionedPool) keepProvisioned(e *entry) bool {
	if p.provAlive > p.provTarget {
		return false
	}
	p.prov = append(p.prov, e)
	return true
}

func (p *provisionedPool) provEmpty() bool {
	return len(p.prov) == 0 && p.provTarget == 0 && p.provMaking == 0 && p.provAlive == 0
}

// dropProvisioned clears the target and hands back the idle provisioned
// sandboxes for destruction; busy ones are destroyed on release.
func (p *provisionedPool) dropProvisioned() []*entry {
	out := p.prov
	p.provAlive -= len(out)
	p.prov = nil
	p.provTarget = 0
	return out
}

// Provision sets how many provisioned sandboxes spec's version keeps and
// starts making (or destroying) the difference in the background. n == 0
// removes the provisioned concurrency.
func (m *Manager) Provision(spec worker.FunctionSpec, n int) {
	spec.Provisioned = true
	m.mu.Lock()
	if m.isRetired(spec.Key) {
		// The version was deleted or replaced after it was resolved: a
		// retired key stays retired, so there is nothing to provision.
		m.mu.Unlock()
		return
	}
	p := m.pools[spec.Key]
	if p == nil {
		p = &pool{}
		m.pools[spec.Key] = p
	}
	if p.provTarget != n {
		p.provInitFails, p.provFailed = 0, ""
	}
	p.provTarget, p.provSpec = n, spec
	var victims []*entry
	for p.provAlive > p.provTarget && len(p.prov) > 0 {
		victims = append(victims, p.takeProvisioned())
		p.provAlive--
	}
	m.dropPoolIfEmpty(spec.Key, p)
	m.mu.Unlock()
	for _, e := range victims {
		m.destroy(e)
	}
	m.replenish(spec.Key)
}

// Provisioned reports how many provisioned sandboxes of key are initialised.
func (m *Manager) Provisioned(key string) int {
	n, _ := m.ProvisionStatus(key)
	return n
}

// ProvisionStatus reports how many provisioned sandboxes of key are
// initialised and, once the allocation failed, Lambda's StatusReason.
func (m *Manager) ProvisionStatus(key string) (alive int, failed string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[key]; p != nil {
		return p.provAlive, p.provFailed
	}
	return 0, ""
}

// RetryProvision forgets a failed allocation of key (its configuration was
// put again) and tries again.
func (m *Manager) RetryProvision(key string) {
	m.mu.Lock()
	if p := m.pools[key]; p != nil {
		p.provInitFails, p.provFailed = 0, ""
	}
	m.mu.Unlock()
	m.replenish(key)
}

// replenish starts creations up to the target. Each runs in a goroutine the
// manager owns (Close waits for it).
func (m *Manager) replenish(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pools[key]
	select {
	case <-m.stop:
		return
	default:
	}
	if p == nil || m.isRetired(key) || p.provFailed != "" {
		return
	}
	for p.provAlive+p.provMaking < p.provTarget {
		p.provMaking++
		spec := p.provSpec
		// After init failures, wait before the next try (doubling).
		var delay time.Duration
		if p.provInitFails > 0 {
			delay = provisionRetryBase << min(p.provInitFails-1, 6)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-m.stop:
				case <-t.C:
				}
				t.Stop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			e, err := m.create(ctx, spec)
			if err == nil && e.info.InitDuration == 0 {
				// The runtime's init failed (or timed out): the sandbox
				// carries the failure for its first invoke, so it must
				// never serve one as provisioned concurrency.
				m.destroy(e)
				m.provisionInitFailed(key, p)
				return
			}
			m.mu.Lock()
			p.provMaking--
			if err == nil {
				p.provInitFails = 0
			}
			stopped := false
			select {
			case <-m.stop:
				stopped = true
			default:
			}
			if err != nil || stopped || m.pools[key] != p || p.provAlive >= p.provTarget {
				m.dropPoolIfEmpty(key, p)
				m.mu.Unlock()
				if err != nil {
					m.log.Warn("provision sandbox", "key", key, "err", err)
				} else {
					m.destroy(e)
				}
				return
			}
			e.provisioned = true
			p.provAlive++
			p.prov = append(p.prov, e)
			m.mu.Unlock()
		}()
	}
}

// provisionInitFailed counts one failed initialisation; at the limit the
// allocation is FAILED, otherwise another sandbox is tried.
func (m *Manager) provisionInitFailed(key string, p *pool) {
	m.mu.Lock()
	p.provMaking--
	p.provInitFails++
	attempt := p.provInitFails
	failed := attempt >= maxProvisionAttempts
	if failed && p.provAlive < p.provTarget {
		p.provFailed = StatusReasonInitFailure
	}
	current := m.pools[key] == p
	if !current {
		m.dropPoolIfEmpty(key, p)
	}
	m.mu.Unlock()
	m.log.Warn("provisioned sandbox failed to initialise", "key", key, "attempt", attempt)
	if current && !failed {
		m.replenish(key)
	}
}
