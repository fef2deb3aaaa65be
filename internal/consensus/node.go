package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Part is one replicated state machine multiplexed onto the node.
//
// The node calls a Part only from the Raft FSM goroutine, one call at a time,
// so a Part needs a lock only against its own readers.
type Part interface {
	// Apply applies one committed command and returns its result; an error
	// value returned here is handed to the proposer as Node.Apply's error.
	// It must be deterministic: the same state and command give the same
	// result on every replica, so it never reads the clock, randomness, the
	// environment or the file system.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns the part's whole state. It runs in the FSM goroutine,
	// so it must copy or encode the state before returning.
	Snapshot() ([]byte, error)
	// Restore replaces the part's whole state with one from Snapshot. data is
	// nil when the snapshot holds nothing for this part (reset to empty).
	Restore(data []byte) error
}

// Config configures a Node.
type Config struct {
	// Dir holds the Raft log (raft.db), snapshots and the node id.
	Dir string
	// NodeID names this voter. It is pinned in Dir on first start; empty
	// means the pinned one, or "node-1" on first start.
	NodeID string
	// Bind is the TCP address for Raft traffic between voters. Empty selects
	// the one pinned in Dir on an earlier start, else an in-memory
	// transport: one voter, no network.
	Bind string
	// HTTPAddr is where this node serves its internal routes (RegisterRoutes,
	// host:port); peers learn it through the replicated member list.
	HTTPAddr string
	// ClusterKey signs node-to-node requests (RequireSignature). Without it
	// a follower does not forward commands (Apply returns ErrNotLeader).
	ClusterKey []byte
	// Join lists HTTP addresses of members of a running cluster; on first
	// start the node asks them to add it as a voter instead of bootstrapping
	// (later starts ignore it: membership is in the Raft state). Needs Bind
	// and ClusterKey.
	Join []string
	// Peers, when set, is the whole static voter set (this node included,
	// by NodeID) and needs Bind. Every node bootstraps the same
	// configuration on first start; Start returns once a leader is known.
	Peers []Peer
	// SnapshotThreshold is how many log entries trigger a snapshot
	// (0 → 8192).
	SnapshotThreshold uint64
	Logger            *slog.Logger
}

// Peer is one voter of a static cluster.
type Peer struct {
	ID   string
	Addr string // its Raft Bind address
	HTTP string // its HTTPAddr (internal routes); may be empty
}

// Errors callers may match.
var (
	ErrNotStarted     = errors.New("consensus: node not started")
	ErrStarted        = errors.New("consensus: node already started")
	ErrClosed         = errors.New("consensus: node closed")
	ErrUnknownPart    = errors.New("consensus: unknown part")
	ErrNotLeader      = errors.New("consensus: not the leader")
	ErrOutcomeUnknown = errors.New("consensus: command outcome unknown")
)

const (
	defaultNodeID = "node-1"
	nodeIDFile    = "node-id"
	bindFile      = "raft-addr"
	retainSnaps   = 2
)

// Node is one Raft voter shared by several Parts.
type Node struct {
	cfg     Config
	log     *slog.Logger
	nodeID  string
	store   *raftboltdb.BoltStore
	snaps   *raft.FileSnapshotStore
	trans   raft.Transport
	closeTr func() error
	fsm     *muxFSM
	members *membersPart
	client  *http.Client

	mu      sync.Mutex
	started bool
	closed  bool
	raft    *raft.Raft
	// inflight counts Apply calls (and the waiter goroutines they start) so
	// Close can wait for them after Raft has resolved every future.
	inflight sync.WaitGroup
	// bg runs registerSelf; stopBG ends it on Close.
	bg     sync.WaitGroup
	stopBG context.CancelFunc
}

