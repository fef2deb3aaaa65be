package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/controlplane"
)

// ClusterConfig makes `kiln server` one voter of a 3- or 5-node cluster.
// Only the first start needs it: the node id, Raft address, membership,
// cluster key and API address (when Config.Listen is empty) are kept in the
// data dir, so a restart needs only --data-dir.
type ClusterConfig struct {
	// NodeID names this voter (pinned in the data dir on first start).
	NodeID string
	// RaftAddr is the TCP address Raft binds and peers dial (host:port).
	RaftAddr string
	// Peers is the static voter set, every node given the same list, as
	// "id=raftaddr@httpaddr"; it bootstraps the cluster on first start.
	Peers []string
	// Join lists the API addresses (host:port) of members of a running
	// cluster; the leader adds this node as a voter on its first start.
	Join []string
	// Key is the cluster key (32 bytes) given by the operator; nil uses the
	// one in <data-dir>/cluster.key, created on a lone node's first start.
	Key []byte
	// LeaseTTL is counting's token lease (0 → 10 s): how long a dead node's
	// tokens stay taken.
	LeaseTTL time.Duration
	// NATSAddr is where the embedded NATS server listens for routes from the
	// other nodes (host:port); "" keeps the stored one, else the Raft host
	// with a free port (natscluster.go).
	NATSAddr string
}

// ParsePeers reads "id=raftaddr@httpaddr" entries.
func ParsePeers(list []string) ([]consensus.Peer, error) {
	var out []consensus.Peer
	for _, e := range list {
		id, rest, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || id == "" || rest == "" {
			return nil, fmt.Errorf("server: bad peer %q (want id=raftaddr@httpaddr)", e)
		}
		raftAddr, httpAddr, _ := strings.Cut(rest, "@")
		out = append(out, consensus.Peer{ID: id, Addr: raftAddr, HTTP: httpAddr})
	}
	return out, nil
}

// openNode opens the consensus node for this server: a lone in-memory voter
// unless a cluster is configured now or was on an earlier start.
func (s *Server) openNode(ctx context.Context, raftDir string) error {
	cc := s.cfg.Cluster
	peers, err := ParsePeers(cc.Peers)
	if err != nil {
		return err
	}
	nodeID := cc.NodeID
	if nodeID == "" && consensus.StoredNodeID(raftDir) == "" {
		if len(peers) > 0 || len(cc.Join) > 0 {
			return errors.New("server: --peers and --join need --node-id")
		}
		nodeID = "kiln-1"
	}
	// A lone node creates the key, so a cluster can later grow from it;
	// a node that starts from a peer list or joins must be given it.
	key, err := consensus.LoadOrCreateKey(s.cfg.DataDir, cc.Key, len(peers) == 0 && len(cc.Join) == 0)
	if err != nil {
		return err
	}
	httpAddr := s.listener.Addr().String()
	for _, p := range peers {
		if p.ID == nodeID && p.HTTP != "" {
			httpAddr = p.HTTP // as the others know it
		}
	}
	s.node, err = consensus.Open(ctx, consensus.Config{
		Dir:        raftDir,
		NodeID:     nodeID,
		Bind:       cc.RaftAddr,
		HTTPAddr:   httpAddr,
		ClusterKey: key,
		Peers:      peers,
		Join:       cc.Join,
		Logger:     s.log,
	})
	if err != nil {
		return fmt.Errorf("server: consensus: %w", err)
	}
	s.clusterKey = key
	s.registerNATSPart()
	if s.node.Clustered() {
		// Peers know this node by its address, so a restart keeps it.
		addr := s.cfg.Listen
		if _, port, _ := net.SplitHostPort(addr); port == "0" {
			addr = s.listener.Addr().String()
		}
		if err := writeFileAtomic(filepath.Join(s.cfg.DataDir, listenFile), []byte(addr+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// listenFile keeps a cluster node's --listen address in its data dir.
const listenFile = "listen"

// storedListen is the address a cluster node listened on before, or the
// default 127.0.0.1:9001.
func storedListen(dataDir string) string {
	if b, err := os.ReadFile(filepath.Join(dataDir, listenFile)); err == nil {
		if a := strings.TrimSpace(string(b)); a != "" {
			return a
		}
	}
	return "127.0.0.1:9001"
}

// rootHandler sends internal routes to the signed cluster mux and the rest
// to the frontend once it exists (503 before: the listener opens early so
// peers can reach this node's internal routes while it starts).
type rootHandler struct {
	internal http.Handler
	fe       atomic.Pointer[http.Handler]
}

func (h *rootHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, consensus.InternalPrefix) {
		h.internal.ServeHTTP(w, r)
		return
	}
	fe := h.fe.Load()
	if fe == nil {
		http.Error(w, "kiln is starting", http.StatusServiceUnavailable)
		return
	}
	(*fe).ServeHTTP(w, r)
}

func (s *Server) internalHandler() http.Handler {
	mux := http.NewServeMux()
	s.node.RegisterRoutes(mux)
	s.cp.RegisterClusterRoutes(mux)
	return consensus.RequireSignature(s.clusterKey, controlplane.MaxInternalBody, mux)
}

// waitForAdmin lets a cluster's leader create the admin account alone: a
// follower waits until it sees the account (or itself becomes leader), so
// nodes that start together do not each create one.
func (s *Server) waitForAdmin(ctx context.Context) error {
	if !s.node.Clustered() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		for _, a := range s.cp.Accounts() {
			if a.Admin {
				return nil
			}
		}
		if s.node.IsLeader() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: waiting for the admin account from the leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
