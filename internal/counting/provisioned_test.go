package counting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Lambda's messages, as AWS answers them (spacing included).
const (
	msgProvOverReserved   = "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
	msgProvOverUnreserved = "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [%d]."
	msgProvBelowMin       = "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."
	msgReservedBelowMin   = "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."
	msgReservedBelowProv  = " ReservedConcurrentExecutions  %d should not be lower than function's total provisioned concurrency [%d]."
)

// TestProvisionedCountsAgainstLimits walks Lambda's rules for provisioned
// concurrency against reserved and unreserved concurrency, step by step
// on one account (limit 1000), checking every error and the account's
// UnreservedConcurrentExecutions after each step.
func TestProvisionedCountsAgainstLimits(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	type step struct {
		name       string
		do         func() error
		code, msg  string
		unreserved int
	}
	putProv := func(fn, q string, n int) func() error {
		return func() error { return st.PutProvisioned(ctx, "a", fn, q, n) }
	}
	putRes := func(fn string, n int) func() error {
		return func() error { return st.PutReserved(ctx, "a", fn, n) }
	}
	steps := []step{
		{"reserve r=5", putRes("r", 5), "", "", 995},
		{"provisioned 3 within r's reservation", putProv("r", "1", 3), "", "", 995},
		{"second qualifier over the reservation", putProv("r", "live", 3), "InvalidParameterValueException", msgProvOverReserved, 995},
		{"second qualifier filling the reservation", putProv("r", "live", 2), "", "", 995},
		{"raising one qualifier over the reservation", putProv("r", "1", 4), "InvalidParameterValueException", msgProvOverReserved, 995},
		{"same amount again is fine", putProv("r", "1", 3), "", "", 995},
		{"reservation below provisioned total", putRes("r", 4), "InvalidParameterValueException", fmt.Sprintf(msgReservedBelowProv, 4, 5), 995},
		{"reservation 0 below provisioned total", putRes("r", 0), "InvalidParameterValueException", fmt.Sprintf(msgReservedBelowProv, 0, 5), 995},
		{"reservation equal to provisioned total", putRes("r", 5), "", "", 995},
		{"unreserved function: more than the unreserved pool", putProv("u", "1", 996), "InvalidParameterValueException", fmt.Sprintf(msgProvOverUnreserved, 995), 995},
		{"unreserved function: leaves under 100", putProv("u", "1", 896), "InvalidParameterValueException", msgProvBelowMin, 995},
		{"unreserved function: leaves exactly 100", putProv("u", "1", 895), "", "", 100},
		{"replacing a config counts only the new amount", putProv("u", "1", 890), "", "", 105},
		{"a reservation now leaves under 100", putRes("x", 6), "InvalidParameterValueException", msgReservedBelowMin, 105},
		{"a reservation within what is left", putRes("x", 5), "", "", 100},
		{"reserving u moves its provisioned into the reservation", putRes("u", 890), "", "", 100},
		{"u's reservation may not drop below its provisioned", putRes("u", 889), "InvalidParameterValueException", fmt.Sprintf(msgReservedBelowProv, 889, 890), 100},
		{"the account limit may not squeeze it", func() error { return st.SetAccountLimit(ctx, "a", 999) }, "InvalidParameterValueException", "", 100},
		{"deleting u's config frees its reservation only", func() error { return st.DeleteProvisioned(ctx, "a", "u", "1") }, "", "", 100},
		{"forgetting u frees everything", func() error { return st.ForgetFunction(ctx, "a", "u") }, "", "", 990},
		{"zero provisioned is a validation error", putProv("u", "1", 0), "ValidationException", "", 990},
	}
	for _, s := range steps {
		err := s.do()
		var ae *errdefs.APIError
		switch {
		case s.code == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.code != "" && (!errors.As(err, &ae) || ae.Code != s.code):
			t.Fatalf("%s: got %v, want %s", s.name, err, s.code)
		case s.msg != "" && ae.Message != s.msg:
			t.Fatalf("%s: message %q, want %q", s.name, ae.Message, s.msg)
		}
		if _, u := st.AccountLimits("a"); u != s.unreserved {
			t.Fatalf("%s: unreserved %d, want %d", s.name, u, s.unreserved)
		}
	}
	if n := st.ProvisionedTotal("a", "r"); n != 5 {
		t.Fatalf("r's provisioned total = %d", n)
	}
}

