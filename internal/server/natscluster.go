package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/async"
)

// In a cluster every node's embedded NATS server joins one NATS cluster
// (package async, cluster.go). Each node's route listener address is kept
// in its data dir and published in a replicated part of the Raft log, so a
// node (re)starting, or joining, learns where the others listen.

// natsPartName is the replicated map node id → NATS route address.
const natsPartName = "kiln.async.nats"

// natsAddrFile keeps a node's NATS cluster address in its data dir.
const natsAddrFile = "nats-cluster-addr"

type natsRoutes struct {
	mu sync.RWMutex
	m  map[string]string
}

type natsRouteCmd struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

func newNATSRoutes() *natsRoutes { return &natsRoutes{m: map[string]string{}} }

func (p *natsRoutes) Apply(_ uint64, b []byte) any {
	var c natsRouteCmd
	if err := json.Unmarshal(b, &c); err != nil || c.ID == "" {
		return fmt.Errorf("server: bad nats route command: %q", b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.Addr == "" {
		delete(p.m, c.ID)
	} else {
		p.m[c.ID] = c.Addr
	}
	return nil
}

func (p *natsRoutes) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return json.Marshal(p.m)
}

func (p *natsRoutes) Restore(b []byte) error {
	m := map[string]string{}
	if b != nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("server: decode nats routes: %w", err)
		}
	}
	p.mu.Lock()
	p.m = m
	p.mu.Unlock()
	return nil
}

func (p *natsRoutes) get(id string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[id]
}

// registerNATSPart adds the route part before the node starts (cluster
// nodes with an embedded NATS only).
func (s *Server) registerNATSPart() {
	if s.node.Clustered() && s.cfg.Async.NATSURL == "" {
		s.natsRoutes = newNATSRoutes()
		s.node.Register(natsPartName, s.natsRoutes)
	}
}

// natsCluster decides how this node's embedded NATS joins the others: nil
// when it runs alone (not clustered, an external NATS, or a lone voter).
func (s *Server) natsCluster(ctx context.Context) (*async.ClusterConfig, error) {
	if s.natsRoutes == nil {
		return nil, nil
	}
	members, err := s.node.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: members: %w", err)
	}
	var voters []string
	for _, m := range members {
		if m.Voter {
			voters = append(voters, m.ID)
		}
	}
	if len(voters) < 2 {
		// JetStream clustering needs two servers for a quorum; a lone voter
		// keeps its store to itself (until a restart after others joined).
		s.log.Info("one voter: the async queue runs on this node alone")
		return nil, nil
	}
	addr, err := s.natsAddr()
	if err != nil {
		return nil, err
	}
	me := s.node.ID()
	// Publish this node's address (once; a restart finds it there).
	b, _ := json.Marshal(natsRouteCmd{ID: me, Addr: addr})
	for t0 := time.Now(); s.natsRoutes.get(me) != addr; {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.node.Apply(actx, natsPartName, b)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Since(t0) > 30*time.Second {
			return nil, fmt.Errorf("server: publish the NATS cluster address: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Wait (bounded) for the others' addresses: all of them, or a quorum
	// plus a moment. Those still missing dial this node later, and NATS
	// gossips every route to every server.
	quorum := len(voters)/2 + 1
	t0 := time.Now()
	var quorumAt time.Time
	var routes []string
	for {
		routes = routes[:0]
		for _, id := range voters {
			if a := s.natsRoutes.get(id); a != "" {
				routes = append(routes, a)
			}
		}
		if len(routes) >= quorum && quorumAt.IsZero() {
			quorumAt = time.Now()
		}
		if len(routes) == len(voters) || (!quorumAt.IsZero() && time.Since(quorumAt) > 2*time.Second) || time.Since(t0) > 10*time.Second {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	sort.Strings(routes)
	s.log.Info("NATS joins the cluster", "listen", addr, "routes", routes, "voters", len(voters))
	return &async.ClusterConfig{
		Name:     me,
		Listen:   addr,
		Routes:   routes,
		Key:      s.clusterKey,
		Replicas: min(3, len(voters)),
	}, nil
}

// natsAddr is this node's NATS route address: --nats-cluster-addr (pinned),
// else the pinned one, else the Raft host with a free port (pinned).
func (s *Server) natsAddr() (string, error) {
	p := filepath.Join(s.cfg.DataDir, natsAddrFile)
	want := s.cfg.Cluster.NATSAddr
	if want == "" {
		if b, err := os.ReadFile(p); err == nil {
			if a := strings.TrimSpace(string(b)); a != "" {
				return a, nil
			}
		}
		raft := s.cfg.Cluster.RaftAddr
		if raft == "" {
			b, _ := os.ReadFile(filepath.Join(s.cfg.DataDir, "raft", "raft-addr"))
			raft = strings.TrimSpace(string(b))
		}
		host, _, err := net.SplitHostPort(raft)
		if err != nil {
			return "", fmt.Errorf("server: no --nats-cluster-addr and no Raft address to derive it from: %w", err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("server: pick a NATS cluster port: %w", err)
		}
		want = l.Addr().String()
		_ = l.Close()
	}
	if _, port, err := net.SplitHostPort(want); err != nil || port == "0" || port == "" {
		return "", errors.New("server: --nats-cluster-addr must be host:port with a port")
	}
	if err := writeFileAtomic(p, []byte(want+"\n"), 0o600); err != nil {
		return "", err
	}
	return want, nil
}
