package counting

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
)

type clusterMember struct {
	id    string
	node  *consensus.Node
	store *Store
	http  *http.Server
	ctr   *Counter
	dead  atomic.Bool
}

// freeAddr reserves a TCP port on ip.
func freeAddr(tb testing.TB, ip string) string {
	tb.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		tb.Skipf("cannot listen on %s: %v", ip, err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startCluster runs three voters over TCP on 127.0.0.1-3 in this process,
// each with its counting replica and forward endpoint.
func startCluster(tb testing.TB) []*clusterMember {
	tb.Helper()
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	var peers []consensus.Peer
	listeners := make([]net.Listener, 3)
	endpoints := map[string]string{}
	for i, ip := range ips {
		raftAddr := freeAddr(tb, ip)
		peers = append(peers, consensus.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: raftAddr})
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			tb.Fatal(err)
		}
		listeners[i] = l
		endpoints[peers[i].ID] = "http://" + l.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	members := make([]*clusterMember, 3)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i := range members {
		n, err := consensus.Open(ctx, consensus.Config{Dir: tb.TempDir(), NodeID: peers[i].ID, Bind: peers[i].Addr, Peers: peers})
		if err != nil {
			tb.Fatal(err)
		}
		m := &clusterMember{id: peers[i].ID, node: n}
		m.store = NewStore(&ClusterProposer{Node: n, Endpoints: endpoints})
		n.Register(PartName, m.store.State)
		m.http = &http.Server{Handler: ForwardHandler(n)}
		go func() { _ = m.http.Serve(listeners[i]) }()
		members[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Start(ctx); err != nil {
				tb.Log(err)
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	tb.Cleanup(func() {
		for _, m := range members {
			if !m.dead.Load() {
				if m.ctr != nil {
					_ = m.ctr.Close(context.Background())
				}
				_ = m.http.Close()
				_ = m.node.Close()
			}
		}
	})
	if failed.Load() {
		tb.Fatal("cluster did not start")
	}
	return members
}

// BenchmarkClusterAdmission is admission throughput against three voters,
// from a Counter on a follower (its lease commands are forwarded).
func BenchmarkClusterAdmission(b *testing.B) {
	members := startCluster(b)
	ctx := context.Background()
	var fol *clusterMember
	for _, m := range members {
		if !m.node.IsLeader() {
			fol = m
		}
	}
	if err := fol.store.PutReserved(ctx, "a", "f", 50); err != nil {
		b.Fatal(err)
	}
	for fol.store.Reserved("a", "f") != 50 {
		time.Sleep(time.Millisecond)
	}
	fol.ctr = NewCounter(Config{Store: fol.store, Holder: fol.id})
	var throttled atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, err := fol.ctr.Acquire(ctx, Request{"a", "f", FromState})
			if err != nil {
				throttled.Add(1)
				continue
			}
			fol.ctr.Release(tok)
		}
	})
	b.ReportMetric(float64(throttled.Load()), "throttled")
}

// TestClusterLeaderLoss runs three Raft voters over TCP on 127.0.0.1-3 in
// this process, each with its own counting replica, forward endpoint and
// Counter (one frontend per node). It hammers one function with reserved
// concurrency N from all three, kills the leader mid-load, and checks that
// in-flight never exceeded N and that admission resumed within 5 s.
func TestClusterLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const reserved = 6
	members := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Written through a follower when n1 does not lead: forwarding works.
	if err := members[2].store.PutReserved(ctx, "a", "f", reserved); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		for m.store.Reserved("a", "f") != reserved {
			if ctx.Err() != nil {
				t.Fatal("reservation never replicated")
			}
			time.Sleep(5 * time.Millisecond)
		}
		m.ctr = NewCounter(Config{Store: m.store, Holder: m.id, LeaseTTL: 2 * time.Second, Block: 2})
	}

	var cur, peak, admitted atomic.Int64
	var lastAdmit atomic.Int64 // unix ns
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, m := range members {
		for g := 0; g < 4; g++ {
			load.Add(1)
			go func() {
				defer load.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if m.dead.Load() {
						return
					}
					actx, acancel := context.WithTimeout(context.Background(), time.Second)
					tok, err := m.ctr.Acquire(actx, Request{"a", "f", FromState})
					acancel()
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					v := cur.Add(1)
					for {
						p := peak.Load()
						if v <= p || peak.CompareAndSwap(p, v) {
							break
						}
					}
					admitted.Add(1)
					lastAdmit.Store(time.Now().UnixNano())
					time.Sleep(2 * time.Millisecond)
					cur.Add(-1)
					m.ctr.Release(tok)
				}
			}()
		}
	}
	time.Sleep(time.Second)
	var leader *clusterMember
	for _, m := range members {
		if m.node.IsLeader() {
			leader = m
		}
	}
	if leader == nil {
		close(stop)
		load.Wait()
		t.Fatal("no leader")
	}
	before := admitted.Load()
	// Kill the leader: its frontend stops without returning tokens.
	leader.dead.Store(true)
	leader.ctr.abandon()
	_ = leader.http.Close()
	_ = leader.node.Close()
	killed := time.Now()
	t.Logf("killed leader %s after %d admissions", leader.id, before)

	// Admission must resume on the survivors within 5 s.
	var resumed time.Duration
	for {
		if time.Duration(lastAdmit.Load()-killed.UnixNano()) > 0 {
			resumed = time.Since(killed)
			break
		}
		if time.Since(killed) > 8*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var elected time.Duration
	for elected == 0 && time.Since(killed) < 8*time.Second {
		for _, m := range members {
			if m != leader && m.node.IsLeader() {
				elected = time.Since(killed)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Keep hammering past the survivors' own lease validity (1.8 s) and the
	// dead frontend's lease expiry (2 s): admitting then needs renewals
	// committed by the new leader.
	time.Sleep(3 * time.Second)
	close(stop)
	load.Wait()
	late := time.Duration(lastAdmit.Load() - killed.UnixNano())
	t.Logf("admitted %d in all; peak in flight %d (reserved %d); admission resumed %v after the leader died; new leader in %v; last admission %v after", admitted.Load(), peak.Load(), reserved, resumed, elected, late)
	if elected == 0 || elected > 5*time.Second {
		t.Fatalf("no new leader within 5 s")
	}
	if late < 2500*time.Millisecond {
		t.Fatalf("admission stopped %v after the leader died: leases were not renewed through the new leader", late)
	}
	if peak.Load() > reserved {
		t.Fatalf("peak in flight %d > reserved %d", peak.Load(), reserved)
	}
	if resumed == 0 || resumed > 5*time.Second {
		t.Fatalf("admission did not resume within 5 s (resumed=%v)", resumed)
	}
}
