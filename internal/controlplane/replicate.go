package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Code replication in a cluster. A zip is pushed to the other voters before
// the command that references it is proposed, and a majority (this node
// included) must have it fsynced, so it survives the loss of any minority.
// A node that lacks a zip (it was down, or joined later) fetches it from a
// peer by hash when it needs it. A lone node pushes nothing.

const (
	codeRoute = consensus.InternalPrefix + "code/"
	// maxCodeBody bounds a pushed zip (Lambda's unzipped limit is 250 MB;
	// a zip is never larger).
	maxCodeBody = 256 << 20
	pushTimeout = 60 * time.Second
)

// MaxInternalBody is the largest body an internal route accepts; the
// server passes it to consensus.RequireSignature.
const MaxInternalBody = maxCodeBody

// RegisterClusterRoutes adds the code routes to mux, which must be served
// only behind consensus.RequireSignature.
func (s *Service) RegisterClusterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+codeRoute+"{sha}", s.serveCodePut)
	mux.HandleFunc("GET "+codeRoute+"{sha}", s.serveCodeGet)
}

func (s *Service) serveCodePut(w http.ResponseWriter, r *http.Request) {
	h := r.PathValue("sha")
	if !isSha256Hex(h) {
		http.Error(w, "bad digest", http.StatusBadRequest)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxCodeBody+1))
	if err != nil || len(data) > maxCodeBody {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != h {
		http.Error(w, "content does not match its digest", http.StatusBadRequest)
		return
	}
	s.code.mu.RLock()
	err = s.code.store(h, data)
	s.code.mu.RUnlock()
	if err != nil {
		s.log.Error("store pushed code", "sha256", h, "err", err)
		http.Error(w, "store failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) serveCodeGet(w http.ResponseWriter, r *http.Request) {
	p := s.code.path(r.PathValue("sha"))
	if p == "" {
		http.Error(w, "bad digest", http.StatusBadRequest)
		return
	}
	s.code.mu.RLock()
	f, err := os.Open(p)
	s.code.mu.RUnlock()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/zip")
	_, _ = io.Copy(w, f)
}

// pushCode copies a zip to every other voter and returns once a majority
// of voters (this one included) has it durably. It is a no-op on a node
// without peers.
func (s *Service) pushCode(ctx context.Context, h string, data []byte) error {
	if !s.node.Clustered() {
		return nil
	}
	members, err := s.node.Members(ctx)
	if err != nil {
		return fmt.Errorf("controlplane: code replication: %w", err)
	}
	voters, have := 0, 1
	var peers []consensus.Member
	for _, m := range members {
		if !m.Voter {
			continue
		}
		voters++
		if !m.Self {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	need := voters/2 + 1
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.pushTo(ctx, m, h, data)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
				return
			}
			have++
		}()
	}
	wg.Wait()
	if have < need {
		s.log.Warn("code not replicated to a majority", "sha256", h, "have", have, "need", need, "err", errors.Join(errs...))
		return errdefs.ServiceUnavailable("The function code could not be replicated to a majority of the cluster (%d of %d nodes).", have, voters)
	}
	if len(errs) > 0 {
		s.log.Info("code replicated to a majority only", "sha256", h, "have", have, "voters", voters, "err", errors.Join(errs...))
	}
	return nil
}

func (s *Service) pushTo(ctx context.Context, m consensus.Member, h string, data []byte) error {
	if m.HTTP == "" {
		return errors.New("address unknown")
	}
	resp, err := s.node.Call(ctx, m.HTTP, http.MethodPut, codeRoute+h, data)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("push: %s", resp.Status)
	}
	return nil
}

// ReadCode returns the zip with this hex SHA-256, fetching it from a peer
// (and storing it) when this node does not have it.
func (s *Service) ReadCode(ctx context.Context, h string) ([]byte, error) {
	p := s.code.path(h)
	if p == "" {
		return nil, fmt.Errorf("controlplane: bad code digest %q", h)
	}
	b, err := os.ReadFile(p)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !s.node.Clustered() {
		return b, err
	}
	return s.fetchCode(ctx, h)
}

// ensureCode makes sure the zip is on this node (fetching it if needed).
func (s *Service) ensureCode(ctx context.Context, h string) {
	p := s.code.path(h)
	if p == "" || !s.node.Clustered() {
		return
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if _, err := s.fetchCode(ctx, h); err != nil {
			s.log.Warn("fetch code from peers", "sha256", h, "err", err)
		}
	}
}

// fetchCode asks each peer in turn for the zip, verifies its hash and
// stores it durably.
func (s *Service) fetchCode(ctx context.Context, h string) ([]byte, error) {
	members, err := s.node.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("controlplane: fetch code: %w", err)
	}
	var errs []error
	for _, m := range members {
		if m.Self || m.HTTP == "" {
			continue
		}
		data, err := s.fetchFrom(ctx, m.HTTP, h)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
			continue
		}
		s.code.mu.RLock()
		err = s.code.store(h, data)
		s.code.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		s.log.Info("fetched code from a peer", "sha256", h, "peer", m.ID, "bytes", len(data))
		return data, nil
	}
	return nil, fmt.Errorf("controlplane: code %s is on no reachable peer: %w (%w)", h, os.ErrNotExist, errors.Join(errs...))
}

func (s *Service) fetchFrom(ctx context.Context, addr, h string) ([]byte, error) {
	resp, err := s.node.Call(ctx, addr, http.MethodGet, codeRoute+h, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch: %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCodeBody+1))
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != h {
		return nil, errors.New("content does not match its digest")
	}
	return data, nil
}
