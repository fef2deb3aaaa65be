package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// membersPartName is the node's own part: node id → HTTP address, so any
// node can reach the leader's internal routes. Every node (re)registers its
// own address after it starts.
const membersPartName = "kiln.cluster.members"

type membersPart struct {
	mu sync.RWMutex
	m  map[string]string
}

type memberCmd struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
}

func (p *membersPart) Apply(_ uint64, b []byte) any {
	var c memberCmd
	if err := json.Unmarshal(b, &c); err != nil || c.ID == "" {
		return fmt.Errorf("consensus: bad member command: %q", b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.HTTP == "" {
		delete(p.m, c.ID)
	} else {
		p.m[c.ID] = c.HTTP
	}
	return nil
}

func (p *membersPart) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return json.Marshal(p.m)
}

func (p *membersPart) Restore(b []byte) error {
	m := map[string]string{}
	if b != nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("consensus: decode members: %w", err)
		}
	}
	p.mu.Lock()
	p.m = m
	p.mu.Unlock()
	return nil
}

func (p *membersPart) get(id string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[id]
}

// Member is one server of the Raft configuration.
type Member struct {
	ID    string
	HTTP  string // "" when not known yet
	Voter bool
	Self  bool
}

// Members lists the current Raft configuration (empty before Start).
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	r, err := n.begin()
	if err != nil {
		return nil, err
	}
	defer n.inflight.Done()
	f := r.GetConfiguration()
	if err := n.wait(ctx, f); err != nil {
		return nil, err
	}
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("consensus: configuration: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		out = append(out, Member{ID: id, HTTP: n.httpAddrOf(id), Voter: s.Suffrage == raft.Voter, Self: id == n.nodeID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Clustered reports whether this node talks to other voters over the
// network (it has a Raft TCP address), as opposed to a lone in-memory voter.
func (n *Node) Clustered() bool { return n.cfg.Bind != "" }

// httpAddrOf finds a node's internal HTTP address: the replicated member
// list first, then the static peer list given at start.
func (n *Node) httpAddrOf(id string) string {
	if id == n.nodeID && n.cfg.HTTPAddr != "" {
		return n.cfg.HTTPAddr
	}
	if a := n.members.get(id); a != "" {
		return a
	}
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.HTTP
		}
	}
	return ""
}

// canForward: forwarding needs the cluster key (to sign) and a network.
func (n *Node) canForward() bool { return n.cfg.Bind != "" && len(n.cfg.ClusterKey) > 0 }

// errRetry marks a forwarding failure after which nothing reached the
// leader, so sending the command again cannot apply it twice.
var errRetry = errors.New("consensus: retry")

