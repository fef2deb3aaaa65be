package consensus

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte{7}, KeySize)

// member is one in-process cluster node with its internal HTTP server.
type member struct {
	n    *Node
	kv   *kvPart
	http string
	srv  *http.Server
	dir  string
}

func freeTCP(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// openMember opens a node in dir with cfg (Dir, HTTPAddr, ClusterKey and
// Logger filled in), registers a kv part and serves its internal routes.
func openMember(t testing.TB, dir string, cfg Config) *member {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir, cfg.HTTPAddr, cfg.ClusterKey, cfg.Logger = dir, l.Addr().String(), testKey, testLogger(t)
	n, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{n: n, kv: newKV(), http: cfg.HTTPAddr, dir: dir}
	n.Register("kv", m.kv)
	mux := http.NewServeMux()
	n.RegisterRoutes(mux)
	m.srv = &http.Server{Handler: RequireSignature(testKey, 1<<20, mux)}
	go func() { _ = m.srv.Serve(l) }()
	t.Cleanup(m.close)
	return m
}

func (m *member) close() {
	_ = m.srv.Close()
	_ = m.n.Close()
}

func startAll(t testing.TB, ms ...*member) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.n.Start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func threeNodes(t testing.TB) []*member {
	t.Helper()
	ids := []string{"a", "b", "c"}
	var peers []Peer
	for _, id := range ids {
		peers = append(peers, Peer{ID: id, Addr: freeTCP(t)})
	}
	ms := make([]*member, 3)
	for i, p := range peers {
		ms[i] = openMember(t, t.TempDir(), Config{NodeID: p.ID, Bind: p.Addr, Peers: peers})
	}
	startAll(t, ms...)
	return ms
}

func follower(t *testing.T, ms []*member) *member {
	t.Helper()
	for _, m := range ms {
		if !m.n.IsLeader() && m.n.Leader() != "" {
			return m
		}
	}
	t.Fatal("no follower with a known leader")
	return nil
}

func TestClusterForwardJoinRestart(t *testing.T) {
	ms := threeNodes(t)
	f := follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A follower's Apply is forwarded; its result is this replica's, and
	// the write is visible here as soon as Apply returns.
	if res, err := f.n.Apply(ctx, "kv", []byte("k=v1")); err != nil || res != "" {
		t.Fatalf("forwarded Apply = %v, %v", res, err)
	}
	if got := f.kv.get("k"); got != "v1" {
		t.Fatalf("follower reads %q right after its own write, want v1", got)
	}
	if res, err := f.n.Apply(ctx, "kv", []byte("k=v2")); err != nil || res != "v1" {
		t.Fatalf("forwarded Apply = %v, %v; want previous value v1", res, err)
	}
	if _, err := f.n.Apply(ctx, "kv", []byte("fail")); !errors.Is(err, errFail) {
		t.Fatalf("a part's error through forwarding: %v, want errFail", err)
	}

	// A fourth node joins through the follower (which passes it on).
	d := openMember(t, t.TempDir(), Config{NodeID: "d", Bind: freeTCP(t), Join: []string{f.http}})
	startAll(t, d)
	if got := d.kv.get("k"); got != "v2" {
		t.Fatalf("joined node reads k=%q after Start, want v2", got)
	}
	if _, err := d.n.Apply(ctx, "kv", []byte("from=d")); err != nil {
		t.Fatal(err)
	}
	mem, err := d.n.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range mem {
		if m.Voter {
			voters++
		}
		if m.HTTP == "" {
			t.Errorf("member %s has no known HTTP address", m.ID)
		}
	}
	if voters != 4 {
		t.Fatalf("members %+v, want 4 voters", mem)
	}

	// Restart a follower with nothing but its dir and key: the Raft
	// address, id and membership come from the dir.
	f.close()
	if _, err := d.n.Apply(ctx, "kv", []byte("while=down")); err != nil {
		t.Fatal(err)
	}
	f2 := openMember(t, f.dir, Config{})
	startAll(t, f2)
	if got := f2.kv.get("while"); got != "down" {
		t.Fatalf("restarted node reads while=%q, want down", got)
	}
	if !f2.n.Clustered() {
		t.Fatal("restarted node forgot its Raft address")
	}
}

func TestRequireSignature(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := httptest.NewServer(RequireSignature(testKey, 16, ok))
	defer srv.Close()
	body := []byte("hello")
	tests := []struct {
		name   string
		sign   func(r *http.Request)
		body   []byte
		status int
	}{
		{"valid", func(r *http.Request) { SignRequest(r, testKey, body, time.Now()) }, body, 200},
		{"unsigned", func(r *http.Request) {}, body, 403},
		{"wrong key", func(r *http.Request) { SignRequest(r, make([]byte, KeySize), body, time.Now()) }, body, 403},
		{"stale", func(r *http.Request) { SignRequest(r, testKey, body, time.Now().Add(-time.Minute)) }, body, 403},
		{"future", func(r *http.Request) { SignRequest(r, testKey, body, time.Now().Add(time.Minute)) }, body, 403},
		{"body swapped", func(r *http.Request) { SignRequest(r, testKey, body, time.Now()) }, []byte("HELLO"), 403},
		{"other path", func(r *http.Request) {
			r2 := r.Clone(context.Background())
			r2.URL.Path = "/elsewhere"
			SignRequest(r2, testKey, body, time.Now())
			r.Header = r2.Header
		}, body, 403},
		{"too large", func(r *http.Request) { SignRequest(r, testKey, bytes.Repeat([]byte("x"), 17), time.Now()) }, bytes.Repeat([]byte("x"), 17), 413},
	}
	// The same signed request sent twice: the copy is refused.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+InternalPrefix+"apply", bytes.NewReader(body))
	SignRequest(req, testKey, body, time.Now())
	for i, want := range []int{200, 403} {
		again, _ := http.NewRequest(http.MethodPost, req.URL.String(), bytes.NewReader(body))
		again.Header = req.Header.Clone()
		resp, err := http.DefaultClient.Do(again)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("send %d of a signed request: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+InternalPrefix+"apply", bytes.NewReader(tt.body))
			tt.sign(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateKey(dir, nil, false); !errors.Is(err, ErrNoClusterKey) {
		t.Fatalf("no key, no create: %v", err)
	}
	k, err := LoadOrCreateKey(dir, nil, true)
	if err != nil || len(k) != KeySize {
		t.Fatalf("create: %v", err)
	}
	k2, err := LoadOrCreateKey(dir, nil, false)
	if err != nil || !bytes.Equal(k, k2) {
		t.Fatalf("reload: %v", err)
	}
	if _, err := LoadOrCreateKey(dir, testKey, false); err == nil {
		t.Fatal("a different given key was accepted")
	}
	other := t.TempDir()
	if k3, err := LoadOrCreateKey(other, testKey, false); err != nil || !bytes.Equal(k3, testKey) {
		t.Fatalf("given key: %v", err)
	}
	if k4, err := LoadOrCreateKey(other, nil, false); err != nil || !bytes.Equal(k4, testKey) {
		t.Fatalf("given key not kept: %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte("0707070707070707070707070707070707070707070707070707070707070707\n"))
	f.Add(testKey)
	f.Add([]byte("zz"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKey(b)
		if err == nil && len(k) != KeySize {
			t.Fatalf("key of %d bytes accepted", len(k))
		}
	})
}

// BenchmarkApply compares a command proposed on the leader with one a
// follower forwards (signed HTTP to the leader, then waiting for its own
// replica to apply it).
func BenchmarkApply(b *testing.B) {
	ms := threeNodes(b)
	var leader, fol *member
	for _, m := range ms {
		if m.n.IsLeader() {
			leader = m
		} else {
			fol = m
		}
	}
	for _, tc := range []struct {
		name string
		m    *member
	}{{"leader", leader}, {"follower", fol}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				if _, err := tc.m.n.Apply(ctx, "kv", []byte("k=v")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A lone voter on TCP is a cluster of one that others can join.
func TestJoinLoneVoter(t *testing.T) {
	a := openMember(t, t.TempDir(), Config{NodeID: "a", Bind: freeTCP(t)})
	startAll(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.n.Apply(ctx, "kv", []byte("x=1")); err != nil {
		t.Fatal(err)
	}
	b := openMember(t, t.TempDir(), Config{NodeID: "b", Bind: freeTCP(t), Join: []string{a.http}})
	startAll(t, b)
	if got := b.kv.get("x"); got != "1" {
		t.Fatalf("joined node reads x=%q, want 1", got)
	}
	if _, err := b.n.Apply(ctx, "kv", []byte("y=2")); err != nil {
		t.Fatal(err)
	}
	if got := a.kv.get("y"); got != "2" {
		// a is the leader: it applied y before b's Apply returned.
		t.Fatalf("leader reads y=%q, want 2", got)
	}
}
