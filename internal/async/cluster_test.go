package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/kiln-dev/kiln/internal/frontend"
)

func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestClusterEngines runs three engines in one process whose embedded NATS
// servers form a cluster: an event enqueued on one runs once, on any.
func TestClusterEngines(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	inv := &scripted{fn: func(in *frontend.InvokeInput, n int) (*frontend.InvokeOutput, error) { return ok(`{}`) }}
	var log *slog.Logger
	if os.Getenv("KILN_TEST_NATS_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// The route ports are picked free and then bound by NATS; another test
	// process can take one in between, so a failed start is retried once
	// with fresh ports.
	var engines []*Engine
	var addrs []string
	for attempt := 0; ; attempt++ {
		addrs = []string{freePort(t, "127.0.0.1"), freePort(t, "127.0.0.2"), freePort(t, "127.0.0.3")}
		engines = make([]*Engine, 3)
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range engines {
			wg.Go(func() {
				engines[i], errs[i] = Open(context.Background(), Config{
					DataDir: t.TempDir(), Invoker: inv, RetryScale: 0.01, Lease: 2 * time.Second, Logger: log,
					Cluster: &ClusterConfig{Name: fmt.Sprintf("n%d", i+1), Listen: addrs[i], Routes: addrs, Key: key, Replicas: 3},
				})
			})
		}
		wg.Wait()
		failed := errors.Join(errs...)
		for _, e := range engines {
			if e != nil {
				t.Cleanup(e.Close)
			}
		}
		if failed == nil {
			break
		}
		if attempt == 1 {
			t.Fatalf("engines: %v", failed)
		}
		t.Logf("engines did not start (%v); retrying with fresh ports", failed)
		for _, e := range engines {
			if e != nil {
				e.Close()
			}
		}
	}
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		t0 := time.Now()
		if err := engines[0].Enqueue(context.Background(), &frontend.AsyncEvent{RequestID: ids[i], AccountID: acct, FunctionName: "f", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("first enqueue %v", time.Since(t0))
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range ids {
		for inv.count("f", id) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if inv.count("f", id) == 0 {
			t.Fatalf("event %s never ran", id)
		}
	}
	ran := 0
	for i, e := range engines {
		t.Logf("engine %d ran %d", i, e.stats.Runs.Load())
		if e.stats.Runs.Load() > 0 {
			ran++
		}
	}
	if ran < 2 {
		t.Errorf("events ran on %d engine(s); every engine's pollers should share the work", ran)
	}

	t.Run("lease runs one holder at a time", func(t *testing.T) {
		var mu sync.Mutex
		holders, peak, runs := 0, 0, 0
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Go(func() {
				for ctx.Err() == nil {
					e.withLease(ctx, "test", func(ctx context.Context) {
						mu.Lock()
						holders++
						runs++
						peak = max(peak, holders)
						mu.Unlock()
						sleep(ctx, 150*time.Millisecond) // then hand it over
						mu.Lock()
						holders--
						mu.Unlock()
					})
				}
			})
		}
		time.Sleep(4 * time.Second)
		cancel()
		wg.Wait()
		if peak != 1 || runs < 3 {
			t.Errorf("lease: peak holders %d (want 1), %d runs (want several)", peak, runs)
		}
	})

	t.Run("routes need the cluster key", func(t *testing.T) {
		before := engines[0].ns.NumRoutes()
		rogue := &ClusterConfig{Name: "rogue", Listen: freePort(t, "127.0.0.1"), Routes: addrs[:1], Key: []byte("not the cluster key, not at all!")}
		opts := &server.Options{JetStream: false, NoLog: true, NoSigs: true}
		if _, err := clusterOptions(opts, rogue); err != nil {
			t.Fatal(err)
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		defer ns.Shutdown()
		time.Sleep(1500 * time.Millisecond)
		if n := ns.NumRoutes(); n != 0 {
			t.Errorf("a server with the wrong key has %d routes", n)
		}
		if after := engines[0].ns.NumRoutes(); after != before {
			t.Errorf("routes went from %d to %d after a rogue server dialed", before, after)
		}
	})
}
