package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// kvPart is a tiny deterministic Part: commands are "key=value" and Apply
// returns the previous value, or an error for "fail".
type kvPart struct {
	mu       sync.Mutex
	m        map[string]string
	indexes  []uint64
	restores int
}

func newKV() *kvPart { return &kvPart{m: map[string]string{}} }

var errFail = errors.New("kv: asked to fail")

func (p *kvPart) Apply(index uint64, cmd []byte) any {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.indexes = append(p.indexes, index)
	if string(cmd) == "fail" {
		return errFail
	}
	k, v, _ := strings.Cut(string(cmd), "=")
	prev := p.m[k]
	p.m[k] = v
	return prev
}

func (p *kvPart) Snapshot() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(p.m) // sorted keys: deterministic bytes
}

func (p *kvPart) Restore(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restores++
	p.m = map[string]string{}
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, &p.m)
}

func (p *kvPart) get(k string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[k]
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNode opens dir with the given parts registered and starts it.
func startNode(t *testing.T, dir string, parts map[string]Part) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Open(ctx, Config{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	names := make([]string, 0, len(parts))
	for name := range parts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n.Register(name, parts[name])
	}
	t0 := time.Now()
	if err := n.Start(ctx); err != nil {
		n.Close()
		t.Fatalf("Start: %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Start took %v, want well under a second for a single voter", d)
	}
	t.Logf("started in %v", time.Since(t0))
	return n
}

func apply(t *testing.T, n *Node, part, cmd string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, part, []byte(cmd))
	if err != nil {
		t.Fatalf("Apply(%s, %q): %v", part, cmd, err)
	}
	return res
}

func TestApplyRestartRoundTrip(t *testing.T) {
	dir := t.TempDir()
	kv := newKV()
	n := startNode(t, dir, map[string]Part{"kv": kv})
	for i := range 20 {
		apply(t, n, "kv", fmt.Sprintf("k%d=v%d", i, i))
	}
	if got := apply(t, n, "kv", "k3=changed"); got != "v3" {
		t.Fatalf("Apply returned %v, want previous value v3", got)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	kv2 := newKV()
	n2 := startNode(t, dir, map[string]Part{"kv": kv2})
	defer n2.Close()
	if got := kv2.get("k3"); got != "changed" {
		t.Fatalf("after restart k3 = %q, want changed", got)
	}
	if got := kv2.get("k19"); got != "v19" {
		t.Fatalf("after restart k19 = %q, want v19", got)
	}
	// The replayed indexes are the originals.
	if !reflect.DeepEqual(kv.indexes, kv2.indexes) {
		t.Fatalf("replayed indexes %v, want %v", kv2.indexes, kv.indexes)
	}
}

func TestSnapshotRestoreMultipleParts(t *testing.T) {
	dir := t.TempDir()
	a, b := newKV(), newKV()
	n := startNode(t, dir, map[string]Part{"a": a, "b": b})
	apply(t, n, "a", "x=1")
	apply(t, n, "b", "x=2")
	apply(t, n, "b", "y=3")
	ctx := context.Background()
	if err := n.Snapshot(ctx); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	// Entries after the snapshot must come back by log replay on top of it.
	apply(t, n, "a", "z=4")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	a2, b2 := newKV(), newKV()
	n2 := startNode(t, dir, map[string]Part{"a": a2, "b": b2})
	defer n2.Close()
	if a2.restores != 1 || b2.restores != 1 {
		t.Fatalf("restores a=%d b=%d, want 1 each (from the snapshot)", a2.restores, b2.restores)
	}
	want := map[*kvPart]map[string]string{
		a2: {"x": "1", "z": "4"},
		b2: {"x": "2", "y": "3"},
	}
	for p, w := range want {
		if !reflect.DeepEqual(p.m, w) {
			t.Errorf("state %v, want %v", p.m, w)
		}
	}
	// Only the post-snapshot entry was replayed into a.
	if len(a2.indexes) != 1 || len(b2.indexes) != 0 {
		t.Errorf("replayed a=%v b=%v, want one entry for a only", a2.indexes, b2.indexes)
	}
}

func TestUnregisteredPartSurvivesInSnapshot(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, map[string]Part{"a": newKV(), "b": newKV()})
	apply(t, n, "b", "keep=me")
	if err := n.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.Close()

	// A binary without part b runs for a while and snapshots.
	n = startNode(t, dir, map[string]Part{"a": newKV()})
	apply(t, n, "a", "k=v")
	if err := n.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.Close()

	b := newKV()
	n = startNode(t, dir, map[string]Part{"a": newKV(), "b": b})
	defer n.Close()
	if got := b.get("keep"); got != "me" {
		t.Fatalf("part b lost its state through a node that did not know it: keep=%q", got)
	}
}