// TestProvisionedAdmission: invokes of a version or alias with provisioned
// concurrency use it first and spill over to on-demand concurrency, which
// is the reservation less the function's provisioned concurrency; other
// versions never touch it. Reasons are Lambda's.
func TestProvisionedAdmission(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.SetAccountLimit(ctx, "a", 110))
	must(st.PutReserved(ctx, "a", "r", 3))
	must(st.PutProvisioned(ctx, "a", "r", "live", 2))
	must(st.PutProvisioned(ctx, "a", "u", "7", 4)) // unreserved: 110-3-4 = 103 left
	c := newCounter(t, st, "fe", 10*time.Second)
	arn := "arn:aws:lambda:us-east-1:123456789012:function:"
	live := WithInvoked(ctx, arn+"r:live", "1")
	latest := WithInvoked(ctx, arn+"r", "$LATEST")
	v1 := WithInvoked(ctx, arn+"r:1", "1")
	u7 := WithInvoked(ctx, arn+"u:7", "7")
	var held []Token
	take := func(ctx context.Context, fn string) error {
		tok, err := c.Acquire(ctx, Request{AccountID: "a", Function: fn, Reserved: FromState})
		if err == nil {
			held = append(held, tok)
		}
		return err
	}
	tests := []struct {
		name   string
		ctx    context.Context
		fn     string
		admit  int
		reason string
	}{
		// Alias live: its 2 provisioned, then the 1 on-demand of r's 3.
		{"alias uses provisioned then spills over", live, "r", 3, ReasonReserved},
		{"$LATEST has no on-demand left", latest, "r", 0, ReasonReserved},
		{"version 1 directly has no config of its own", v1, "r", 0, ReasonReserved},
		// u: 4 provisioned on version 7, then the account's 103 unreserved.
		{"unreserved function with provisioned", u7, "u", 4 + 103, ReasonAccount},
		{"the unreserved pool gave up u's provisioned", ctx, "other", 0, ReasonAccount},
	}
	for _, tt := range tests {
		for i := 0; i < tt.admit; i++ {
			if err := take(tt.ctx, tt.fn); err != nil {
				t.Fatalf("%s: admit %d: %v", tt.name, i, err)
			}
		}
		if err := take(tt.ctx, tt.fn); reasonOf(err) != tt.reason {
			t.Fatalf("%s: got %v, want %s", tt.name, err, tt.reason)
		}
	}
	if n := c.InFlight("a"); n != 3+107 {
		t.Fatalf("in flight = %d: provisioned invokes count too", n)
	}
	for _, tok := range held {
		c.Release(tok)
	}
	held = nil
	// Reserved equal to provisioned: on-demand invokes are throttled at once
	// (Lambda answers $LATEST so), the alias still runs.
	must(st.PutProvisioned(ctx, "a", "r", "live", 3))
	if err := take(latest, "r"); reasonOf(err) != ReasonReserved {
		t.Fatalf("reserved == provisioned, $LATEST: %v", err)
	}
	if err := take(live, "r"); err != nil {
		t.Fatalf("reserved == provisioned, alias: %v", err)
	}
	// A failed allocation serves nothing: the alias runs on demand (none left).
	pc, _ := st.Provisioned("a", "r", "live")
	must(st.MarkProvisionedFailed(ctx, "a", "r", "live", pc.LastModified-1, StatusReasonInitFailure)) // stale: ignored
	if pc, _ := st.Provisioned("a", "r", "live"); pc.Failed != "" {
		t.Fatal("a stale status report marked a newer configuration")
	}
	must(st.MarkProvisionedFailed(ctx, "a", "r", "live", pc.LastModified, StatusReasonInitFailure))
	if pc, _ := st.Provisioned("a", "r", "live"); pc.Failed != StatusReasonInitFailure {
		t.Fatalf("status not recorded: %+v", pc)
	}
	if err := take(live, "r"); reasonOf(err) != ReasonReserved {
		t.Fatalf("failed allocation: %v", err)
	}
	for _, tok := range held {
		c.Release(tok)
	}
}

