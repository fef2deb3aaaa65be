package counting

import (
	"context"
	"sort"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// ProvisionedConfig is one provisioned-concurrency setting on a version or
// alias, as replicated. The sandboxes themselves are the worker manager's.
type ProvisionedConfig struct {
	Qualifier    string `json:"-"`
	Requested    int    `json:"requested"`
	LastModified int64  `json:"lastModified"` // unix ms, from the proposer
}

func (s *State) applyProvisionedLocked(c *command) any {
	a := s.accountLocked(c.Account)
	switch c.Op {
	case opPutProvisioned:
		if c.Value < 1 {
			return errProvisionedRange(c.Value)
		}
		if a.Provisioned == nil {
			a.Provisioned = map[string]map[string]ProvisionedConfig{}
		}
		if a.Provisioned[c.Function] == nil {
			a.Provisioned[c.Function] = map[string]ProvisionedConfig{}
		}
		a.Provisioned[c.Function][c.Qualifier] = ProvisionedConfig{Requested: c.Value, LastModified: c.Now / 1e6}
	case opDeleteProvisioned:
		delete(a.Provisioned[c.Function], c.Qualifier)
		if len(a.Provisioned[c.Function]) == 0 {
			delete(a.Provisioned, c.Function)
		}
	case opForgetFunction:
		delete(a.Provisioned, c.Function)
		delete(a.Reserved, c.Function)
		s.dropPoolLocked(pool{c.Account, c.Function})
	}
	return nil
}

// Provisioned returns one provisioned-concurrency configuration.
func (s *State) Provisioned(account, function, qualifier string) (ProvisionedConfig, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.accounts[account]; a != nil {
		if pc, ok := a.Provisioned[function][qualifier]; ok {
			pc.Qualifier = qualifier
			return pc, true
		}
	}
	return ProvisionedConfig{}, false
}

// ListProvisioned returns a function's configurations sorted by qualifier.
func (s *State) ListProvisioned(account, function string) []ProvisionedConfig {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []ProvisionedConfig
	if a := s.accounts[account]; a != nil {
		for q, pc := range a.Provisioned[function] {
			pc.Qualifier = q
			out = append(out, pc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Qualifier < out[j].Qualifier })
	return out
}

// ProvisionedTarget is one configuration with where it lives.
type ProvisionedTarget struct {
	Account, Function string
	ProvisionedConfig
}

// AllProvisioned lists every configuration (to re-provision after a restart).
func (s *State) AllProvisioned() []ProvisionedTarget {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []ProvisionedTarget
	for acct, a := range s.accounts {
		for fn, qs := range a.Provisioned {
			for q, pc := range qs {
				pc.Qualifier = q
				out = append(out, ProvisionedTarget{acct, fn, pc})
			}
		}
	}
	return out
}

// PutProvisioned records a provisioned-concurrency configuration.
func (s *Store) PutProvisioned(ctx context.Context, account, function, qualifier string, n int) error {
	if n < 1 {
		return errProvisionedRange(n)
	}
	_, err := s.propose(ctx, &command{Op: opPutProvisioned, Account: account, Function: function, Qualifier: qualifier, Value: n})
	return err
}

// DeleteProvisioned removes one configuration.
func (s *Store) DeleteProvisioned(ctx context.Context, account, function, qualifier string) error {
	_, err := s.propose(ctx, &command{Op: opDeleteProvisioned, Account: account, Function: function, Qualifier: qualifier})
	return err
}

// ForgetFunction drops everything counting holds for a deleted function:
// its reservation and provisioned configurations.
func (s *Store) ForgetFunction(ctx context.Context, account, function string) error {
	_, err := s.propose(ctx, &command{Op: opForgetFunction, Account: account, Function: function})
	return err
}

func errProvisionedRange(v int) error {
	return errdefs.Validation("1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1", v)
}
