package controlplane

import (
	"context"
	"net/http"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Concurrency is the counting service's replicated limits as the management
// API sees them. The control plane owns the routes (function lookup, ARNs,
// Lambda's not-found errors); counting owns the numbers and their rules
// (the 100 kept unreserved), in its own consensus part.
type Concurrency interface {
	PutReserved(ctx context.Context, account, function string, n int) error
	DeleteReserved(ctx context.Context, account, function string) error
	// Reserved returns the reservation or a negative value when none.
	Reserved(account, function string) int
	AccountLimits(account string) (limit, unreserved int)
	SetAccountLimit(ctx context.Context, account string, n int) error
	// ForgetFunction drops a deleted function's reservation and
	// provisioned-concurrency configurations.
	ForgetFunction(ctx context.Context, account, function string) error
}

// SetConcurrency connects the counting service. Call before serving; without
// it the concurrency routes answer as if no function had a reservation and
// refuse changes.
func (s *Service) SetConcurrency(c Concurrency) { s.conc = c }

var errNoConcurrency = errdefs.ServiceUnavailable("The concurrency service is not configured.")

type functionConcurrency struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

// concurrencyOf is GetFunction's Concurrency block (nil: no reservation).
func (s *Service) concurrencyOf(account, name string) *functionConcurrency {
	if s.conc == nil {
		return nil
	}
	n := s.conc.Reserved(account, name)
	if n < 0 {
		return nil
	}
	return &functionConcurrency{ReservedConcurrentExecutions: &n}
}

// accountConcurrency is the limit and unreserved part GetAccountSettings reports.
func (s *Service) accountConcurrency(account string) (limit, unreserved int) {
	if s.conc == nil {
		return ConcurrentExecs, ConcurrentExecs
	}
	return s.conc.AccountLimits(account)
}

// functionDeleted frees a deleted function's reservation and provisioned
// concurrency. The function is already gone, so a failure here is logged,
// not returned: a stale reservation only keeps capacity aside until the
// name is reused or reset.
func (s *Service) functionDeleted(ctx context.Context, account, name string) {
	if s.conc == nil {
		return
	}
	if err := s.conc.ForgetFunction(ctx, account, name); err != nil {
		s.log.Warn("free reserved concurrency of deleted function", "account", account, "function", name, "err", err)
	}
}

// concurrencyTarget checks the {fn} segment names an existing function.
func (s *Service) concurrencyTarget(c *call) (string, error) {
	t, err := s.target(c, false)
	if err != nil {
		return "", err
	}
	s.mu.RLock()
	_, err = s.lookupLocked(c.account, t)
	s.mu.RUnlock()
	if err != nil {
		return "", err
	}
	if s.conc == nil {
		return "", errNoConcurrency
	}
	return t.name, nil
}

type putConcurrencyInput struct {
	ReservedConcurrentExecutions *int
}

func (s *Service) putFunctionConcurrency(c *call) (int, any, error) {
	var in putConcurrencyInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	if in.ReservedConcurrentExecutions == nil {
		return 0, nil, errdefs.Validation("1 validation error detected: Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null")
	}
	name, err := s.concurrencyTarget(c)
	if err != nil {
		return 0, nil, err
	}
	if err := s.conc.PutReserved(c.ctx, c.account, name, *in.ReservedConcurrentExecutions); err != nil {
		return 0, nil, err
	}
	s.log.Info("reserved concurrency set", "account", c.account, "function", name, "reserved", *in.ReservedConcurrentExecutions)
	return http.StatusOK, functionConcurrency(in), nil
}

func (s *Service) getFunctionConcurrency(c *call) (int, any, error) {
	name, err := s.concurrencyTarget(c)
	if err != nil {
		return 0, nil, err
	}
	out := s.concurrencyOf(c.account, name)
	if out == nil {
		out = &functionConcurrency{}
	}
	return http.StatusOK, out, nil
}

func (s *Service) deleteFunctionConcurrency(c *call) (int, any, error) {
	name, err := s.concurrencyTarget(c)
	if err != nil {
		return 0, nil, err
	}
	if err := s.conc.DeleteReserved(c.ctx, c.account, name); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

type setAccountLimitInput struct {
	ConcurrentExecutions *int
}

// kilnSetAccountConcurrency is the operator's quota:
// PUT /2026-01-01/kiln/accounts/{id}/concurrency {"ConcurrentExecutions": N}.
func (s *Service) kilnSetAccountConcurrency(c *call) (int, any, error) {
	if err := s.requireAdmin(c); err != nil {
		return 0, nil, err
	}
	var in setAccountLimitInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	if in.ConcurrentExecutions == nil {
		return 0, nil, errdefs.Validation("1 validation error detected: Value null at 'concurrentExecutions' failed to satisfy constraint: Member must not be null")
	}
	acct := c.segs[3]
	s.mu.RLock()
	known := s.st.Accounts[acct] != nil
	s.mu.RUnlock()
	if !known {
		return 0, nil, errdefs.ResourceNotFound("Account not found: %s", acct)
	}
	if s.conc == nil {
		return 0, nil, errNoConcurrency
	}
	if err := s.conc.SetAccountLimit(c.ctx, acct, *in.ConcurrentExecutions); err != nil {
		return 0, nil, err
	}
	limit, unreserved := s.conc.AccountLimits(acct)
	return http.StatusOK, struct {
		ConcurrentExecutions           int
		UnreservedConcurrentExecutions int
	}{limit, unreserved}, nil
}
