package acceptance

import (
	"sync"
	"testing"
	"time"
)

// TestConcurrencyScalesAndReuses: N parallel invokes get N sandboxes; the
// next wave reuses them; after the keep-alive they are reclaimed.
func TestConcurrencyScalesAndReuses(t *testing.T) {
	const n = 20
	s := startServer(t, "", "--keep-alive", "3s")
	c := s.client(t)
	createFunction(t, c, "wide", fixtures()[0]) // the Go function starts fastest

	wave := func() map[string]bool {
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := invoke(t, c, "wide", map[string]any{"action": "sleep", "ms": 1500})
				if r.FnError != "" {
					t.Errorf("invoke: %s", r.Payload)
					return
				}
				mu.Lock()
				seen[r.Response["instance"].(string)] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
		return seen
	}
	first := wave()
	if len(first) != n {
		t.Fatalf("%d parallel invokes ran in %d sandboxes, want %d", n, len(first), n)
	}
	second := wave()
	for id := range second {
		if !first[id] {
			t.Errorf("second wave made a new sandbox %s instead of reusing", id)
		}
	}
	// Keep-alive: idle sandboxes are reclaimed, so the next invoke is cold.
	time.Sleep(5 * time.Second)
	r := invoke(t, c, "wide", map[string]any{"action": "echo"})
	if first[r.Response["instance"].(string)] {
		t.Errorf("sandbox survived its keep-alive")
	}
	if !initRE.MatchString(r.Log) {
		t.Errorf("invoke after keep-alive was not a cold start:\n%s", r.Log)
	}
}
