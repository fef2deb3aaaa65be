package counting

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Lambda's scaling rate: each function may add 1,000 execution environments
// every 10 seconds, refilled continuously, with no banking beyond that.
const (
	DefaultScaleBurst  = 1000
	DefaultScaleWindow = 10 * time.Second
)

// ReasonScaling is the throttle reason for a cold start beyond the scaling
// rate. Lambda documents no reason specific to the scaling rate; of its
// documented ThrottleReason values, FunctionInvocationRateLimitExceeded (a
// per-function rate limit) is the closest.
const ReasonScaling = "FunctionInvocationRateLimitExceeded"

// scaleBucket is one function's region-wide scaling bucket, replicated.
// Credit is refill time banked, in nanoseconds: one token costs
// window/burst of it and the bucket holds at most one window, so the
// arithmetic is exact integers on every replica.
type scaleBucket struct {
	Credit int64 `json:"credit"`
	At     int64 `json:"at"` // command time of the last refill (unix ns)
}

// scaleCost is what one new environment costs in credit (rounded up, so
// the rate is never exceeded).
func scaleCost(burst int, window int64) int64 {
	return (window + int64(burst) - 1) / int64(burst)
}

// scaleLocked refills the function's bucket to the command's time and
// grants up to Value tokens from it. The answer travels in the lease shape
// (Grants[the function's pool] = tokens granted, Expiry = when the next
// token will be there) so forwarding carries it unchanged.
func (s *State) scaleLocked(c *command) any {
	if c.Burst <= 0 || c.Burst > maxScaleBurst || c.TTL <= 0 || c.TTL > int64(maxScaleWindow) ||
		c.Value < 1 || c.Account == "" || c.Function == "" {
		return errBadCommand
	}
	a := s.accountLocked(c.Account)
	if a.Scale == nil {
		a.Scale = map[string]*scaleBucket{}
	}
	cost := scaleCost(c.Burst, c.TTL)
	b := a.Scale[c.Function]
	if b == nil {
		b = &scaleBucket{Credit: c.TTL, At: c.Now}
		a.Scale[c.Function] = b
	}
	refill(b, c.Now, c.TTL)
	g := int(min(int64(c.Value), b.Credit/cost))
	b.Credit -= int64(g) * cost
	k := pool{Account: c.Account, Function: c.Function}
	out := leaseResult{Grants: map[pool]int{k: g}, Expiry: c.Now + max(0, cost-b.Credit)}
	// A full bucket says nothing a missing one would not: drop them so
	// idle functions cost nothing (deterministic: it depends only on Now).
	if len(a.Scale) > maxScaleBuckets {
		for fn, o := range a.Scale {
			if o != b && o.Credit+(c.Now-o.At) >= c.TTL {
				delete(a.Scale, fn)
			}
		}
	}
	return out
}

const maxScaleBuckets = 1024

// Bounds on a scale command's bucket, far beyond any real setting, that
// keep the integer arithmetic from overflowing.
const (
	maxScaleBurst  = 1 << 30
	maxScaleWindow = 24 * time.Hour
)

func refill(b *scaleBucket, now, window int64) {
	if now > b.At {
		b.Credit = min(window, b.Credit+min(now-b.At, window))
		b.At = now
	}
}

