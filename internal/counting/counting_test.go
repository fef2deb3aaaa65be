package counting

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

func TestAcquireReasons(t *testing.T) {
	ctx := context.Background()
	c := New(func(string) int { return 2 })
	tests := []struct {
		name   string
		req    Request
		reason string
	}{
		{"first", Request{"a", "f", -1}, ""},
		{"second", Request{"a", "g", -1}, ""},
		{"account full", Request{"a", "h", -1}, "ConcurrentInvocationLimitExceeded"},
		{"other account unaffected", Request{"b", "f", -1}, ""},
		{"reserved 1 ok", Request{"a", "r", 1}, ""},
		{"reserved 1 full", Request{"a", "r", 1}, "ReservedFunctionConcurrentInvocationLimitExceeded"},
		{"reserved 0 stops the function", Request{"a", "z", 0}, "ReservedFunctionConcurrentInvocationLimitExceeded"},
	}
	var toks []Token
	for _, tt := range tests {
		tok, err := c.Acquire(ctx, tt.req)
		if tt.reason == "" {
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			toks = append(toks, tok)
			continue
		}
		var ae *errdefs.APIError
		if !errors.As(err, &ae) || ae.Reason != tt.reason || ae.Code != "TooManyRequestsException" {
			t.Fatalf("%s: got %v, want reason %s", tt.name, err, tt.reason)
		}
	}
	for _, tok := range toks {
		c.Release(tok)
	}
	for _, acct := range []string{"a", "b"} {
		if n := c.InFlight(acct); n != 0 {
			t.Fatalf("account %s in flight after release = %d", acct, n)
		}
	}
}

func TestNeverOverAdmits(t *testing.T) {
	const limit = 7
	c := New(func(string) int { return limit })
	var mu sync.Mutex
	cur, peak := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				tok, err := c.Acquire(context.Background(), Request{"a", "f", -1})
				if err != nil {
					continue
				}
				mu.Lock()
				cur++
				if cur > peak {
					peak = cur
				}
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				c.Release(tok)
			}
		}()
	}
	wg.Wait()
	if peak > limit {
		t.Fatalf("peak in flight %d > limit %d", peak, limit)
	}
}
