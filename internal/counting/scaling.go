package counting

import (
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

// Scaler limits how fast each function adds new execution environments: a
// token bucket per function holding Burst tokens, refilled at Burst per
// Window. Only cold starts take a token; warm invokes never touch it.
//
// The buckets are local to this frontend: with several frontends each
// enforces the rate for the cold starts it causes (see doc.go).
type Scaler struct {
	burst  float64
	perSec float64
	now    func() time.Time

	mu      sync.Mutex
	buckets map[pool]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewScaler returns a Scaler (burst 0 → 1000, window 0 → 10 s).
func NewScaler(burst int, window time.Duration) *Scaler {
	if burst <= 0 {
		burst = DefaultScaleBurst
	}
	if window <= 0 {
		window = DefaultScaleWindow
	}
	return &Scaler{burst: float64(burst), perSec: float64(burst) / window.Seconds(), now: time.Now, buckets: map[pool]*bucket{}}
}

// AllowNew takes one token for a new execution environment of the function,
// or returns a TooManyRequestsException (ReasonScaling) at once.
func (s *Scaler) AllowNew(account, function string) error {
	now := s.now()
	k := pool{account, function}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		b = &bucket{tokens: s.burst, at: now}
		s.buckets[k] = b
	}
	b.tokens = min(s.burst, b.tokens+now.Sub(b.at).Seconds()*s.perSec)
	b.at = now
	if b.tokens < 1 {
		wait := int((1-b.tokens)/s.perSec) + 1
		return errdefs.Throttled(ReasonScaling, wait, "Rate Exceeded.")
	}
	b.tokens--
	// A full bucket carries no information: drop it so idle functions cost nothing.
	if len(s.buckets) > 4096 {
		for key, o := range s.buckets {
			if o.tokens+now.Sub(o.at).Seconds()*s.perSec >= s.burst {
				delete(s.buckets, key)
			}
		}
	}
	return nil
}