// Open prepares a node in cfg.Dir: it opens the log and snapshot stores and
// the transport, but does not run Raft until Start, so Parts can register
// first.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("consensus: Config.Dir is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: create dir: %w", err)
	}
	nodeID, err := pinNodeID(cfg.Dir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if cfg.Bind, err = pinBind(cfg.Dir, cfg.Bind); err != nil {
		return nil, err
	}
	if (len(cfg.Peers) > 0 || len(cfg.Join) > 0) && cfg.Bind == "" {
		return nil, errors.New("consensus: Config.Peers and Config.Join need Config.Bind")
	}
	if len(cfg.Join) > 0 && len(cfg.ClusterKey) == 0 {
		return nil, fmt.Errorf("consensus: Config.Join needs Config.ClusterKey: %w", ErrNoClusterKey)
	}
	n := &Node{cfg: cfg, log: log.With("node_id", nodeID), nodeID: nodeID}
	n.fsm = &muxFSM{parts: map[string]Part{}, log: n.log}
	n.members = &membersPart{m: map[string]string{}}
	n.fsm.parts[membersPartName] = n.members
	n.client = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}

	n.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("consensus: open log store: %w", err)
	}
	hl := newHCLog(n.log)
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainSnaps, hl)
	if err != nil {
		_ = n.store.Close()
		return nil, fmt.Errorf("consensus: open snapshot store: %w", err)
	}
	if cfg.Bind == "" {
		// A stable address keeps the stored configuration valid across restarts.
		_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + nodeID))
		n.trans, n.closeTr = tr, tr.Close
	} else {
		tr, err := raft.NewTCPTransportWithLogger(cfg.Bind, nil, 3, 10*time.Second, hl)
		if err != nil {
			_ = n.store.Close()
			return nil, fmt.Errorf("consensus: listen %s: %w", cfg.Bind, err)
		}
		n.trans, n.closeTr = tr, tr.Close
	}
	return n, nil
}

// pinNodeID keeps the node's id stable across restarts: the stored Raft
// configuration names it, and a node under another id would never be elected.
func pinNodeID(dir, want string) (string, error) {
	p := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		have := strings.TrimSpace(string(b))
		if want != "" && want != have {
			return "", fmt.Errorf("consensus: %s belongs to node %q, not %q", dir, have, want)
		}
		return have, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("consensus: read node id: %w", err)
	}
	if want == "" {
		want = defaultNodeID
	}
	if err := writeFileSync(p, []byte(want+"\n")); err != nil {
		return "", fmt.Errorf("consensus: pin node id: %w", err)
	}
	return want, nil
}

// pinBind keeps the Raft address across restarts: the stored configuration
// names it, so a restart needs no flag. want overrides (and re-pins) it.
func pinBind(dir, want string) (string, error) {
	p := filepath.Join(dir, bindFile)
	if want != "" {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == want {
			return want, nil
		}
		if err := writeFileSync(p, []byte(want+"\n")); err != nil {
			return "", fmt.Errorf("consensus: pin raft address: %w", err)
		}
		return want, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("consensus: read raft address: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// StoredNodeID is the node id pinned in dir by an earlier start ("" if none).
func StoredNodeID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, nodeIDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Register adds a part under name. It must be called before Start; names are
// at most 255 bytes and unique. Misuse is a programming error and panics,
// like http.ServeMux.Handle.
func (n *Node) Register(name string, part Part) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.started:
		panic("consensus: Register(" + name + ") after Start")
	case name == "" || len(name) > 255:
		panic("consensus: part name must be 1-255 bytes")
	case part == nil:
		panic("consensus: nil part " + name)
	}
	if _, dup := n.fsm.parts[name]; dup {
		panic("consensus: part " + name + " registered twice")
	}
	n.fsm.parts[name] = part
}

// Start runs Raft: it restores the newest snapshot, bootstraps a single voter
// if the directory is new, waits until this node leads and every committed
// command has been applied to the parts. It honours ctx's deadline.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrClosed
	case n.started:
		return ErrStarted
	}
	n.started = true
	t0 := time.Now()

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.nodeID)
	conf.Logger = newHCLog(n.log)
	if n.cfg.SnapshotThreshold > 0 {
		conf.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	if n.cfg.Bind != "" {
		// A leader loss must be noticed and repaired well within the 5 s
		// admission budget; loopback and LAN round trips are sub-ms.
		conf.HeartbeatTimeout = 500 * time.Millisecond
		conf.ElectionTimeout = 500 * time.Millisecond
		conf.LeaderLeaseTimeout = 250 * time.Millisecond
		// A follower learns that an entry committed from the next append
		// the leader sends; without new entries that comes after
		// CommitTimeout (default 50 ms). A forwarded command waits for its
		// own replica to apply it, so keep that wait short.
		conf.CommitTimeout = 5 * time.Millisecond
	}
	if n.cfg.Bind == "" {
		// One voter talks to nobody, so there is no reason to wait the
		// defaults (1 s) before electing itself; this makes startup ~100 ms.
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
	}

	hasState, err := raft.HasExistingState(n.store, n.store, n.snaps)
	if err != nil {
		return fmt.Errorf("consensus: inspect state: %w", err)
	}
	joining := !hasState && len(n.cfg.Join) > 0
	if !hasState && !joining {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: conf.LocalID, Address: n.trans.LocalAddr(),
		}}}
		if len(n.cfg.Peers) > 0 {
			boot.Servers = nil
			for _, p := range n.cfg.Peers {
				boot.Servers = append(boot.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
		}
		if err := raft.BootstrapCluster(conf, n.store, n.store, n.snaps, n.trans, boot); err != nil {
			return fmt.Errorf("consensus: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped cluster", "dir", n.cfg.Dir, "voters", len(boot.Servers))
	}
	r, err := raft.NewRaft(conf, n.fsm, n.store, n.store, n.snaps, n.trans)
	if err != nil {
		return fmt.Errorf("consensus: start raft: %w", err)
	}
	n.raft = r
	if joining {
		if err := n.join(ctx); err != nil {
			return err
		}
	}
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	if n.canForward() {
		bctx, cancel := context.WithCancel(context.Background())
		n.stopBG = cancel
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			n.registerSelf(bctx)
		}()
	}
	n.log.Info("consensus ready", "elapsed", time.Since(t0).Round(time.Millisecond), "applied_index", r.AppliedIndex())
	return nil
}

