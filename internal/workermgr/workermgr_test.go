package workermgr_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/placement"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/internal/workermgr"
)

func TestReserveColdThenWarm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	sp := spec("acct/fn/$LATEST/r1")

	l, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if !l.Cold || l.WorkerID() != "w1" || l.SandboxID() == "" || l.InitDuration() <= 0 {
		t.Fatalf("first lease: Cold=%v worker=%q sandbox=%q init=%v", l.Cold, l.WorkerID(), l.SandboxID(), l.InitDuration())
	}
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Busy: 1}) {
		t.Fatalf("Stats while busy = %+v", s)
	}
	_, inst := invoke(t, l, `{}`)
	id := l.SandboxID()
	l.Release(true)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Idle: 1}) {
		t.Fatalf("Stats after release = %+v", s)
	}

	for i := range 3 {
		l, err = e.m.Reserve(testCtx(t), sp)
		if err != nil {
			t.Fatalf("Reserve %d: %v", i, err)
		}
		if l.Cold || l.SandboxID() != id {
			t.Fatalf("warm reserve %d: Cold=%v sandbox %s, want warm %s", i, l.Cold, l.SandboxID(), id)
		}
		if _, got := invoke(t, l, `{}`); got != inst {
			t.Fatalf("warm invoke %d ran in process %s, want %s", i, got, inst)
		}
		l.Release(true)
	}
	if n := sandboxes(t, e.w); n != 1 {
		t.Fatalf("worker holds %d sandboxes, want 1", n)
	}
}

// TestConcurrentReserves: N leases held at once are N sandboxes; after
// release the next N reserves reuse them all.
func TestConcurrentReserves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	sp := spec("acct/fn/$LATEST/r1")
	const n = 4

	round := func(wantCold bool) map[string]string {
		leases := make([]*workermgr.Lease, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := e.m.Reserve(testCtx(t), sp)
				if err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				leases[i] = l
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Busy: n}) {
			t.Fatalf("Stats with %d leases = %+v", n, s)
		}
		byID := map[string]string{} // sandbox → process instance
		var mu sync.Mutex
		for _, l := range leases {
			if l.Cold != wantCold {
				t.Fatalf("lease %s Cold=%v, want %v", l.SandboxID(), l.Cold, wantCold)
			}
			if _, dup := byID[l.SandboxID()]; dup {
				t.Fatalf("two concurrent leases share sandbox %s", l.SandboxID())
			}
			byID[l.SandboxID()] = ""
		}
		for _, l := range leases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, inst := invoke(t, l, `{"action":"sleep","ms":50}`)
				mu.Lock()
				byID[l.SandboxID()] = inst
				mu.Unlock()
				l.Release(true)
			}()
		}
		wg.Wait()
		if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Idle: n}) {
			t.Fatalf("Stats after release = %+v", s)
		}
		return byID
	}
	first := round(true)
	second := round(false)
	for id, inst := range first {
		if second[id] != inst {
			t.Fatalf("sandbox %s ran in process %s, then %s", id, inst, second[id])
		}
	}
	if got := sandboxes(t, e.w); got != n {
		t.Fatalf("worker holds %d sandboxes, want %d", got, n)
	}
}

// TestNoSandboxServesTwoInvokesAtOnce hammers one key from several
// goroutines and records, around each invoke, how many run per sandbox.
func TestNoSandboxServesTwoInvokesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	sp := spec("acct/fn/$LATEST/r1")
	const goroutines, rounds = 6, 8

	var mu sync.Mutex
	inFlight := map[string]int{}
	instOf := map[string]string{} // sandbox → process instance
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				l, err := e.m.Reserve(testCtx(t), sp)
				if err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				id := l.SandboxID()
				mu.Lock()
				inFlight[id]++
				if inFlight[id] > 1 {
					t.Errorf("sandbox %s serves %d invokes at once", id, inFlight[id])
				}
				mu.Unlock()
				_, inst := invoke(t, l, `{"action":"sleep","ms":5}`)
				mu.Lock()
				inFlight[id]--
				if prev, ok := instOf[id]; ok && prev != inst {
					t.Errorf("sandbox %s changed process: %s then %s", id, prev, inst)
				}
				instOf[id] = inst
				mu.Unlock()
				l.Release(true)
			}
		}()
	}
	wg.Wait()
	if len(instOf) > goroutines {
		t.Fatalf("%d sandboxes for %d concurrent callers", len(instOf), goroutines)
	}
	if s := e.m.Stats(sp.Key); s.Busy != 0 || s.Idle != len(instOf) {
		t.Fatalf("Stats = %+v, want %d idle", s, len(instOf))
	}
}