// forwardApply sends a framed command to the leader and waits until this
// replica has applied it, returning the result this replica computed.
func (n *Node) forwardApply(ctx context.Context, leaderHTTP string, framed []byte) (any, error) {
	restores := n.fsm.restoreCount()
	resp, err := n.Call(ctx, leaderHTTP, http.MethodPost, InternalPrefix+"apply", framed)
	if err != nil {
		if isDialError(err) {
			return nil, errRetry
		}
		return nil, fmt.Errorf("consensus: forward to leader: %w: %w", ErrOutcomeUnknown, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusMisdirectedRequest, http.StatusServiceUnavailable:
		return nil, errRetry // not leader (any more), or not started: nothing applied
	default:
		return nil, fmt.Errorf("consensus: forward to leader: %w: %s: %s", ErrOutcomeUnknown, resp.Status, body)
	}
	var rep applyReply
	if err := json.Unmarshal(body, &rep); err != nil || rep.Index == 0 {
		return nil, fmt.Errorf("consensus: forward reply %q: %w", body, ErrOutcomeUnknown)
	}
	return n.localResult(ctx, rep.Index, restores)
}

// localResult waits until this replica has applied index and returns what
// its part returned there (an error result as the error). A client that
// wrote through this node thus reads its write here afterwards.
func (n *Node) localResult(ctx context.Context, index, restores uint64) (any, error) {
	for {
		res, ok, gone, wake := n.fsm.resultAt(index, restores)
		switch {
		case ok:
			if err, isErr := res.(error); isErr {
				return nil, err
			}
			return res, nil
		case gone:
			return nil, fmt.Errorf("consensus: command committed at index %d; its result is no longer known here: %w", index, ErrOutcomeUnknown)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("consensus: waiting for index %d: %w: %w", index, ErrOutcomeUnknown, ctx.Err())
		}
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

type applyReply struct {
	Index uint64 `json:"index"`
	// Raft is the leader's applied Raft index (sync only): it may be past
	// Index by entries that never reach the parts (no-ops, configuration).
	Raft uint64 `json:"raft,omitempty"`
}

type joinRequest struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

// Status is what GET InternalPrefix+"status" answers.
type Status struct {
	ID      string `json:"id"`
	Leader  string `json:"leader"`
	State   string `json:"state"`
	Applied uint64 `json:"applied"`
}

// RegisterRoutes adds the node's internal routes (apply, join, sync,
// status) to mux. The caller must serve mux only behind RequireSignature.
func (n *Node) RegisterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+InternalPrefix+"apply", n.serveApply)
	mux.HandleFunc("POST "+InternalPrefix+"join", n.serveJoin)
	mux.HandleFunc("POST "+InternalPrefix+"sync", n.serveSync)
	mux.HandleFunc("GET "+InternalPrefix+"status", n.serveStatus)
}

// serveApply commits a forwarded, framed command on the leader and answers
// its log index; 421 means "not the leader, look again".
func (n *Node) serveApply(w http.ResponseWriter, r *http.Request) {
	framed, _ := io.ReadAll(r.Body)
	part, _, err := unframe(framed)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, ok := n.fsm.parts[part]; !ok {
		http.Error(w, "unknown part "+part, http.StatusBadRequest)
		return
	}
	rf, err := n.begin()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer n.inflight.Done()
	if rf.State() != raft.Leader {
		w.WriteHeader(http.StatusMisdirectedRequest)
		return
	}
	f := rf.Apply(framed, timeoutFrom(r.Context()))
	if err := n.wait(r.Context(), f); err != nil {
		http.Error(w, "outcome unknown: "+err.Error(), http.StatusGatewayTimeout)
		return
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		http.Error(w, "outcome unknown: "+err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, applyReply{Index: f.Index()})
}

// serveJoin adds a new voter. A follower passes the request to the leader.
func (n *Node) serveJoin(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var jr joinRequest
	if err := json.Unmarshal(body, &jr); err != nil || jr.ID == "" || jr.Raft == "" {
		http.Error(w, "bad join request", http.StatusBadRequest)
		return
	}
	rf, err := n.begin()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer n.inflight.Done()
	if rf.State() != raft.Leader {
		_, id := rf.LeaderWithID()
		addr := n.httpAddrOf(string(id))
		if addr == "" || r.Header.Get("X-Kiln-Forwarded") != "" {
			http.Error(w, "no leader known", http.StatusServiceUnavailable)
			return
		}
		resp, err := n.Call(r.Context(), addr, http.MethodPost, InternalPrefix+"join", body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	ctx := r.Context()
	if err := n.addVoter(ctx, rf, jr); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	n.log.Info("voter joined", "id", jr.ID, "raft", jr.Raft, "http", jr.HTTP)
	writeJSON(w, struct{}{})
}

func (n *Node) addVoter(ctx context.Context, rf *raft.Raft, jr joinRequest) error {
	cf := rf.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == jr.ID && string(s.Address) == jr.Raft && s.Suffrage == raft.Voter {
			present = true
		}
	}
	if !present {
		f := rf.AddVoter(raft.ServerID(jr.ID), raft.ServerAddress(jr.Raft), 0, timeoutFrom(ctx))
		if err := n.wait(ctx, f); err != nil {
			return err
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("consensus: add voter %s: %w", jr.ID, err)
		}
	}
	if jr.HTTP != "" && n.members.get(jr.ID) != jr.HTTP {
		b, _ := json.Marshal(memberCmd{ID: jr.ID, HTTP: jr.HTTP})
		f := rf.Apply(frame(membersPartName, b), timeoutFrom(ctx))
		if err := n.wait(ctx, f); err != nil {
			return err
		}
		return f.Error()
	}
	return nil
}

// serveSync answers, on the leader, an index every committed write is at
// or below (after a barrier), so a follower can catch up to it.
func (n *Node) serveSync(w http.ResponseWriter, r *http.Request) {
	rf, err := n.begin()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer n.inflight.Done()
	if rf.State() != raft.Leader {
		w.WriteHeader(http.StatusMisdirectedRequest)
		return
	}
	f := rf.Barrier(timeoutFrom(r.Context()))
	if err := n.wait(r.Context(), f); err != nil || f.Error() != nil {
		http.Error(w, "barrier failed", http.StatusServiceUnavailable)
		return
	}
	// Every entry before the barrier is in the FSM now; the last command
	// it applied is what a follower must reach.
	n.fsm.resMu.Lock()
	idx := n.fsm.applied
	n.fsm.resMu.Unlock()
	writeJSON(w, applyReply{Index: idx, Raft: rf.AppliedIndex()})
}

func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	rf := n.raft
	n.mu.Unlock()
	st := Status{ID: n.nodeID}
	if rf != nil {
		_, id := rf.LeaderWithID()
		st.Leader, st.State, st.Applied = string(id), rf.State().String(), rf.AppliedIndex()
	}
	writeJSON(w, st)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// leaderHTTP is the current leader's internal address, if known.
func (n *Node) leaderHTTP(r *raft.Raft) string {
	_, id := r.LeaderWithID()
	if id == "" {
		return ""
	}
	return n.httpAddrOf(string(id))
}

// SyncWithLeader waits until this replica has applied everything the
// leader had committed when asked. On the leader it is a barrier.
func (n *Node) SyncWithLeader(ctx context.Context) error {
	r, err := n.begin()
	if err != nil {
		return err
	}
	defer n.inflight.Done()
	return n.syncWith(ctx, r)
}

// syncStarted is SyncWithLeader for Start, which holds n.mu.
func (n *Node) syncStarted(ctx context.Context) error { return n.syncWith(ctx, n.raft) }

func (n *Node) syncWith(ctx context.Context, r *raft.Raft) error {
	for {
		if r.State() == raft.Leader {
			f := r.Barrier(timeoutFrom(ctx))
			if err := n.wait(ctx, f); err != nil {
				return err
			}
			if err := f.Error(); err == nil {
				return nil
			}
		} else if addr := n.leaderHTTP(r); addr != "" && n.canForward() {
			if rep, err := n.leaderIndex(ctx, addr); err == nil {
				return n.waitApplied(ctx, r, rep.Index, rep.Raft)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: sync with leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) leaderIndex(ctx context.Context, addr string) (applyReply, error) {
	var rep applyReply
	resp, err := n.Call(ctx, addr, http.MethodPost, InternalPrefix+"sync", nil)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("consensus: sync: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&rep)
	return rep, err
}

// waitApplied waits until this replica's parts have applied the command
// at idx (or a snapshot restore has brought them past it).
func (n *Node) waitApplied(ctx context.Context, r *raft.Raft, idx, raftIdx uint64) error {
	for {
		m := n.fsm
		m.resMu.Lock()
		// After a snapshot restore the parts' index is not known here; Raft's
		// applied index then stands in (it may run a few entries ahead).
		done := r.AppliedIndex() >= max(idx, raftIdx) && (m.applied >= idx || m.restores > 0)
		if !done && m.notify == nil {
			m.notify = make(chan struct{})
		}
		wake := m.notify
		m.resMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("consensus: catching up to %d: %w", idx, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// join asks the given members (HTTP addresses) to add this node as a voter
// until one succeeds.
func (n *Node) join(ctx context.Context) error {
	body, _ := json.Marshal(joinRequest{ID: n.nodeID, Raft: string(n.trans.LocalAddr()), HTTP: n.cfg.HTTPAddr})
	var last error
	for {
		for _, addr := range n.cfg.Join {
			resp, err := n.Call(ctx, addr, http.MethodPost, InternalPrefix+"join", body)
			if err != nil {
				last = err
				continue
			}
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				n.log.Info("joined cluster", "via", addr)
				return nil
			}
			last = fmt.Errorf("%s: %s: %s", addr, resp.Status, msg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: join %v: %w (last: %v)", n.cfg.Join, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// registerSelf keeps this node's HTTP address in the replicated member
// list, retrying until it is there or the node closes.
func (n *Node) registerSelf(ctx context.Context) {
	if n.cfg.HTTPAddr == "" || !n.canForward() {
		return
	}
	b, _ := json.Marshal(memberCmd{ID: n.nodeID, HTTP: n.cfg.HTTPAddr})
	for n.members.get(n.nodeID) != n.cfg.HTTPAddr {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Apply(actx, membersPartName, b)
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Debug("register http address", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
