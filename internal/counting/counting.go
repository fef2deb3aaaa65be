package counting

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// DefaultAccountLimit is Lambda's default concurrent-executions quota.
const DefaultAccountLimit = 1000

// Lambda's throttle reasons for concurrency.
const (
	ReasonAccount  = "ConcurrentInvocationLimitExceeded"
	ReasonReserved = "ReservedFunctionConcurrentInvocationLimitExceeded"
)

// Request asks for one concurrency slot.
type Request struct {
	AccountID string
	// Function identifies the function within the account (its name).
	Function string
	// Reserved is the function's reserved concurrency, NoReservation, or
	// FromState to read it from the replicated state.
	Reserved int
}

// Token is one admitted slot; give it back with Release.
type Token struct {
	p *localPool
}

// Config configures a Counter.
type Config struct {
	Store *Store
	// Holder names this frontend's lease; unique per running frontend.
	Holder string
	// LeaseTTL is how long a lease lasts unless renewed (0 → 10 s). A dead
	// frontend's tokens return to the pool this long after its last renewal.
	LeaseTTL time.Duration
	// Block is how many tokens beyond those in use a busy frontend keeps
	// leased (0 → 8): larger means fewer Raft commands, smaller means fewer
	// tokens idle in one frontend while another throttles.
	Block int
	// ClockSkew is subtracted from the lease on the holder's side so it
	// stops admitting before any replica can reclaim its tokens (0 → TTL/10).
	ClockSkew time.Duration
	Logger    *slog.Logger
}

