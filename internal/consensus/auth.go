package consensus

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// InternalPrefix is the path prefix of every node-to-node route. Requests
// under it are authenticated only by the cluster key (RequireSignature),
// never by an account's SigV4 credentials.
const InternalPrefix = "/_kiln/cluster/"

// KeyFile is the cluster key's file name in a server's data dir.
const KeyFile = "cluster.key"

// KeySize is the cluster key's length in bytes.
const KeySize = 32

// Signature headers. The signature is HMAC-SHA256 with the cluster key over
// method, path and query, the time and the body's SHA-256, so a request can
// be rejected before its body is read.
const (
	hdrTime      = "X-Kiln-Cluster-Time"
	hdrBodyHash  = "X-Kiln-Cluster-Content-Sha256"
	hdrSignature = "X-Kiln-Cluster-Signature"
	// maxSkew bounds how old (or early) a signed request may be.
	maxSkew = 30 * time.Second
)

// Errors of the cluster key and signatures.
var (
	ErrNoClusterKey = errors.New("consensus: no cluster key")
	ErrBadSignature = errors.New("consensus: bad cluster signature")
)

// ParseKey reads a key as 64 hex digits (surrounding space ignored) or as
// 32 raw bytes.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("consensus: a cluster key is %d bytes as %d hex digits", KeySize, 2*KeySize)
	}
	return k, nil
}

// LoadOrCreateKey returns the cluster key of the server whose data dir is
// dataDir. given (nil when none) is a key from the operator: it is written
// to dataDir/cluster.key if no key is there yet, and must match one that is.
// Without given or a stored key, a new random key is created only when
// create is true (the first node of a cluster; a node that joins or starts
// from a static peer list must be given the cluster's key).
func LoadOrCreateKey(dataDir string, given []byte, create bool) ([]byte, error) {
	p := filepath.Join(dataDir, KeyFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		have, err := ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if given != nil && !hmac.Equal(have, given) {
			return nil, fmt.Errorf("consensus: the given cluster key differs from the one in %s", p)
		}
		return have, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("consensus: read cluster key: %w", err)
	}
	k := given
	if k == nil {
		if !create {
			return nil, fmt.Errorf("%w: give the cluster's key (from %s on its first node) with --cluster-key-file or KILN_CLUSTER_KEY", ErrNoClusterKey, KeyFile)
		}
		k = make([]byte, KeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("consensus: generate cluster key: %w", err)
		}
	}
	if err := writeFileSync(p, []byte(hex.EncodeToString(k)+"\n")); err != nil {
		return nil, fmt.Errorf("consensus: write cluster key: %w", err)
	}
	return k, nil
}

func signature(key []byte, method, pathQuery, ts, bodyHash string) string {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, method+"\n"+pathQuery+"\n"+ts+"\n"+bodyHash)
	return hex.EncodeToString(m.Sum(nil))
}

// SignRequest signs req, whose body is body, with key at time now.
func SignRequest(req *http.Request, key, body []byte, now time.Time) {
	sum := sha256.Sum256(body)
	bh := hex.EncodeToString(sum[:])
	ts := strconv.FormatInt(now.UnixNano(), 10)
	req.Header.Set(hdrTime, ts)
	req.Header.Set(hdrBodyHash, bh)
	req.Header.Set(hdrSignature, signature(key, req.Method, req.URL.RequestURI(), ts, bh))
}

// verifyHeaders checks the signature over the headers (not yet the body).
func verifyHeaders(r *http.Request, key []byte, now time.Time) error {
	ts, bh, sig := r.Header.Get(hdrTime), r.Header.Get(hdrBodyHash), r.Header.Get(hdrSignature)
	if ts == "" || bh == "" || sig == "" {
		return fmt.Errorf("%w: missing", ErrBadSignature)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(0, ns)); d > maxSkew || d < -maxSkew {
		return fmt.Errorf("%w: stale", ErrBadSignature)
	}
	want := signature(key, r.Method, r.URL.RequestURI(), ts, bh)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(sig))) {
		return fmt.Errorf("%w: mismatch", ErrBadSignature)
	}
	return nil
}

// RequireSignature serves next only for requests signed with key
// (SignRequest); anything else gets 403 before its body is read. The body
// (at most maxBody bytes, else 413) is read, checked against the signed
// hash and handed to next in memory.
// A signature is accepted once: a replayed request (same signature, within
// the skew window) also gets 403.
func RequireSignature(key []byte, maxBody int64, next http.Handler) http.Handler {
	g := &replayGuard{seen: map[string]int64{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(key) == 0 {
			http.Error(w, "cluster routes are disabled", http.StatusForbidden)
			return
		}
		now := time.Now()
		if err := verifyHeaders(r, key, now); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		if !g.fresh(r.Header.Get(hdrSignature), now) {
			http.Error(w, ErrBadSignature.Error()+": replayed", http.StatusForbidden)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if int64(len(body)) > maxBody {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		sum := sha256.Sum256(body)
		if !hmac.Equal([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(r.Header.Get(hdrBodyHash)))) {
			http.Error(w, ErrBadSignature.Error()+": body", http.StatusForbidden)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// Call sends one signed request to another node's internal route (path
// under InternalPrefix) at httpAddr (host:port). The caller closes the
// response body.
func (n *Node) Call(ctx context.Context, httpAddr, method, path string, body []byte) (*http.Response, error) {
	if len(n.cfg.ClusterKey) == 0 {
		return nil, ErrNoClusterKey
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+httpAddr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	SignRequest(req, n.cfg.ClusterKey, body, time.Now())
	return n.client.Do(req)
}

// replayGuard remembers signatures until they would be stale anyway.
type replayGuard struct {
	mu      sync.Mutex
	seen    map[string]int64 // signature → when it may be forgotten (ns)
	inserts int
}

func (g *replayGuard) fresh(sig string, now time.Time) bool {
	t := now.UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if exp, ok := g.seen[strings.ToLower(sig)]; ok && exp > t {
		return false
	}
	g.inserts++
	if g.inserts%1024 == 0 {
		for k, exp := range g.seen {
			if exp <= t {
				delete(g.seen, k)
			}
		}
	}
	g.seen[strings.ToLower(sig)] = t + int64(2*maxSkew)
	return true
}