// Scaler limits how fast each function adds new execution environments: a
// token bucket per function holding Burst tokens, refilled at Burst per
// Window. Only cold starts take a token; warm invokes never touch it.
//
// A Scaler made by NewSharedScaler takes its tokens from the replicated
// bucket, in small blocks (one Raft command per block, never one per cold
// start), so the rate holds region-wide however many frontends there are:
// the state never grants more than the bucket holds, and a block this
// frontend does not use soon is dropped, never banked. NewScaler keeps the
// buckets in this process only (one frontend, or tests).
type Scaler struct {
	burst  int
	window time.Duration
	perSec float64
	now    func() time.Time
	st     *Store // nil: local buckets

	mu      sync.Mutex
	buckets map[pool]*bucket
	blocks  map[pool]*block
	leaseMu sync.Mutex // one scale command at a time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// block is tokens this frontend leased from the shared bucket.
type block struct {
	n        int
	want     int       // the next block's size: doubles while blocks run out quickly
	expires  time.Time // unused tokens are dropped then
	empty    time.Time // the state had none; throttle locally until then
	usedUpAt time.Time
}

// scaleBlockTTL is how long leased scaling tokens stay usable: short, so a
// frontend never sits on tokens another one could use for long.
const scaleBlockTTL = time.Second

const maxScaleBlock = 64

// NewScaler returns a Scaler with local buckets (burst 0 → 1000, window 0 → 10 s).
func NewScaler(burst int, window time.Duration) *Scaler {
	if burst <= 0 {
		burst = DefaultScaleBurst
	}
	if window <= 0 {
		window = DefaultScaleWindow
	}
	return &Scaler{burst: burst, window: window, perSec: float64(burst) / window.Seconds(), now: time.Now,
		buckets: map[pool]*bucket{}, blocks: map[pool]*block{}}
}

// NewSharedScaler returns a Scaler whose buckets are region-wide, held in
// st's replicated state. Every frontend must use the same burst and window.
func NewSharedScaler(st *Store, burst int, window time.Duration) *Scaler {
	s := NewScaler(burst, window)
	s.st = st
	return s
}

// AllowNew takes one token for a new execution environment of the function,
// or returns a TooManyRequestsException (ReasonScaling) at once.
func (s *Scaler) AllowNew(account, function string) error {
	if s.st != nil {
		return s.allowShared(account, function)
	}
	now := s.now()
	k := pool{Account: account, Function: function}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(s.burst), at: now}
		s.buckets[k] = b
	}
	b.tokens = min(float64(s.burst), b.tokens+now.Sub(b.at).Seconds()*s.perSec)
	b.at = now
	if b.tokens < 1 {
		wait := int((1-b.tokens)/s.perSec) + 1
		return errdefs.Throttled(ReasonScaling, wait, "Rate Exceeded.")
	}
	b.tokens--
	// A full bucket carries no information: drop it so idle functions cost nothing.
	if len(s.buckets) > 4096 {
		for key, o := range s.buckets {
			if o.tokens+now.Sub(o.at).Seconds()*float64(s.perSec) >= float64(s.burst) {
				delete(s.buckets, key)
			}
		}
	}
	return nil
}

// takeLocal uses a leased token; done says the answer is final (a token,
// or a throttle the state already gave).
func (s *Scaler) takeLocal(k pool, now time.Time) (done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blocks[k]
	if b == nil {
		return false, nil
	}
	if b.n > 0 && now.Before(b.expires) {
		b.n--
		if b.n == 0 {
			b.usedUpAt = now
		}
		return true, nil
	}
	if now.Before(b.empty) {
		return true, throttleScaling(b.empty.Sub(now))
	}
	return false, nil
}

func throttleScaling(wait time.Duration) error {
	return errdefs.Throttled(ReasonScaling, int(wait/time.Second)+1, "Rate Exceeded.")
}

func (s *Scaler) allowShared(account, function string) error {
	k := pool{Account: account, Function: function}
	if done, err := s.takeLocal(k, s.now()); done {
		return err
	}
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	now := s.now()
	if done, err := s.takeLocal(k, now); done {
		return err
	}
	s.mu.Lock()
	b := s.blocks[k]
	if b == nil {
		b = &block{want: 1}
		s.blocks[k] = b
	}
	switch {
	case b.n == 0 && !b.usedUpAt.IsZero() && b.usedUpAt.Sub(b.expires.Add(-scaleBlockTTL)) < scaleBlockTTL/2:
		b.want = min(b.want*2, maxScaleBlock, s.burst) // used up quickly: a bigger block
	case b.n > 0:
		b.want = max(1, b.want/2) // expired unused: a smaller one
	}
	want := b.want
	s.pruneLocked(now)
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), slowLeaseTimeout)
	defer cancel()
	c := &command{Op: opScale, Now: now.UnixNano(), Account: account, Function: function,
		Value: want, TTL: int64(s.window), Burst: s.burst}
	res, err := s.st.proposeAt(ctx, c)
	if err != nil {
		return errdefs.ServiceUnavailable("The concurrency service is unavailable; retry the request.")
	}
	lr, ok := res.(leaseResult)
	if !ok {
		return fmt.Errorf("counting: scale: unexpected result %T", res)
	}
	g := lr.Grants[k]
	s.mu.Lock()
	defer s.mu.Unlock()
	b.usedUpAt = time.Time{}
	if g == 0 {
		b.n = 0
		wait := time.Duration(max(lr.Expiry-c.Now, 1))
		b.empty = now.Add(wait)
		return throttleScaling(wait)
	}
	b.n = g - 1
	b.expires = now.Add(scaleBlockTTL)
	if b.n == 0 {
		b.usedUpAt = now
	}
	return nil
}

// pruneLocked forgets blocks that are spent and no longer say anything.
func (s *Scaler) pruneLocked(now time.Time) {
	if len(s.blocks) < 1024 {
		return
	}
	for k, b := range s.blocks {
		if now.After(b.expires) && now.After(b.empty) {
			delete(s.blocks, k)
		}
	}
}
