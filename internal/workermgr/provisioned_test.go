package workermgr_test

import (
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/workermgr"
)

// TestProvisionInitFailure: provisioned sandboxes whose init fails are never
// kept; after Lambda's six attempts the allocation is FAILED with its
// StatusReason, and nothing more is tried until it is retried.
func TestProvisionInitFailure(t *testing.T) {
	e := newEnv(t, time.Minute, 0)
	sp := spec("initfail")
	// The Python runtime cannot import this handler from the Go function's
	// package: Runtime.ImportModuleError during init.
	sp.Runtime, sp.Handler = "python3.12", "missing.handler"
	tests := []struct {
		name  string
		start func()
	}{
		{"first put", func() { e.m.Provision(sp, 2) }},
		{"put again", func() { e.m.RetryProvision(sp.Key) }},
	}
	for _, tt := range tests {
		tt.start()
		if _, failed := e.m.ProvisionStatus(sp.Key); failed != "" {
			t.Fatalf("%s: failed at once: %q", tt.name, failed)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			alive, failed := e.m.ProvisionStatus(sp.Key)
			if failed != "" {
				if failed != workermgr.StatusReasonInitFailure || alive != 0 {
					t.Fatalf("%s: status %q alive %d", tt.name, failed, alive)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never FAILED (alive %d)", tt.name, alive)
			}
			time.Sleep(20 * time.Millisecond)
		}
		eventually(t, "failed sandboxes destroyed", func() bool { return sandboxes(t, e.w) == 0 })
		if st := e.m.Stats(sp.Key); st.Idle != 0 {
			t.Fatalf("%s: idle provisioned sandboxes after failure: %+v", tt.name, st)
		}
	}
	// A changed target starts over too, and removing it clears the status.
	e.m.Provision(sp, 0)
	if _, failed := e.m.ProvisionStatus(sp.Key); failed != "" {
		t.Fatalf("after removal: %q", failed)
	}
}