func TestReleaseNotReusable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	sp := spec("acct/fn/$LATEST/r1")
	cases := []struct {
		name string
		ev   string
		// release is what the caller passes, as the frontend does: the
		// worker's verdict, or false when the caller gives the sandbox up.
		release func(*worker.InvokeResponse) bool
	}{
		{"caller gives it up", `{}`, func(*worker.InvokeResponse) bool { return false }},
		{"runtime crashed", `{"action":"exit","n":2}`, func(r *worker.InvokeResponse) bool { return !r.Retire }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := e.m.Reserve(testCtx(t), sp)
			if err != nil {
				t.Fatal(err)
			}
			id := l.SandboxID()
			resp, _ := invoke(t, l, tc.ev)
			if resp == nil {
				t.FailNow()
			}
			l.Release(tc.release(resp))
			if s := e.m.Stats(sp.Key); s != (workermgr.Stats{}) {
				t.Fatalf("Stats after Release = %+v", s)
			}
			eventually(t, "the sandbox to be destroyed", func() bool { return sandboxes(t, e.w) == 0 })
			l, err = e.m.Reserve(testCtx(t), sp)
			if err != nil {
				t.Fatal(err)
			}
			if !l.Cold || l.SandboxID() == id {
				t.Fatalf("reserve after destroy: Cold=%v sandbox %s (old %s)", l.Cold, l.SandboxID(), id)
			}
			l.Release(false)
			eventually(t, "the sandbox to be destroyed", func() bool { return sandboxes(t, e.w) == 0 })
		})
	}
}

func TestKeepAliveReaping(t *testing.T) {
	t.Parallel()
	const keepAlive = 200 * time.Millisecond
	e := newEnv(t, keepAlive, 0)
	sp := spec("acct/fn/$LATEST/r1")
	a, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	a.Release(true)
	b.Release(true)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Idle: 2}) {
		t.Fatalf("Stats after release = %+v", s)
	}
	eventually(t, "idle sandboxes to be reaped", func() bool {
		return e.m.Stats(sp.Key) == workermgr.Stats{} && sandboxes(t, e.w) == 0
	})
	if d := time.Since(released); d < keepAlive || d > time.Second {
		t.Fatalf("reaped after %v, want between %v and 1s", d, keepAlive)
	}
	if s := e.m.Stats(""); s != (workermgr.Stats{}) {
		t.Fatalf("Stats(all) after reaping = %+v", s)
	}

	// A busy sandbox is never reaped, however long its invoke runs.
	l, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Cold {
		t.Fatal("reserve after reaping was warm")
	}
	invoke(t, l, `{"action":"sleep","ms":400}`)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Busy: 1}) || sandboxes(t, e.w) != 1 {
		t.Fatalf("busy sandbox after a long invoke: Stats %+v, worker %d", s, sandboxes(t, e.w))
	}
	l.Release(true)
}