func (n *Node) waitReady(ctx context.Context) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	if n.cfg.Bind != "" {
		// In a cluster this node may follow; it is ready once it knows a
		// leader and has caught up with what that leader had committed (when
		// it can ask: that needs the cluster key).
		for {
			if addr, _ := n.raft.LeaderWithID(); addr != "" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("consensus: waiting for a leader: %w", ctx.Err())
			case <-tick.C:
			}
		}
		if n.raft.State() != raft.Leader && !n.canForward() {
			return nil
		}
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := n.syncStarted(sctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Serving slightly stale reads beats not starting; writes and
			// forwarded commands still wait for their own index.
			n.log.Warn("could not catch up with the leader; starting anyway", "err", err)
		}
		return nil
	}
	for n.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: waiting for leadership: %w", ctx.Err())
		case <-tick.C:
		}
	}
	// Leadership alone does not mean the log has been replayed into the
	// parts; a barrier does, so state is complete when Start returns.
	if err := n.raft.Barrier(timeoutFrom(ctx)).Error(); err != nil {
		return fmt.Errorf("consensus: barrier: %w", err)
	}
	return nil
}

func timeoutFrom(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Nanosecond
	}
	return 0
}

// Apply proposes cmd to part and waits until it is committed to disk and
// applied, returning the part's result. If the part's result is an error it
// is returned as the error. If ctx ends first the error wraps both
// ErrOutcomeUnknown and ctx.Err(): the command may still be applied.
func (n *Node) Apply(ctx context.Context, part string, cmd []byte) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := n.begin()
	if err != nil {
		return nil, err
	}
	defer n.inflight.Done()
	// Parts are fixed once started, so this read needs no lock.
	if _, ok := n.fsm.parts[part]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPart, part)
	}

	if n.canForward() {
		return n.applyAnywhere(ctx, r, part, cmd)
	}
	return n.applyLocal(ctx, r, part, frame(part, cmd))
}

