package counting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// LocalNode is the consensus node a cluster proposer runs beside.
type LocalNode interface {
	Proposer
	IsLeader() bool
	Leader() string
}

// ClusterProposer commits counting commands from any node of a cluster:
// on the leader it applies them, elsewhere it forwards them to the leader's
// ForwardHandler.
//
// `kiln server` does not use it: a consensus.Node given a cluster key
// forwards every part's commands itself (signed, and with the result read
// from the follower's own replica), so counting.NewStore(node) suffices.
// This unauthenticated path remains only for nodes without a cluster key,
// such as the countnode test harness; never serve ForwardHandler on a
// reachable address.
type ClusterProposer struct {
	Node LocalNode
	// Endpoints maps node ids to the base URL of their ForwardHandler. The
	// handler must be on a cluster-internal listener.
	Endpoints map[string]string
	Client    *http.Client
}

// ErrNoLeader means no leader was reachable before the context ended.
var ErrNoLeader = errors.New("counting: no consensus leader reachable")

// forwardReply is a part's result on the wire.
type forwardReply struct {
	Lease   *leaseDoc `json:"lease,omitempty"`
	Code    string    `json:"code,omitempty"` // an API error from the part
	Message string    `json:"message,omitempty"`
	Error   string    `json:"error,omitempty"` // anything else
}

type leaseDoc struct {
	Expiry int64        `json:"expiry"`
	Grants []grantEntry `json:"grants"`
}

// Apply implements Proposer.
func (p *ClusterProposer) Apply(ctx context.Context, part string, cmd []byte) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	for {
		if p.Node.IsLeader() {
			res, err := p.Node.Apply(ctx, part, cmd)
			if !errors.Is(err, consensus.ErrNotLeader) {
				return res, err
			}
		} else if url := p.Endpoints[p.Node.Leader()]; url != "" {
			res, err, retry := p.forward(ctx, url, cmd)
			if !retry {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *ClusterProposer) forward(ctx context.Context, url string, cmd []byte) (res any, err error, retry bool) {
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/counting/apply", bytes.NewReader(cmd))
	if err != nil {
		return nil, err, false
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err, true // leader gone: wait for the next one
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusMisdirectedRequest {
		return nil, nil, true
	}
	var r forwardReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("counting: forward reply: %w", err), false
	}
	return r.result()
}

func (r *forwardReply) result() (any, error, bool) {
	switch {
	case r.Code != "":
		return nil, &errdefs.APIError{Class: errdefs.ErrInvalid, Code: r.Code, Message: r.Message}, false
	case r.Error != "":
		return nil, errors.New(r.Error), false
	case r.Lease != nil:
		lr := leaseResult{Expiry: r.Lease.Expiry, Grants: map[pool]int{}}
		for _, g := range r.Lease.Grants {
			lr.Grants[g.Pool] = g.N
		}
		return lr, nil, false
	}
	return nil, nil, false
}

// ForwardHandler applies forwarded counting commands on this node; a node
// that does not lead answers 421 so the sender looks for the leader again.
func ForwardHandler(node Proposer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/counting/apply" {
			http.NotFound(w, r)
			return
		}
		cmd, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := node.Apply(r.Context(), PartName, cmd)
		if errors.Is(err, consensus.ErrNotLeader) {
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		var out forwardReply
		var ae *errdefs.APIError
		switch {
		case errors.As(err, &ae):
			out.Code, out.Message = ae.Code, ae.Message
		case err != nil:
			out.Error = err.Error()
		default:
			if lr, ok := res.(leaseResult); ok {
				ld := &leaseDoc{Expiry: lr.Expiry, Grants: []grantEntry{}}
				for p, n := range lr.Grants {
					ld.Grants = append(ld.Grants, grantEntry{p, n})
				}
				out.Lease = ld
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}