func TestRetire(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	sp := spec("acct/fn/1/r1")
	other := spec("acct/fn/2/r1")
	idle, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	keep, err := e.m.Reserve(testCtx(t), other)
	if err != nil {
		t.Fatal(err)
	}
	keep.Release(true)
	idle.Release(true)

	e.m.Retire(sp.Key)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{Busy: 1}) {
		t.Fatalf("Stats after Retire = %+v, want only the busy one", s)
	}
	eventually(t, "the idle sandbox to be destroyed", func() bool { return sandboxes(t, e.w) == 2 })

	// The busy one finishes its invoke, then goes.
	if resp, _ := invoke(t, busy, `{}`); resp == nil || resp.FunctionError != "" {
		t.Fatalf("invoke in a retired version's busy sandbox: %+v", resp)
	}
	busy.Release(true)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{}) {
		t.Fatalf("Stats after releasing the busy one = %+v", s)
	}
	eventually(t, "the busy sandbox to be destroyed on release", func() bool { return sandboxes(t, e.w) == 1 })

	// Other keys are untouched.
	if s := e.m.Stats(other.Key); s != (workermgr.Stats{Idle: 1}) {
		t.Fatalf("Stats of another key = %+v", s)
	}
	l, err := e.m.Reserve(testCtx(t), other)
	if err != nil {
		t.Fatal(err)
	}
	if l.Cold || l.SandboxID() != keep.SandboxID() {
		t.Fatalf("other key lost its warm sandbox: Cold=%v", l.Cold)
	}
	l.Release(true)
	e.m.Retire("acct/fn/never/r0") // unknown keys are a no-op

	// A stale invoke that resolved the retired version just before the
	// retire still runs, but its sandbox never goes back to the pool.
	stale, err := e.m.Reserve(testCtx(t), sp)
	if err != nil {
		t.Fatal(err)
	}
	stale.Release(true)
	if s := e.m.Stats(sp.Key); s != (workermgr.Stats{}) {
		t.Fatalf("a retired key's sandbox went back to the pool: %+v", s)
	}
}

func TestKeysNeverShare(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 0)
	a, b := spec("acct/fn/1/r1"), spec("acct/fn/1/r2")
	la, err := e.m.Reserve(testCtx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	_, instA := invoke(t, la, `{}`)
	idA := la.SandboxID()
	la.Release(true)

	lb, err := e.m.Reserve(testCtx(t), b)
	if err != nil {
		t.Fatal(err)
	}
	if !lb.Cold || lb.SandboxID() == idA {
		t.Fatalf("key %s got key %s's sandbox (Cold=%v)", b.Key, a.Key, lb.Cold)
	}
	if _, instB := invoke(t, lb, `{}`); instB == instA {
		t.Fatal("two keys ran in one process")
	}
	lb.Release(true)
	if sa, sb := e.m.Stats(a.Key), e.m.Stats(b.Key); sa != (workermgr.Stats{Idle: 1}) || sb != (workermgr.Stats{Idle: 1}) {
		t.Fatalf("Stats a=%+v b=%+v", sa, sb)
	}
	if s := e.m.Stats(""); s != (workermgr.Stats{Idle: 2}) {
		t.Fatalf("Stats(all) = %+v", s)
	}
	la, err = e.m.Reserve(testCtx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	if la.Cold || la.SandboxID() != idA {
		t.Fatalf("key a lost its sandbox: Cold=%v %s", la.Cold, la.SandboxID())
	}
	la.Release(true)
}

func TestReserveErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0, 256)
	sp := spec("acct/fn/1/r1")

	t.Run("no capacity", func(t *testing.T) {
		big := sp
		big.MemoryMB = 512
		_, err := e.m.Reserve(testCtx(t), big)
		var apiErr *errdefs.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != "TooManyRequestsException" {
			t.Fatalf("Reserve beyond the host's memory: %v", err)
		}
		if s := e.m.Stats(""); s != (workermgr.Stats{}) {
			t.Fatalf("Stats after a failed reserve = %+v", s)
		}
	})
	t.Run("worker fails", func(t *testing.T) {
		bad := sp
		bad.CodeSha256Hex = fixtureMissingSha
		if _, err := e.m.Reserve(testCtx(t), bad); err == nil {
			t.Fatal("Reserve with code the store lacks succeeded")
		}
		if s := e.m.Stats(""); s != (workermgr.Stats{}) {
			t.Fatalf("Stats after a failed reserve = %+v", s)
		}
	})
	t.Run("config", func(t *testing.T) {
		if _, err := workermgr.New(workermgr.Config{Placement: placement.Default(placement.Static{e.w})}); err == nil {
			t.Fatal("New without workers succeeded")
		}
		if _, err := workermgr.New(workermgr.Config{Workers: []workermgr.Worker{e.w}}); err == nil {
			t.Fatal("New without placement succeeded")
		}
	})
}

const fixtureMissingSha = "abababababababababababababababababababababababababababababababab"