func TestDeterministicApply(t *testing.T) {
	cmds := []struct{ part, cmd string }{
		{"a", "x=1"}, {"b", "x=2"}, {"a", "x=3"}, {"a", "fail"}, {"b", "y=4"},
	}
	var snaps [2][]byte
	var idx [2][]uint64
	for i := range 2 {
		a, b := newKV(), newKV()
		n := startNode(t, t.TempDir(), map[string]Part{"a": a, "b": b})
		for _, c := range cmds {
			_, _ = n.Apply(context.Background(), c.part, []byte(c.cmd))
		}
		m, err := n.fsm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		snaps[i] = m.(*muxSnapshot).data
		idx[i] = append(append([]uint64(nil), a.indexes...), b.indexes...)
		n.Close()
	}
	if string(snaps[0]) != string(snaps[1]) {
		t.Fatalf("two replicas fed the same commands differ:\n%q\n%q", snaps[0], snaps[1])
	}
	if !reflect.DeepEqual(idx[0], idx[1]) {
		t.Fatalf("indexes differ: %v vs %v", idx[0], idx[1])
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n.Register("kv", newKV())
	if _, err := n.Apply(ctx, "kv", []byte("a=b")); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Apply before Start: %v, want ErrNotStarted", err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		part string
		cmd  string
		want error
	}{
		{"unknown part", ctx, "nope", "a=b", ErrUnknownPart},
		{"part error is returned as error", ctx, "kv", "fail", errFail},
		{"cancelled context", cancelled, "kv", "a=b", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := n.Apply(tt.ctx, tt.part, []byte(tt.cmd)); !errors.Is(err, tt.want) {
				t.Fatalf("Apply: %v, want %v", err, tt.want)
			}
		})
	}
	if !n.IsLeader() {
		t.Fatal("single voter is not leader after Start")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Apply(ctx, "kv", []byte("a=b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v, want ErrClosed", err)
	}
}

func TestConcurrentApply(t *testing.T) {
	kv := newKV()
	n := startNode(t, t.TempDir(), map[string]Part{"kv": kv})
	defer n.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if _, err := n.Apply(context.Background(), "kv", fmt.Appendf(nil, "g%d-%d=x", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(kv.m) != 200 {
		t.Fatalf("%d keys, want 200", len(kv.m))
	}
}

func TestRegisterMisusePanics(t *testing.T) {
	n, err := Open(context.Background(), Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Register("a", newKV())
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("duplicate", func() { n.Register("a", newKV()) })
	mustPanic("empty name", func() { n.Register("", newKV()) })
	mustPanic("nil part", func() { n.Register("b", nil) })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustPanic("after start", func() { n.Register("c", newKV()) })
}

func TestNodeIDPinned(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n, err := Open(ctx, Config{Dir: dir, NodeID: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if _, err := Open(ctx, Config{Dir: dir, NodeID: "beta"}); err == nil {
		t.Fatal("opening a dir under another node id succeeded")
	}
	n, err = Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.nodeID != "alpha" {
		t.Fatalf("node id %q, want pinned alpha", n.nodeID)
	}
	if _, err := Open(ctx, Config{Dir: filepath.Join(dir, "x"), Join: []string{"10.0.0.1:7000"}}); err == nil {
		t.Fatal("Join without a Raft address and a cluster key must fail")
	}
	if _, err := os.Stat(filepath.Join(dir, nodeIDFile)); err != nil {
		t.Fatal(err)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct{ part, cmd string }{
		{"a", ""}, {"controlplane", `{"op":"x"}`}, {strings.Repeat("p", 255), "\x00\x01"},
	}
	for _, tt := range tests {
		p, c, err := unframe(frame(tt.part, []byte(tt.cmd)))
		if err != nil || p != tt.part || string(c) != tt.cmd {
			t.Errorf("round trip (%q,%q) = (%q,%q,%v)", tt.part, tt.cmd, p, c, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {2, 1, 'a'}, {1, 0}, {1, 5, 'a'}} {
		if _, _, err := unframe(bad); err == nil {
			t.Errorf("unframe(%v) accepted", bad)
		}
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(encodeSnapshot(map[string][]byte{"a": []byte("x"), "b": nil}))
	f.Add([]byte("KSN1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to an equivalent snapshot.
		s2, err := decodeSnapshot(encodeSnapshot(s))
		if err != nil || len(s2) != len(s) {
			t.Fatalf("re-encode: %v %d/%d", err, len(s2), len(s))
		}
		for k, v := range s {
			if string(s2[k]) != string(v) {
				t.Fatalf("section %q changed", k)
			}
		}
	})
}

func FuzzUnframe(f *testing.F) {
	f.Add(frame("kv", []byte("a=b")))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, c, err := unframe(b)
		if err != nil {
			return
		}
		if got := frame(p, c); string(got) != string(b) {
			t.Fatalf("frame(unframe(x)) != x")
		}
	})
}
