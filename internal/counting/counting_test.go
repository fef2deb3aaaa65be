package counting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// startStore runs a real single-voter consensus node with the counting part.
func startStore(tb testing.TB) *Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := consensus.Open(ctx, consensus.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	st := NewStore(n)
	n.Register(PartName, st.State)
	if err := n.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	return st
}

func newCounter(tb testing.TB, st *Store, holder string, ttl time.Duration) *Counter {
	tb.Helper()
	c := NewCounter(Config{Store: st, Holder: holder, LeaseTTL: ttl, Block: 4, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func reasonOf(err error) string {
	var ae *errdefs.APIError
	if errors.As(err, &ae) && ae.Code == "TooManyRequestsException" {
		return ae.Reason
	}
	return fmt.Sprintf("not a throttle: %v", err)
}

func TestAcquireReasons(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	if err := st.SetAccountLimit(ctx, "a", 103); err != nil {
		t.Fatal(err)
	}
	if err := st.PutReserved(ctx, "a", "r", 2); err != nil {
		t.Fatal(err)
	}
	if err := st.PutReserved(ctx, "a", "zero", 0); err != nil {
		t.Fatal(err)
	}
	c := newCounter(t, st, "fe-1", 10*time.Second)
	var toks []Token
	take := func(acct, fn string, want int) {
		t.Helper()
		for i := 0; i < want; i++ {
			tok, err := c.Acquire(ctx, Request{acct, fn, FromState})
			if err != nil {
				t.Fatalf("%s/%s acquire %d: %v", acct, fn, i, err)
			}
			toks = append(toks, tok)
		}
	}
	tests := []struct {
		name, acct, fn string
		admit          int
		reason         string
	}{
		{"reserved 2 admits 2", "a", "r", 2, ReasonReserved},
		{"reserved 0 stops the function", "a", "zero", 0, ReasonReserved},
		{"unreserved pool is limit minus reservations", "a", "f", 101, ReasonAccount},
		{"reserved function is not starved by the unreserved pool", "a", "r", 0, ReasonReserved},
		{"other account unaffected", "b", "f", 5, ""},
	}
	for _, tt := range tests {
		take(tt.acct, tt.fn, tt.admit)
		if tt.reason == "" {
			continue
		}
		_, err := c.Acquire(ctx, Request{tt.acct, tt.fn, FromState})
		if got := reasonOf(err); got != tt.reason {
			t.Fatalf("%s: reason %q, want %q", tt.name, got, tt.reason)
		}
		var ae *errdefs.APIError
		if errors.As(err, &ae) && ae.RetryAfterSeconds < 1 {
			t.Fatalf("%s: no retryAfterSeconds", tt.name)
		}
	}
	for _, tok := range toks {
		c.Release(tok)
	}
	if n := c.InFlight("a"); n != 0 {
		t.Fatalf("in flight after release = %d", n)
	}
	// Released tokens admit again at once, locally.
	tok, err := c.Acquire(ctx, Request{"a", "f", FromState})
	if err != nil {
		t.Fatal(err)
	}
	c.Release(tok)
}

func TestPutReservedValidation(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	minMsg := "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."
	steps := []struct {
		fn   string
		n    int
		code string
	}{
		{"f", 900, ""},
		{"g", 1, "InvalidParameterValueException"},
		{"f", 901, "InvalidParameterValueException"},
		{"f", 899, ""},
		{"g", 1, ""},
		{"h", -1, "ValidationException"},
	}
	for i, s := range steps {
		err := st.PutReserved(ctx, "a", s.fn, s.n)
		var ae *errdefs.APIError
		switch {
		case s.code == "" && err != nil:
			t.Fatalf("step %d: %v", i, err)
		case s.code != "" && (!errors.As(err, &ae) || ae.Code != s.code):
			t.Fatalf("step %d: got %v, want %s", i, err, s.code)
		case s.code == "InvalidParameterValueException" && ae.Message != minMsg:
			t.Fatalf("step %d: message %q", i, ae.Message)
		}
	}
	if l, u := st.AccountLimits("a"); l != 1000 || u != 100 {
		t.Fatalf("limits = %d, %d", l, u)
	}
	if err := st.DeleteReserved(ctx, "a", "f"); err != nil {
		t.Fatal(err)
	}
	if got := st.Reserved("a", "f"); got != NoReservation {
		t.Fatalf("reserved after delete = %d", got)
	}
	if _, u := st.AccountLimits("a"); u != 999 {
		t.Fatalf("unreserved after delete = %d", u)
	}
	if err := st.SetAccountLimit(ctx, "a", 50); err == nil {
		t.Fatal("limit below reservations+100 accepted")
	}
}

// TestSeveralFrontendsNeverOverAdmit hammers one reserved function from
// several Counters sharing one replicated state and records the highest
// in-flight count ever seen across all of them.
func TestSeveralFrontendsNeverOverAdmit(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	const reserved = 10
	if err := st.PutReserved(ctx, "a", "f", reserved); err != nil {
		t.Fatal(err)
	}
	if err := st.SetAccountLimit(ctx, "a", 120); err != nil {
		t.Fatal(err)
	}
	var cur, peak, peakAcct, curAcct, admitted, throttled atomic.Int64
	bump := func(c, p *atomic.Int64, d int64) {
		v := c.Add(d)
		for {
			old := p.Load()
			if v <= old || p.CompareAndSwap(old, v) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	for f := 0; f < 4; f++ {
		c := newCounter(t, st, fmt.Sprintf("fe-%d", f), 2*time.Second)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 300; i++ {
					fn, ctr, pk := "f", &cur, &peak
					if i%2 == 1 {
						fn, ctr, pk = "u", &curAcct, &peakAcct
					}
					tok, err := c.Acquire(ctx, Request{"a", fn, FromState})
					if err != nil {
						if r := reasonOf(err); r != ReasonReserved && r != ReasonAccount {
							t.Error(err)
							return
						}
						throttled.Add(1)
						continue
					}
					admitted.Add(1)
					bump(ctr, pk, 1)
					time.Sleep(50 * time.Microsecond)
					ctr.Add(-1)
					c.Release(tok)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("admitted %d, throttled %d, peak reserved %d, peak unreserved %d", admitted.Load(), throttled.Load(), peak.Load(), peakAcct.Load())
	if peak.Load() > reserved {
		t.Fatalf("peak in flight %d > reserved %d", peak.Load(), reserved)
	}
	if peakAcct.Load() > 120-reserved {
		t.Fatalf("peak unreserved in flight %d > %d", peakAcct.Load(), 120-reserved)
	}
	if admitted.Load() < 100 {
		t.Fatalf("only %d admitted", admitted.Load())
	}
	if g := st.Granted("a", "f"); g > reserved {
		t.Fatalf("granted %d > reserved", g)
	}
}

// TestDeadFrontendTokensReturn: a frontend that stops renewing while
// holding every token blocks the others only until its lease expires.
func TestDeadFrontendTokensReturn(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	if err := st.PutReserved(ctx, "a", "f", 3); err != nil {
		t.Fatal(err)
	}
	const ttl = 400 * time.Millisecond
	dead := NewCounter(Config{Store: st, Holder: "dead", LeaseTTL: ttl, Block: 4})
	for i := 0; i < 3; i++ {
		if _, err := dead.Acquire(ctx, Request{"a", "f", FromState}); err != nil {
			t.Fatal(err)
		}
	}
	dead.abandon() // the process dies: no more renewals, nothing returned
	live := newCounter(t, st, "live", ttl)
	if _, err := live.Acquire(ctx, Request{"a", "f", FromState}); reasonOf(err) != ReasonReserved {
		t.Fatalf("while the dead lease lives: %v", err)
	}
	t0 := time.Now()
	deadline := t0.Add(5 * ttl)
	for {
		tok, err := live.Acquire(ctx, Request{"a", "f", FromState})
		if err == nil {
			live.Release(tok)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokens never returned: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(t0); el < ttl/2 {
		t.Fatalf("tokens returned after %v, before the lease could expire", el)
	}
}

// abandon stops the renewal loop without returning tokens, as a crash would.
func (c *Counter) abandon() {
	close(c.stop)
	<-c.done
}

func TestCloseReturnsTokens(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	if err := st.PutReserved(ctx, "a", "f", 2); err != nil {
		t.Fatal(err)
	}
	c1 := NewCounter(Config{Store: st, Holder: "one", Block: 4})
	tok, err := c1.Acquire(ctx, Request{"a", "f", FromState})
	if err != nil {
		t.Fatal(err)
	}
	c1.Release(tok)
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if g := st.Granted("a", "f"); g != 0 {
		t.Fatalf("granted after close = %d", g)
	}
}

// TestStateDeterministicAndSnapshot applies one command sequence to two
// states and checks equal results, then a snapshot round trip.
func TestStateDeterministicAndSnapshot(t *testing.T) {
	cmds := []command{
		{Op: opSetLimit, Now: 1, Account: "a", Value: 500},
		{Op: opPutReserved, Now: 2, Account: "a", Function: "f", Value: 50},
		{Op: opPutReserved, Now: 3, Account: "a", Function: "g", Value: 351},
		{Op: opLease, Now: 4, Holder: "h1", TTL: 10, Want: []grantEntry{{pool{Account: "a", Function: "f"}, 60}, {pool{Account: "a"}, 20}}},
		{Op: opLease, Now: 5, Holder: "h2", TTL: 100, Want: []grantEntry{{pool{Account: "a", Function: "f"}, 10}}},
		{Op: opLease, Now: 20, Holder: "h2", TTL: 100, Want: []grantEntry{{pool{Account: "a", Function: "f"}, 10}}}, // h1 expired
		{Op: opDeleteReserved, Now: 21, Account: "a", Function: "g"},
		{Op: opPutProvisioned, Now: 22, Account: "a", Function: "f", Qualifier: "live", Value: 5},
		{Op: opPutProvisioned, Now: 23, Account: "a", Function: "u", Qualifier: "3", Value: 7},
		{Op: opProvisionedStatus, Now: 24, Account: "a", Function: "u", Qualifier: "3", Value: 0, Reason: StatusReasonInitFailure},
		{Op: opLease, Now: 25, Holder: "h3", TTL: 1e12, Want: []grantEntry{{pool{Account: "a", Function: "f", Qualifier: "live"}, 9}}},
		{Op: opScale, Now: 26, Account: "a", Function: "f", Value: 4, TTL: 10e9, Burst: 1000},
		{Op: opScale, Now: 27, Account: "b", Function: "g", Value: 2000, TTL: 10e9, Burst: 1000},
		{Op: "bogus", Now: 28},
	}
	run := func() (*State, []string) {
		s := NewState()
		var out []string
		for i, c := range cmds {
			b, _ := json.Marshal(c)
			out = append(out, fmt.Sprintf("%d:%v", i, s.Apply(uint64(i+1), b)))
		}
		return s, out
	}
	s1, r1 := run()
	s2, r2 := run()
	if fmt.Sprint(r1) != fmt.Sprint(r2) {
		t.Fatalf("results differ:\n%v\n%v", r1, r2)
	}
	if g := s1.Granted("a", "f"); g != 10 {
		t.Fatalf("granted f = %d (h1 expired, h2 holds its 10)", g)
	}
	if g := s1.Granted("a", ""); g != 0 {
		t.Fatalf("granted unreserved = %d after h1 expired", g)
	}
	b1, _ := s1.Snapshot()
	b2, _ := s2.Snapshot()
	if !bytes.Equal(b1, b2) {
		t.Fatal("snapshots differ")
	}
	s3 := NewState()
	if err := s3.Restore(b1); err != nil {
		t.Fatal(err)
	}
	b3, _ := s3.Snapshot()
	if !bytes.Equal(b1, b3) {
		t.Fatalf("round trip differs:\n%s\n%s", b1, b3)
	}
	if s3.Granted("a", "f") != 10 || s3.Reserved("a", "f") != 50 {
		t.Fatal("restored state lost grants or reservations")
	}
	if got := s3.granted[pool{Account: "a", Function: "f", Qualifier: "live"}]; got != 5 {
		t.Fatalf("provisioned pool grant = %d, want its 5", got)
	}
	if pc, _ := s3.Provisioned("a", "u", "3"); pc.Failed != StatusReasonInitFailure {
		t.Fatalf("failed status lost: %+v", pc)
	}
	if b := s3.accounts["b"].Scale["g"]; b == nil || b.Credit != 0 {
		t.Fatalf("scale bucket lost: %+v", b)
	}
	if err := s3.Restore(nil); err != nil || s3.Reserved("a", "f") != NoReservation {
		t.Fatal("restore(nil) did not reset")
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	st := startStore(b)
	c := newCounter(b, st, "bench", 10*time.Second)
	req := Request{"a", "f", FromState}
	tok, err := c.Acquire(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	c.Release(tok)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok, err := c.Acquire(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		c.Release(tok)
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	ctx := context.Background()
	st := startStore(b)
	c := newCounter(b, st, "bench", 10*time.Second)
	req := Request{"a", "f", FromState}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, err := c.Acquire(ctx, req)
			if err != nil {
				continue // a lease round trip may throttle a burst; not the cost measured
			}
			c.Release(tok)
		}
	})
}

func TestScalerRefillsContinuously(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewScaler(3, time.Second) // 3 per second
	s.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if err := s.AllowNew("a", "f"); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	err := s.AllowNew("a", "f")
	if reasonOf(err) != ReasonScaling {
		t.Fatalf("beyond burst: %v", err)
	}
	var ae *errdefs.APIError
	if !errors.As(err, &ae) || ae.RetryAfterSeconds < 1 {
		t.Fatalf("no retryAfterSeconds: %v", err)
	}
	if err := s.AllowNew("a", "g"); err != nil {
		t.Fatalf("another function has its own bucket: %v", err)
	}
	now = now.Add(340 * time.Millisecond) // ~1 token back
	if err := s.AllowNew("a", "f"); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	if err := s.AllowNew("a", "f"); reasonOf(err) != ReasonScaling {
		t.Fatalf("only one token came back: %v", err)
	}
	now = now.Add(time.Hour) // no banking beyond the burst
	for i := 0; i < 3; i++ {
		if err := s.AllowNew("a", "f"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AllowNew("a", "f"); reasonOf(err) != ReasonScaling {
		t.Fatalf("banked beyond burst: %v", err)
	}
}

// FuzzStateApply feeds arbitrary commands (a forwarded command comes from
// another node) to two states: Apply must not panic and must stay
// deterministic, and a snapshot must restore to the same bytes.
func FuzzStateApply(f *testing.F) {
	f.Add([]byte(`{"op":"lease","now":5,"holder":"h","ttl":10,"want":[{"p":{"a":"a"},"n":3}]}`))
	f.Add([]byte(`{"op":"putReserved","now":1,"account":"a","function":"f","value":5}`))
	f.Add([]byte(`{"op":"putProvisioned","now":1,"account":"a","function":"f","qualifier":"1","value":2}`))
	f.Add([]byte(`{"op":"scale","now":7,"account":"a","function":"f","value":3,"ttl":10000000000,"burst":1000}`))
	f.Add([]byte(`{"op":"provisionedStatus","now":1,"account":"a","function":"f","qualifier":"1","reason":"FUNCTION_ERROR_INIT_FAILURE"}`))
	f.Add([]byte(`{"op":"lease","now":5,"holder":"h","ttl":10,"want":[{"p":{"a":"a","f":"f","q":"live"},"n":3}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s1, s2 := NewState(), NewState()
		r1, r2 := fmt.Sprint(s1.Apply(1, b)), fmt.Sprint(s2.Apply(1, b))
		if r1 != r2 {
			t.Fatalf("non-deterministic: %s vs %s", r1, r2)
		}
		snap, err := s1.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		s3 := NewState()
		if err := s3.Restore(snap); err != nil {
			t.Fatal(err)
		}
		if again, _ := s3.Snapshot(); !bytes.Equal(snap, again) {
			t.Fatalf("snapshot round trip differs")
		}
	})
}
