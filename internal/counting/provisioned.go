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
	// Failed is Lambda's StatusReason once the allocation failed (for
	// example FUNCTION_ERROR_INIT_FAILURE); "" while it is in progress or
	// ready. A failed configuration serves no invokes.
	Failed string `json:"failed,omitempty"`
}

// StatusReasonInitFailure is Lambda's StatusReason for a provisioned
// allocation whose execution environments fail to initialise.
const StatusReasonInitFailure = "FUNCTION_ERROR_INIT_FAILURE"

// opProvisionedStatus records a failed allocation (Value: LastModified of
// the configuration it concerns, so a newer Put is never marked).
const opProvisionedStatus = "provisionedStatus"

func (s *State) applyProvisionedLocked(c *command) any {
	a := s.accountLocked(c.Account)
	switch c.Op {
	case opPutProvisioned:
		if c.Value < 1 {
			return errProvisionedRange(c.Value)
		}
		if err := checkProvisioned(a, c.Function, c.Qualifier, c.Value); err != nil {
			return err
		}
		if a.Provisioned == nil {
			a.Provisioned = map[string]map[string]ProvisionedConfig{}
		}
		if a.Provisioned[c.Function] == nil {
			a.Provisioned[c.Function] = map[string]ProvisionedConfig{}
		}
		a.Provisioned[c.Function][c.Qualifier] = ProvisionedConfig{Requested: c.Value, LastModified: c.Now / 1e6}
		// Lowering it below what holders were granted: the lease logic
		// lets them finish, and they admit nothing new until under it.
	case opProvisionedStatus:
		pc, ok := a.Provisioned[c.Function][c.Qualifier]
		if !ok || pc.LastModified != int64(c.Value) {
			return nil // deleted or replaced meanwhile: the news is stale
		}
		pc.Failed = c.Reason
		a.Provisioned[c.Function][c.Qualifier] = pc
		if pc.Failed != "" {
			s.dropPoolLocked(pool{Account: c.Account, Function: c.Function, Qualifier: c.Qualifier})
		}
	case opDeleteProvisioned:
		delete(a.Provisioned[c.Function], c.Qualifier)
		if len(a.Provisioned[c.Function]) == 0 {
			delete(a.Provisioned, c.Function)
		}
		s.dropPoolLocked(pool{Account: c.Account, Function: c.Function, Qualifier: c.Qualifier})
	case opForgetFunction:
		for q := range a.Provisioned[c.Function] {
			s.dropPoolLocked(pool{Account: c.Account, Function: c.Function, Qualifier: q})
		}
		delete(a.Provisioned, c.Function)
		delete(a.Reserved, c.Function)
		delete(a.Scale, c.Function)
		s.dropPoolLocked(pool{Account: c.Account, Function: c.Function})
	}
	return nil
}

// checkProvisioned applies Lambda's rules for a new provisioned amount n on
// one qualifier: with a reservation, the function's total provisioned
// concurrency must fit in it; without, it comes out of the account's
// unreserved concurrency, which must keep MinUnreserved.
func checkProvisioned(a *accountState, function, qualifier string, n int) error {
	others := sumProvisioned(a, function) - a.Provisioned[function][qualifier].Requested
	if r, ok := a.Reserved[function]; ok {
		if others+n > r {
			return errdefs.InvalidParameter("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function")
		}
		return nil
	}
	// The unreserved concurrency as it would be without this configuration.
	unreserved := unreservedOf(a) + a.Provisioned[function][qualifier].Requested
	if n > unreserved {
		return errdefs.InvalidParameter("Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [%d].", unreserved)
	}
	if unreserved-n < MinUnreserved {
		return errdefs.InvalidParameter("Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", MinUnreserved)
	}
	return nil
}

// errReservedBelowProvisioned is Lambda's answer to a reservation lower
// than the function's provisioned concurrency (its spacing included).
func errReservedBelowProvisioned(reserved, provisioned int) error {
	return errdefs.InvalidParameter(" ReservedConcurrentExecutions  %d should not be lower than function's total provisioned concurrency [%d].", reserved, provisioned)
}

// sumProvisioned is a function's provisioned concurrency over all its
// versions and aliases.
func sumProvisioned(a *accountState, function string) int {
	n := 0
	if a != nil {
		for _, pc := range a.Provisioned[function] {
			n += pc.Requested
		}
	}
	return n
}

// provisionedUnreserved is the provisioned concurrency of the functions
// without a reservation (except one), which the account's unreserved pool
// gives up.
func provisionedUnreserved(a *accountState, except string) int {
	n := 0
	if a != nil {
		for fn, qs := range a.Provisioned {
			if _, reserved := a.Reserved[fn]; reserved || fn == except {
				continue
			}
			for _, pc := range qs {
				n += pc.Requested
			}
		}
	}
	return n
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

// ProvisionedTotal is a function's provisioned concurrency over all its
// versions and aliases.
func (s *State) ProvisionedTotal(account, function string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sumProvisioned(s.accounts[account], function)
}

// provisionedPool returns the provisioned pool an invoke of function
// through qualifier (as invoked) running version may use, if any: the
// configuration on the qualifier, else on the version.
func (s *State) provisionedPool(account, function, qualifier, version string) (pool, int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.accounts[account]
	if a == nil || len(a.Provisioned[function]) == 0 {
		return pool{}, 0, false
	}
	for _, q := range [2]string{qualifier, version} {
		if pc, ok := a.Provisioned[function][q]; ok && q != "" && pc.Failed == "" {
			return pool{Account: account, Function: function, Qualifier: q}, pc.Requested, true
		}
	}
	return pool{}, 0, false
}

// onDemandCap is the most a reserved function may run on demand: its
// reservation less its provisioned concurrency.
func (s *State) onDemandCap(account, function string, reserved int) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return max(0, reserved-sumProvisioned(s.accounts[account], function))
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

// PutProvisioned records a provisioned-concurrency configuration, or
// returns Lambda's InvalidParameterValueException when it does not fit in
// the function's reservation or the account's unreserved concurrency.
func (s *Store) PutProvisioned(ctx context.Context, account, function, qualifier string, n int) error {
	if n < 1 {
		return errProvisionedRange(n)
	}
	_, err := s.propose(ctx, &command{Op: opPutProvisioned, Account: account, Function: function, Qualifier: qualifier, Value: n})
	return err
}

// MarkProvisionedFailed records that the configuration last modified at
// lastModified (its LastModified) could not be allocated, with Lambda's
// StatusReason. Its invokes then run on demand.
func (s *Store) MarkProvisionedFailed(ctx context.Context, account, function, qualifier string, lastModified int64, reason string) error {
	_, err := s.propose(ctx, &command{Op: opProvisionedStatus, Account: account, Function: function, Qualifier: qualifier, Value: int(lastModified), Reason: reason})
	return err
}

// DeleteProvisioned removes one configuration.
func (s *Store) DeleteProvisioned(ctx context.Context, account, function, qualifier string) error {
	_, err := s.propose(ctx, &command{Op: opDeleteProvisioned, Account: account, Function: function, Qualifier: qualifier})
	return err
}

// ForgetFunction drops everything counting holds for a deleted function:
// its reservation, provisioned configurations and scaling bucket.
func (s *Store) ForgetFunction(ctx context.Context, account, function string) error {
	_, err := s.propose(ctx, &command{Op: opForgetFunction, Account: account, Function: function})
	return err
}

func errProvisionedRange(v int) error {
	return errdefs.Validation("1 validation error detected: Value '%d' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1", v)
}
