package counting

import (
	"context"
	"testing"
	"time"
)

// TestHeldTokenOutlivesLease: an invoke running longer than the lease TTL
// keeps its token counted, because the holder renews while tokens are in
// use; another frontend is throttled until it is released.
func TestHeldTokenOutlivesLease(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	if err := st.PutReserved(ctx, "a", "f", 1); err != nil {
		t.Fatal(err)
	}
	const ttl = 300 * time.Millisecond
	busy := newCounter(t, st, "busy", ttl)
	other := newCounter(t, st, "other", ttl)
	tok, err := busy.Acquire(ctx, Request{"a", "f", FromState})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(4 * ttl)
	for time.Now().Before(end) {
		if _, err := other.Acquire(ctx, Request{"a", "f", FromState}); reasonOf(err) != ReasonReserved {
			t.Fatalf("while a long invoke holds the only token: %v", err)
		}
		if _, err := busy.Acquire(ctx, Request{"a", "f", FromState}); reasonOf(err) != ReasonReserved {
			t.Fatalf("same frontend admitted a second: %v", err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	if g := st.Granted("a", "f"); g != 1 {
		t.Fatalf("granted while held = %d, want 1", g)
	}
	busy.Release(tok)
	deadline := time.Now().Add(10 * ttl)
	for {
		tok, err := other.Acquire(ctx, Request{"a", "f", FromState})
		if err == nil {
			other.Release(tok)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token never came back after release: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