func TestWithInvoked(t *testing.T) {
	tests := []struct{ arn, version, qualifier string }{
		{"arn:aws:lambda:us-east-1:123456789012:function:f", "$LATEST", ""},
		{"arn:aws:lambda:us-east-1:123456789012:function:f:live", "3", "live"},
		{"arn:aws:lambda:us-east-1:123456789012:function:f:3", "3", "3"},
		{"", "1", ""},
	}
	for _, tt := range tests {
		inv := WithInvoked(context.Background(), tt.arn, tt.version).Value(invokedKey{}).(invoked)
		if inv.qualifier != tt.qualifier || inv.version != tt.version {
			t.Errorf("%q: %+v", tt.arn, inv)
		}
	}
}

// gate is a Proposer that can be cut off, as a lost leader would be.
type gate struct {
	Proposer
	closed atomic.Bool
}

func (g *gate) Apply(ctx context.Context, part string, cmd []byte) (any, error) {
	if g.closed.Load() {
		return nil, errors.New("no leader")
	}
	return g.Proposer.Apply(ctx, part, cmd)
}

// TestLapsedLeaseReclaimsHeldTokens: a frontend that cannot reach the state
// for longer than its lease loses its grants there; its next renewal claims
// back the tokens its running invokes still hold, so they count again.
func TestLapsedLeaseReclaimsHeldTokens(t *testing.T) {
	ctx := context.Background()
	st := startStore(t)
	if err := st.PutReserved(ctx, "a", "f", 2); err != nil {
		t.Fatal(err)
	}
	const ttl = 300 * time.Millisecond
	g := &gate{Proposer: st.prop}
	cut := &Store{State: st.State, prop: g, now: time.Now}
	busy := newCounter(t, cut, "busy", ttl)
	tok, err := busy.Acquire(ctx, Request{"a", "f", FromState})
	if err != nil {
		t.Fatal(err)
	}
	g.closed.Store(true)
	// Another command lets the state see the lease expire.
	deadline := time.Now().Add(20 * ttl)
	for st.Granted("a", "f") != 0 {
		_ = st.PutReserved(ctx, "a", "f", 2)
		if time.Now().After(deadline) {
			t.Fatal("lease never lapsed")
		}
		time.Sleep(ttl / 3)
	}
	g.closed.Store(false) // reachable again
	deadline = time.Now().Add(20 * ttl)
	for st.Granted("a", "f") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the held token was never claimed back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Only one of the two is free for another frontend.
	other := newCounter(t, st, "other", ttl)
	t1, err := other.Acquire(ctx, Request{"a", "f", FromState})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Acquire(ctx, Request{"a", "f", FromState}); reasonOf(err) != ReasonReserved {
		t.Fatalf("second token while one is held elsewhere: %v", err)
	}
	other.Release(t1)
	busy.Release(tok)
}