// applyAnywhere applies on the leader, this node or another: a follower
// forwards the command to the leader's internal route. It retries while no
// leader is reachable and nothing can have been applied, until ctx ends
// (10 s when ctx has no deadline).
func (n *Node) applyAnywhere(ctx context.Context, r *raft.Raft, part string, cmd []byte) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	framed := frame(part, cmd)
	for {
		var res any
		err := errRetry
		if r.State() == raft.Leader {
			res, err = n.applyLocal(ctx, r, part, framed)
			if errors.Is(err, raft.ErrNotLeader) {
				err = errRetry
			}
		} else if addr := n.leaderHTTP(r); addr != "" {
			res, err = n.forwardApply(ctx, addr, framed)
		}
		if !errors.Is(err, errRetry) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("consensus: apply %s: %w: no leader reachable: %w", part, ErrNotLeader, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) applyLocal(ctx context.Context, r *raft.Raft, part string, framed []byte) (any, error) {
	f := r.Apply(framed, timeoutFrom(ctx))
	if err := n.wait(ctx, f); err != nil {
		return nil, fmt.Errorf("consensus: apply %s: %w: %w", part, ErrOutcomeUnknown, err)
	}
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("consensus: apply %s: %w: %w", part, ErrNotLeader, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("consensus: apply %s: %w", part, ErrClosed)
		}
		return nil, fmt.Errorf("consensus: apply %s: %w", part, err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// IsLeader reports whether this node currently leads (and may Apply).
func (n *Node) IsLeader() bool {
	n.mu.Lock()
	r := n.raft
	n.mu.Unlock()
	return r != nil && r.State() == raft.Leader
}

// Leader returns the current leader's node id ("" when none is known).
func (n *Node) Leader() string {
	n.mu.Lock()
	r := n.raft
	n.mu.Unlock()
	if r == nil {
		return ""
	}
	_, id := r.LeaderWithID()
	return string(id)
}

// ID is this node's id.
func (n *Node) ID() string { return n.nodeID }

// Snapshot forces a snapshot of every part now (normally Raft takes one
// every SnapshotThreshold entries) and compacts the log behind it.
func (n *Node) Snapshot(ctx context.Context) error {
	r, err := n.begin()
	if err != nil {
		return err
	}
	defer n.inflight.Done()
	f := r.Snapshot()
	if err := n.wait(ctx, f); err != nil {
		return err
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("consensus: snapshot: %w", err)
	}
	return nil
}

// begin admits one operation against a running node; the caller must call
// n.inflight.Done when finished.
func (n *Node) begin() (*raft.Raft, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return nil, ErrClosed
	case n.raft == nil:
		return nil, ErrNotStarted
	}
	n.inflight.Add(1)
	return n.raft, nil
}

// wait blocks until f resolves or ctx ends. The waiter goroutine is owned by
// the node: Raft resolves every future by Shutdown, and Close waits for it.
// The caller must hold an inflight slot (from begin).
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		_ = f.Error()
		return nil
	}
	done := make(chan struct{})
	n.inflight.Add(1)
	go func() {
		defer n.inflight.Done()
		_ = f.Error()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops Raft and closes the stores. Commands already applied are on
// disk; Apply calls in flight fail with ErrClosed.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	r := n.raft
	n.mu.Unlock()
	if n.stopBG != nil {
		n.stopBG()
		n.bg.Wait()
	}

	var errs []error
	if r != nil && n.cfg.Bind != "" && r.State() == raft.Leader {
		// Hand leadership over rather than make the others wait out an
		// election timeout; best effort (it fails without a peer to take it).
		if err := r.LeadershipTransfer().Error(); err != nil {
			n.log.Debug("leadership transfer on close", "err", err)
		}
	}
	if r != nil {
		if err := r.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	n.inflight.Wait()
	if n.closeTr != nil {
		if err := n.closeTr(); err != nil {
			errs = append(errs, fmt.Errorf("transport: %w", err))
		}
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("log store: %w", err))
	}
	return errors.Join(errs...)
}

// frame prefixes cmd with its part: [kind=1][len(name)][name][cmd].
func frame(part string, cmd []byte) []byte {
	b := make([]byte, 0, 2+len(part)+len(cmd))
	b = append(b, frameKindPart, byte(len(part)))
	b = append(b, part...)
	return append(b, cmd...)
}

const frameKindPart = 1

var errBadFrame = errors.New("consensus: malformed command frame")

func unframe(b []byte) (part string, cmd []byte, err error) {
	if len(b) < 2 || b[0] != frameKindPart {
		return "", nil, errBadFrame
	}
	l := int(b[1])
	if l == 0 || len(b) < 2+l {
		return "", nil, errBadFrame
	}
	return string(b[2 : 2+l]), b[2+l:], nil
}

var _ io.Closer = (*Node)(nil)
