package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// throttleReason is the Reason of a TooManyRequestsException ("" when err
// is not one).
func throttleReason(err error) types.ThrottleReason {
	var te *types.TooManyRequestsException
	if errors.As(err, &te) {
		if te.Reason == "" {
			return "(none)"
		}
		return te.Reason
	}
	return ""
}

// TestDeadFrontendTokens kills a follower while it holds every token of a
// function's reservation: the survivors throttle until the dead node's lease
// expires, then get the whole reservation back (and no more) within the
// lease TTL.
func TestDeadFrontendTokens(t *testing.T) {
	const (
		reserved = 4
		ttl      = 2 * time.Second
		// margin covers the survivor's polling (25 ms), the throttled pool's
		// back-off (100 ms) and one lease command through the leader, on a
		// loaded 2-core CI machine.
		margin = time.Second
	)
	ctx := context.Background()
	t0 := time.Now()
	nodes, key, _ := startCluster(t, "--counting-lease-ttl", ttl.String())
	t.Logf("3 nodes up in %v", time.Since(t0).Round(time.Millisecond))

	akid, secret := nodes[0].proc.NewAccount(t)
	for _, n := range nodes {
		n.lambda = n.proc.ClientFor(akid, secret)
	}
	const fn = "holder"
	if _, err := nodes[0].lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(fn),
		Runtime:      types.RuntimePython312,
		Handler:      aws.String("app.handler"),
		Role:         aws.String(testRole),
		Code:         &types.FunctionCode{ZipFile: fnZip(t, "tokens")},
		Timeout:      aws.Int32(30),
	}); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	if _, err := nodes[0].lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String(fn), ReservedConcurrentExecutions: aws.Int32(reserved),
	}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	for _, n := range nodes {
		waitFunction(t, n.lambda, fn, 5*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := n.lambda.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String(fn)})
			if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) == reserved {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the reservation: %v", n.id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The holder is a follower; the survivors are the leader and the other
	// follower.
	leader := -1
	for i, n := range nodes {
		if st, err := status(key, n.http); err == nil && st.State == "Leader" {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	holder := nodes[(leader+1)%3]
	survivors := []*node{nodes[(leader+2)%3], nodes[leader]}
	t.Logf("leader %s; %s will hold all %d tokens", nodes[leader].id, holder.id, reserved)

	// reserved long invokes through the holder. They end when it dies; one
	// that ends any other way before the kill is a failure.
	hctx, cancelHeld := context.WithCancel(ctx)
	defer cancelHeld()
	type held struct {
		err error
		at  time.Time
	}
	heldDone := make(chan held, reserved)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelHeld()
	for range reserved {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := invokeFn(hctx, holder.lambda, fn, map[string]any{"ms": 20000})
			heldDone <- held{err, time.Now()}
		}()
	}
	// Once the holder itself throttles, all its tokens are in use.
	deadline := time.Now().Add(10 * time.Second)
	time.Sleep(200 * time.Millisecond)
	for {
		_, err := invokeFn(ctx, holder.lambda, fn, map[string]any{})
		if throttleReason(err) == types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never ran out of tokens (last: %v)", holder.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case h := <-heldDone:
		t.Fatalf("a held invoke ended before the kill: %v", h.err)
	default:
	}
	for _, s := range survivors {
		_, err := invokeFn(ctx, s.lambda, fn, map[string]any{})
		if r := throttleReason(err); r != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
			t.Fatalf("%s admitted while %s held every token: reason %q, err %v", s.id, holder.id, r, err)
		}
	}

	killed := time.Now()
	holder.proc.Kill()
	t.Logf("SIGKILLed %s holding %d tokens", holder.id, reserved)

	// Right after the kill the tokens are still leased to the dead node.
	for _, s := range survivors {
		_, err := invokeFn(ctx, s.lambda, fn, map[string]any{})
		if r := throttleReason(err); r != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
			t.Fatalf("%s right after the kill: reason %q, err %v; want a %s throttle", s.id, r, err,
				types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded)
		}
	}
	if since := time.Since(killed); since > ttl/2 {
		t.Logf("the post-kill throttle checks took %v (of a %v TTL)", since, ttl)
	}

	// Poll the survivors in turn until one is admitted: the time of the
	// request that was let in is when the tokens came back (a throttle is
	// answered in milliseconds, so it bounds the return from above to within
	// one poll).
	var (
		back    time.Duration
		first   *node
		polls   int
		lastErr error
	)
	deadline = killed.Add(ttl + 5*time.Second)
	for first == nil {
		if time.Now().After(deadline) {
			t.Fatalf("tokens never came back within %v of the kill (%d polls; last: %v)", time.Since(killed), polls, lastErr)
		}
		s := survivors[polls%len(survivors)]
		polls++
		began := time.Now()
		_, err := invokeFn(ctx, s.lambda, fn, map[string]any{})
		switch r := throttleReason(err); {
		case err == nil:
			back, first = began.Sub(killed), s
		case r == types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded:
			lastErr = err
			time.Sleep(25 * time.Millisecond)
		default:
			t.Fatalf("%s while waiting for the tokens: %v", s.id, err)
		}
	}
	t.Logf("tokens came back after %v (TTL %v, %d throttled polls); first admitted on %s", back.Round(time.Millisecond), ttl, polls-1, first.id)
	if back > ttl+margin {
		t.Errorf("the dead node's tokens came back after %v, want ≤ TTL %v + %v", back, ttl, margin)
	}
	// The dead node renewed at most TTL/3 before it died, so its lease ran
	// at least 2·TTL/3 past the kill: tokens back much sooner were not held.
	if back < ttl/2 {
		t.Errorf("tokens came back after only %v: the dead node's lease (TTL %v) was not honoured", back, ttl)
	}

	// The survivors can run the whole reservation again, and no more.
	const runMS = 4000 // outlasts the cold starts of the new sandboxes
	var (
		mu  sync.Mutex
		ivs []interval
	)
	errs := make(chan error, reserved)
	for range reserved {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := invokeFn(ctx, first.lambda, fn, map[string]any{"ms": runMS})
			if err == nil {
				mu.Lock()
				ivs = append(ivs, interval{start: r.Start, end: r.End})
				mu.Unlock()
			}
			errs <- err
		}()
	}
	time.Sleep(500 * time.Millisecond)
	other := survivors[0]
	if other == first {
		other = survivors[1]
	}
	_, err := invokeFn(ctx, other.lambda, fn, map[string]any{})
	if r := throttleReason(err); r != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Errorf("invoke %d on %s while %s ran %d: reason %q, err %v; want a throttle", reserved+1, other.id, first.id, reserved, r, err)
	}
	for range reserved {
		if err := <-errs; err != nil {
			t.Errorf("invoke on %s after the tokens came back: %v", first.id, err)
		}
	}
	mu.Lock()
	peak := maxOverlap(ivs)
	mu.Unlock()
	t.Logf("%s then ran %d concurrent invokes (peak overlap %d)", first.id, len(ivs), peak)
	if peak != reserved {
		t.Errorf("peak concurrency on the survivors %d, want %d", peak, reserved)
	}
	cancelHeld()
	for range reserved {
		if h := <-heldDone; h.err == nil {
			t.Errorf("a held invoke on the killed %s succeeded", holder.id)
		} else if h.at.Before(killed) {
			t.Errorf("a held invoke ended before the kill: %v", h.err)
		}
	}
	t.Logf("total %v", time.Since(t0).Round(time.Millisecond))
}
