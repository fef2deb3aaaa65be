package counting

import (
	"context"
	"sync"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// DefaultAccountLimit is Lambda's default concurrent-executions quota.
const DefaultAccountLimit = 1000

// Request asks for one concurrency slot.
type Request struct {
	AccountID string
	// Function identifies the function within the account (its name).
	Function string
	// Reserved is the function's reserved concurrency, or -1 when it has none.
	Reserved int
}

// Token is one admitted slot; give it back with Release.
type Token struct {
	acct     *account
	function string
	reserved bool
}

// Counter admits invokes against account and function limits.
type Counter struct {
	mu       sync.Mutex
	limit    func(accountID string) int
	accounts map[string]*account
}

type account struct {
	inFlight   int // invokes drawing on the unreserved pool
	byFunction map[string]int
}

// New returns a Counter; limit gives each account's concurrency limit
// (nil → DefaultAccountLimit).
func New(limit func(accountID string) int) *Counter {
	if limit == nil {
		limit = func(string) int { return DefaultAccountLimit }
	}
	return &Counter{limit: limit, accounts: make(map[string]*account)}
}

// Acquire admits one invoke or returns a TooManyRequestsException with
// Lambda's reason.
func (c *Counter) Acquire(_ context.Context, r Request) (Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.accounts[r.AccountID]
	if a == nil {
		a = &account{byFunction: make(map[string]int)}
		c.accounts[r.AccountID] = a
	}
	n := a.byFunction[r.Function]
	if r.Reserved >= 0 {
		if n >= r.Reserved {
			return Token{}, errdefs.Throttled("ReservedFunctionConcurrentInvocationLimitExceeded", 1, "Rate Exceeded.")
		}
		a.byFunction[r.Function] = n + 1
		return Token{acct: a, function: r.Function, reserved: true}, nil
	}
	if a.inFlight >= c.limit(r.AccountID) {
		return Token{}, errdefs.Throttled("ConcurrentInvocationLimitExceeded", 1, "Rate Exceeded.")
	}
	a.inFlight++
	a.byFunction[r.Function] = n + 1
	return Token{acct: a, function: r.Function}, nil
}

// Release returns a slot.
func (c *Counter) Release(t Token) {
	if t.acct == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := t.acct.byFunction[t.function]; n <= 1 {
		delete(t.acct.byFunction, t.function)
	} else {
		t.acct.byFunction[t.function] = n - 1
	}
	if !t.reserved {
		t.acct.inFlight--
	}
}

// InFlight reports an account's current concurrency.
func (c *Counter) InFlight(accountID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.accounts[accountID]
	if a == nil {
		return 0
	}
	n := 0
	for _, v := range a.byFunction {
		n += v
	}
	return n
}