// Counter admits invokes for one frontend. Admission is local (a mutex and
// two integers) against tokens leased in blocks from the replicated State;
// only a frontend that has run out of leased tokens waits for one Raft
// command, and a pool found exhausted throttles at once until a token comes
// back.
type Counter struct {
	cfg Config
	st  *Store
	log *slog.Logger

	mu         sync.Mutex
	pools      map[pool]*localPool
	validUntil time.Time // the lease, on this holder's clock (monotonic)

	leaseMu sync.Mutex // one lease command at a time, so caps stay consistent
	nudge   chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type localPool struct {
	c       *Counter
	key     pool
	granted int // confirmed by the state
	// shrinkTo caps admission while a lease command asking for less is in
	// flight (-1: none), so the holder never uses more than it will keep.
	shrinkTo  int
	inUse     int
	lastUsed  time.Time // last admission; idle pools give their spare tokens back
	exhausted time.Time // the state had nothing more to give; no retry until then
}

func (p *localPool) usable() int {
	if p.shrinkTo >= 0 && p.shrinkTo < p.granted {
		return p.shrinkTo
	}
	return p.granted
}

// exhaustedBackoff is how long a pool the state could not grow stays marked
// exhausted: throttles under overload are then decided locally, not by a
// Raft command each (at most one per pool per backoff on each frontend).
const exhaustedBackoff = 100 * time.Millisecond

// slowLeaseTimeout bounds the one lease command an invoke may wait for.
const slowLeaseTimeout = 2 * time.Second

// NewCounter starts a Counter; Close stops its renewal loop and hands its
// tokens back.
func NewCounter(cfg Config) *Counter {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.Block <= 0 {
		cfg.Block = 8
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = cfg.LeaseTTL / 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Counter{
		cfg: cfg, st: cfg.Store, log: log.With("holder", cfg.Holder),
		pools: map[pool]*localPool{},
		nudge: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go c.loop()
	return c
}

// Acquire admits one invoke or returns a TooManyRequestsException with
// Lambda's reason. It never waits for a slot to free up.
//
// An invoke of a version or alias with provisioned concurrency (named by
// WithInvoked on ctx) takes a token of that configuration first and spills
// over to on-demand concurrency: the reservation less the function's
// provisioned concurrency, or the account's unreserved pool, which gives up
// the provisioned concurrency of functions without a reservation.
func (c *Counter) Acquire(ctx context.Context, r Request) (Token, error) {
	reserved := r.Reserved
	if reserved == FromState {
		reserved = c.st.Reserved(r.AccountID, r.Function)
	}
	if reserved == 0 {
		return Token{}, throttle(true)
	}
	if inv, ok := ctx.Value(invokedKey{}).(invoked); ok {
		if key, n, ok := c.st.provisionedPool(r.AccountID, r.Function, inv.qualifier, inv.version); ok {
			t, ok, err := c.acquire(ctx, key, n)
			if ok || err != nil {
				return t, err
			}
		}
	}
	key := pool{Account: r.AccountID}
	limit := -1
	if reserved > 0 {
		key.Function = r.Function
		limit = c.st.onDemandCap(r.AccountID, r.Function, reserved)
	}
	t, ok, err := c.acquire(ctx, key, limit)
	if ok || err != nil {
		return t, err
	}
	return Token{}, throttle(reserved > 0)
}

func (c *Counter) acquire(ctx context.Context, key pool, limit int) (Token, bool, error) {
	if limit == 0 {
		return Token{}, false, nil
	}
	t, ok, retry := c.tryLocal(key, limit)
	if ok || !retry {
		return t, ok, nil
	}
	return c.acquireSlow(ctx, key, limit)
}

type invokedKey struct{}

type invoked struct{ qualifier, version string }

// WithInvoked tells Acquire which version an invoke runs and through which
// qualifier it was invoked (the qualifier of invokedArn, "" if none), so it
// can use that version's or alias's provisioned concurrency.
func WithInvoked(ctx context.Context, invokedArn, executedVersion string) context.Context {
	q := ""
	// arn:aws:lambda:region:account:function:name[:qualifier]
	if n := strings.Count(invokedArn, ":"); n == 7 {
		q = invokedArn[strings.LastIndexByte(invokedArn, ':')+1:]
	}
	return context.WithValue(ctx, invokedKey{}, invoked{qualifier: q, version: executedVersion})
}

// tryLocal admits against leased tokens; retry says a lease command could help.
// A pool is also capped by limit (≥ 0) read from the state at admission, so
// lowering a reservation takes effect at once on this frontend, before the
// next renewal.
func (c *Counter) tryLocal(key pool, limit int) (t Token, ok, retry bool) {
	now := time.Now()
	c.mu.Lock()
	p := c.pools[key]
	if p == nil {
		p = &localPool{c: c, key: key, shrinkTo: -1}
		c.pools[key] = p
	}
	usable := p.usable()
	if limit >= 0 && limit < usable {
		usable = limit
	}
	if now.Before(c.validUntil) && p.inUse < usable {
		p.inUse++
		p.lastUsed = now
		low := p.usable()-p.inUse < (c.cfg.Block+1)/2
		c.mu.Unlock()
		if low {
			c.poke()
		}
		return Token{p: p}, true, false
	}
	retry = !now.Before(c.validUntil) || now.After(p.exhausted)
	c.mu.Unlock()
	return Token{}, false, retry
}

func (c *Counter) acquireSlow(ctx context.Context, key pool, limit int) (Token, bool, error) {
	c.leaseMu.Lock()
	// Another caller may have grown the pool while this one waited.
	t, ok, retry := c.tryLocal(key, limit)
	if ok || !retry {
		c.leaseMu.Unlock()
		return t, ok, nil
	}
	// Bounded: an invoke never waits long on consensus; without it the
	// answer is a retryable error, not a hang.
	rctx, cancel := context.WithTimeout(ctx, slowLeaseTimeout)
	err := c.renewLocked(rctx, key)
	cancel()
	c.leaseMu.Unlock()
	if err != nil {
		c.log.Warn("counting: lease failed", "err", err)
		return Token{}, false, errdefs.ServiceUnavailable("The concurrency service is unavailable; retry the request.")
	}
	t, ok, _ = c.tryLocal(key, limit)
	return t, ok, nil
}

func throttle(reserved bool) error {
	if reserved {
		return errdefs.Throttled(ReasonReserved, 1, "Rate Exceeded.")
	}
	return errdefs.Throttled(ReasonAccount, 1, "Rate Exceeded.")
}

// Release returns a slot.
func (c *Counter) Release(t Token) {
	p := t.p
	if p == nil {
		return
	}
	c.mu.Lock()
	// The freed token is admitted locally; the exhausted mark stays, since
	// only another frontend's release could let the state grant more.
	p.inUse--
	c.mu.Unlock()
}

func (c *Counter) poke() {
	select {
	case c.nudge <- struct{}{}:
	default:
	}
}

// renewLocked sends one lease command for every pool this holder knows:
// busy pools ask for their use plus a block, idle ones shrink to their use
// (tokens held by running invokes stay leased however long they run), and
// grow (if set) must get at least one more token than it has in use.
// The caller holds leaseMu.
func (c *Counter) renewLocked(ctx context.Context, grow pool) error {
	now := time.Now()
	idle := c.cfg.LeaseTTL / 3
	c.mu.Lock()
	want := make([]grantEntry, 0, len(c.pools))
	for k, p := range c.pools {
		n := p.inUse
		if k == grow {
			// The caller is about to admit here; a concurrent renewal must
			// not take the new tokens back as idle.
			p.lastUsed = now
		}
		if now.Sub(p.lastUsed) < idle {
			// Grow geometrically so a burst from 0 to a high concurrency
			// takes a few lease commands, not one per Block.
			n += max(c.cfg.Block, p.inUse/2)
		}
		// Every pool with tokens granted or in use is named on every
		// renewal, unchanged ones too: if the lease lapsed (the state could
		// not be reached for a TTL) the state dropped the grants, and the
		// tokens long invokes still hold must be claimed back at once.
		if n == 0 && p.granted == 0 && k != grow {
			continue
		}
		if n < p.granted {
			p.shrinkTo = n
		}
		want = append(want, grantEntry{Pool: k, N: n})
	}
	hasGrants := false
	for _, p := range c.pools {
		if p.granted > 0 {
			hasGrants = true
		}
	}
	if len(want) == 0 && !hasGrants {
		for k, p := range c.pools {
			if p.inUse == 0 && k != grow {
				delete(c.pools, k)
			}
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	sent := now
	res, err := c.st.lease(ctx, c.cfg.Holder, c.cfg.LeaseTTL, sent, want)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range want {
		if p := c.pools[w.Pool]; p != nil {
			p.shrinkTo = -1
			if err != nil && w.N < p.granted {
				// The shrink may have been applied though the reply was
				// lost: assume it was. (A lost grow is simply not used.)
				p.granted = w.N
			}
		}
	}
	if err != nil {
		return err
	}
	c.validUntil = sent.Add(c.cfg.LeaseTTL - c.cfg.ClockSkew)
	for k, p := range c.pools {
		p.granted = res.Grants[k]
		if k == grow && p.granted <= p.inUse {
			p.exhausted = sent.Add(exhaustedBackoff)
		}
		if p.granted == 0 && p.inUse == 0 && k != grow {
			delete(c.pools, k)
		}
	}
	return nil
}

// loop renews the lease every TTL/3 and when a pool runs low.
func (c *Counter) loop() {
	defer close(c.done)
	tick := time.NewTicker(c.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		case <-c.nudge:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LeaseTTL/3)
		c.leaseMu.Lock()
		err := c.renewLocked(ctx, pool{})
		c.leaseMu.Unlock()
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			c.log.Warn("counting: lease renewal failed", "err", err)
		}
	}
}

// Close stops renewing and returns every unused token to the state. Tokens
// still in use are returned when the lease expires.
func (c *Counter) Close(ctx context.Context) error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.done
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	c.mu.Lock()
	var want []grantEntry
	for k, p := range c.pools {
		if p.granted > 0 {
			want = append(want, grantEntry{Pool: k, N: p.inUse})
			p.shrinkTo = p.inUse
		}
	}
	c.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	_, err := c.st.lease(ctx, c.cfg.Holder, c.cfg.LeaseTTL, time.Now(), want)
	return err
}

// InFlight reports this frontend's admitted invokes for an account.
func (c *Counter) InFlight(accountID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, p := range c.pools {
		if k.Account == accountID {
			n += p.inUse
		}
	}
	return n
}