// TestSharedScalerRegionWide: several frontends' Scalers on one replicated
// state add at most burst + rate×elapsed environments of a function in
// total, however many of them there are, and take blocks (not one Raft
// command per cold start).
func TestSharedScalerRegionWide(t *testing.T) {
	st := startStore(t)
	const burst, frontends = 40, 4
	window := 2 * time.Second
	cp := &countingProposer{Proposer: st.prop}
	shared := &Store{State: st.State, prop: cp, now: time.Now}
	var scalers []*Scaler
	for i := 0; i < frontends; i++ {
		scalers = append(scalers, NewSharedScaler(shared, burst, window))
	}
	// A burst of cold starts on one frontend takes growing blocks: a few
	// commands, not one per environment.
	start := time.Now()
	allowed := 0
	for i := 0; i < 30; i++ {
		if err := scalers[0].AllowNew("a", "f"); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
		allowed++
	}
	if n := cp.n.Load(); n > 6 {
		t.Fatalf("%d scale commands for a burst of 30", n)
	}
	for time.Since(start) < 1500*time.Millisecond {
		for _, s := range scalers {
			for j := 0; j < 5; j++ {
				err := s.AllowNew("a", "f")
				switch {
				case err == nil:
					allowed++
				case reasonOf(err) != ReasonScaling:
					t.Fatal(err)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	limit := burst + int(float64(burst)*elapsed.Seconds()/window.Seconds()) + 1
	t.Logf("%d frontends allowed %d new environments in %v (limit %d) with %d scale commands", frontends, allowed, elapsed, limit, cp.n.Load())
	if allowed > limit {
		t.Fatalf("allowed %d > %d: the rate is per frontend", allowed, limit)
	}
	if allowed < burst {
		t.Fatalf("allowed only %d of a burst of %d", allowed, burst)
	}
	// Other functions have their own bucket; another account too.
	if err := scalers[0].AllowNew("a", "g"); err != nil {
		t.Fatal(err)
	}
}

// TestScaleBucketExact drives the replicated bucket with explicit times.
func TestScaleBucketExact(t *testing.T) {
	s := NewState()
	const w = int64(10 * time.Second) // burst 5: a token per 2 s
	scale := func(now int64, want int) (int, int64) {
		b, _ := json.Marshal(command{Op: opScale, Now: now, Account: "a", Function: "f", Value: want, TTL: w, Burst: 5})
		lr := s.Apply(1, b).(leaseResult)
		return lr.Grants[pool{Account: "a", Function: "f"}], lr.Expiry - now
	}
	steps := []struct {
		now        int64
		want, got  int
		nextWithin int64
	}{
		{0, 3, 3, 0},
		{0, 5, 2, 2e9},         // the rest of the burst; next in 2 s
		{1e9, 1, 0, 1e9},       // half a token back
		{2e9, 2, 1, 2e9},       // one back
		{-5e9, 1, 0, 2e9},      // a clock behind never refills
		{100e9, 9, 5, 2e9},     // no banking beyond the burst
		{100e9 + 1, 1, 0, 2e9}, // empty again
	}
	for i, st := range steps {
		got, next := scale(st.now, st.want)
		if got != st.got || next > st.nextWithin {
			t.Fatalf("step %d: got %d (next in %d ns), want %d (next within %d)", i, got, next, st.got, st.nextWithin)
		}
	}
	bad, _ := json.Marshal(command{Op: opScale, Now: 1, Account: "a", Function: "f", Value: 1})
	if !errors.Is(s.Apply(2, bad).(error), errBadCommand) {
		t.Fatal("scale without a burst accepted")
	}
}

// TestOldSnapshotLoads: a snapshot written before provisioned pools and
// scaling buckets existed restores, and its numbers mean the same.
func TestOldSnapshotLoads(t *testing.T) {
	b, err := os.ReadFile("testdata/snapshot-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	s := NewState()
	if err := s.Restore(b); err != nil {
		t.Fatal(err)
	}
	if s.Reserved("a", "f") != 50 || s.Granted("a", "f") != 10 || s.Granted("a", "") != 4 {
		t.Fatal("reservations or grants lost")
	}
	if pc, ok := s.Provisioned("a", "g", "live"); !ok || pc.Requested != 3 || pc.Failed != "" {
		t.Fatalf("provisioned config: %+v %v", pc, ok)
	}
	// 500 - 50 reserved - 3 provisioned on unreserved g.
	if l, u := s.AccountLimits("a"); l != 500 || u != 447 {
		t.Fatalf("limits %d %d", l, u)
	}
	again, _ := s.Snapshot()
	s2 := NewState()
	if err := s2.Restore(again); err != nil {
		t.Fatal(err)
	}
	if b2, _ := s2.Snapshot(); !bytes.Equal(again, b2) {
		t.Fatal("round trip of an old snapshot differs")
	}
}

// countingProposer counts the commands that reach consensus.
type countingProposer struct {
	Proposer
	n atomic.Int64
}

func (c *countingProposer) Apply(ctx context.Context, part string, cmd []byte) (any, error) {
	c.n.Add(1)
	return c.Proposer.Apply(ctx, part, cmd)
}

// BenchmarkAcquireInvoked is the frontend's warm path: the invoked version
// named on ctx (no provisioned configuration), then a reserved pool.
func BenchmarkAcquireInvoked(b *testing.B) {
	ctx := context.Background()
	st := startStore(b)
	if err := st.PutReserved(ctx, "a", "f", 100); err != nil {
		b.Fatal(err)
	}
	c := newCounter(b, st, "bench", 10*time.Second)
	req := Request{AccountID: "a", Function: "f", Reserved: FromState}
	arn := "arn:aws:lambda:us-east-1:123456789012:function:f:live"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok, err := c.Acquire(WithInvoked(ctx, arn, "3"), req)
		if err != nil {
			b.Fatal(err)
		}
		c.Release(tok)
	}
}
