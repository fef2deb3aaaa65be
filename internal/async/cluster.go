package async

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// In a Kiln cluster every node's embedded NATS server joins one NATS
// cluster (routes between the nodes, JetStream clustering), and every
// stream Kiln declares is replicated on min(3, nodes) servers. Each node's
// engine still talks in-process to its own server; pollers on every node
// fetch from the same replicated work-queue consumers, so the nodes share
// the work and an event accepted by a node that then dies is still stored
// on the others.

// ClusterConfig joins the embedded NATS server to the other nodes' ones.
type ClusterConfig struct {
	// Name is this server's name in the NATS cluster (the Kiln node id);
	// unique per node and stable across restarts.
	Name string
	// Listen is the host:port the route listener binds; other nodes dial
	// it. Port 0 is not allowed: peers must know it in advance.
	Listen string
	// Routes are the route listeners of the cluster's nodes (host:port);
	// this node's own may be among them (NATS ignores a route to itself).
	// Nodes that are not listed find this one through the others' gossip.
	Routes []string
	// Key is the cluster key; route credentials are derived from it, so
	// only a holder of the key can open a route.
	Key []byte
	// Replicas is how many servers hold each stream: min(3, cluster size).
	Replicas int
	// QuorumWait bounds how long Open waits for JetStream to have a quorum
	// before it returns anyway (0 → 30 s); the streams are then declared
	// and the pollers started in the background once it has, and until
	// then Enqueue answers 503.
	QuorumWait time.Duration
}

// ClusterName is the NATS cluster name every Kiln node uses.
const ClusterName = "kiln"

// routeUser is the route user name; the password is derived from the key.
const routeUser = "kiln-route"

// RoutePassword derives the route password from the cluster key.
func RoutePassword(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("kiln nats route v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// replicas is how many servers hold each stream.
func (e *Engine) replicas() int {
	if e.cfg.Cluster == nil || e.cfg.Cluster.Replicas < 1 {
		return 1
	}
	return min(e.cfg.Cluster.Replicas, 3)
}

// clusterOptions sets the route listener and routes on opts. It returns
// the token this process's own client must present: routing only starts
// once the client listener is up (nats-server waits for it), so a
// clustered server listens for clients on a random loopback port, closed
// to anyone without the token (fresh per start, never written down).
func clusterOptions(opts *server.Options, c *ClusterConfig) (string, error) {
	if c.Name == "" {
		return "", errors.New("async: ClusterConfig.Name is required")
	}
	if len(c.Key) == 0 {
		return "", errors.New("async: ClusterConfig.Key is required")
	}
	host, port, err := splitHostPort(c.Listen)
	if err != nil || port == 0 {
		return "", fmt.Errorf("async: bad NATS cluster address %q (want host:port with a port)", c.Listen)
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return "", fmt.Errorf("async: client token: %w", err)
	}
	token := hex.EncodeToString(tok)
	opts.DontListen = false
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Authorization = token
	pass := RoutePassword(c.Key)
	opts.ServerName = c.Name
	opts.Cluster = server.ClusterOpts{
		Name:     ClusterName,
		Host:     host,
		Port:     port,
		Username: routeUser,
		Password: pass,
		// Peers dial exactly the address this node was told to bind.
		Advertise:   net.JoinHostPort(host, strconv.Itoa(port)),
		AuthTimeout: 2,
		// Clients are in-process only: tell no one where the client port is.
		NoAdvertise: true,
	}
	seen := map[string]bool{}
	for _, r := range append([]string{c.Listen}, c.Routes...) {
		if r == "" || seen[r] {
			continue
		}
		seen[r] = true
		if _, p, err := splitHostPort(r); err != nil || p == 0 {
			return "", fmt.Errorf("async: bad NATS route %q", r)
		}
		opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", User: url.UserPassword(routeUser, pass), Host: r})
	}
	return token, nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, n, nil
}

// declareAndStart declares the streams and starts the pollers. A single
// node does it at once. In a cluster JetStream answers only once a quorum
// of NATS servers is up (and has elected a meta leader); Open waits up to
// QuorumWait for that, then leaves the rest to a background goroutine.
// Declaring is idempotent, so nodes doing it at the same time agree.
func (e *Engine) declareAndStart(ctx context.Context, rctx context.Context) error {
	if e.cfg.Cluster == nil {
		if err := e.declare(ctx); err != nil {
			return err
		}
		return e.startPollers(ctx, rctx)
	}
	wait := e.cfg.Cluster.QuorumWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	err := e.declareClustered(wctx)
	cancel()
	if err == nil {
		return e.startPollers(ctx, rctx)
	}
	if ctx.Err() != nil {
		return err
	}
	e.log.Warn("NATS JetStream has no quorum yet; async events are refused (503) until it has, and the pollers start then",
		"waited", wait, "routes", e.numRoutes(), "err", err)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.declareClustered(rctx); err != nil {
			return // closing
		}
		if err := e.startPollers(rctx, rctx); err != nil {
			e.log.Error("start async pollers", "err", err)
		}
	}()
	return nil
}

func (e *Engine) numRoutes() int {
	if e.ns == nil {
		return 0
	}
	return e.ns.NumRoutes()
}

// declareClustered retries declare until it succeeds or ctx ends, logging
// its progress every few seconds.
func (e *Engine) declareClustered(ctx context.Context) error {
	t0 := time.Now()
	lastLog := t0
	for {
		err := e.declare(ctx) // each call bounded by jsRetry
		if err == nil {
			e.log.Info("NATS JetStream cluster ready", "server", e.cfg.Cluster.Name, "routes", e.numRoutes(),
				"replicas", e.replicas(), "waited", time.Since(t0).Round(time.Millisecond))
			return nil
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			e.log.Info("waiting for a NATS JetStream quorum", "server", e.cfg.Cluster.Name, "routes", e.numRoutes(),
				"want_replicas", e.replicas(), "waited", time.Since(t0).Round(time.Second), "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("async: waiting for a NATS JetStream quorum: %w (last: %w)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startPollers starts a poller per partition and the mapping runner.
func (e *Engine) startPollers(ctx, rctx context.Context) error {
	slots := make(chan struct{}, e.cfg.Concurrency)
	for p := range e.cfg.Partitions {
		cons, err := e.js.Consumer(ctx, partitionStream(p), pollerName)
		if err != nil {
			return fmt.Errorf("async: poller consumer: %w", err)
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.poll(rctx, cons, slots)
		}()
	}
	if e.cfg.Mappings != nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.runMappings(rctx)
		}()
	}
	return nil
}

// Lease keys for work that only one node may do at a time (a stream
// mapping reads its shards in order, so two readers would run records
// twice and out of order). They live in the checkpoint bucket.
const (
	leasePrefix = "lease."
	leaseTTL    = 10 * time.Second
)

type leaseValue struct {
	holder  string
	expires time.Time
}

func (l leaseValue) encode() []byte {
	return []byte(l.holder + " " + strconv.FormatInt(l.expires.UnixMilli(), 10))
}

func decodeLease(b []byte) (leaseValue, bool) {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ' ' {
			ms, err := strconv.ParseInt(string(b[i+1:]), 10, 64)
			if err != nil {
				return leaseValue{}, false
			}
			return leaseValue{holder: string(b[:i]), expires: time.UnixMilli(ms)}, true
		}
	}
	return leaseValue{}, false
}

// withLease runs fn while this node holds the named lease; on a single
// node it just runs fn. In a cluster it waits until the lease is free (or
// its holder let it expire: the holder's clock decides, so nodes' clocks
// must agree to well within leaseTTL), takes it with a compare-and-set on
// the KV revision, renews it every leaseTTL/3, and cancels fn's context as
// soon as a renewal fails, so two nodes never run fn for long together.
func (e *Engine) withLease(ctx context.Context, name string, fn func(context.Context)) {
	if e.cfg.Cluster == nil {
		fn(ctx)
		return
	}
	key := leasePrefix + name
	me := e.cfg.Cluster.Name
	for ctx.Err() == nil {
		kv, err := e.checkpoints(ctx)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		rev, ok := e.tryLease(ctx, kv, key, me)
		if !ok {
			sleep(ctx, leaseTTL/3)
			continue
		}
		e.log.Info("took lease", "lease", name)
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn(lctx)
		}()
		renew := time.NewTicker(leaseTTL / 3)
		lost := false
	hold:
		for {
			select {
			case <-done:
				break hold
			case <-renew.C:
				pctx, pcancel := context.WithTimeout(ctx, leaseTTL/3)
				r, err := kv.Update(pctx, key, leaseValue{me, time.Now().Add(leaseTTL)}.encode(), rev)
				pcancel()
				if err != nil && ctx.Err() != nil {
					continue // closing: fn ends with ctx
				}
				if err != nil {
					e.log.Warn("lost lease", "lease", name, "err", err)
					lost = true
					cancel()
					<-done
					break hold
				}
				rev = r
			}
		}
		renew.Stop()
		cancel()
		if !lost {
			// fn ended (or ctx did): hand the lease over at once rather
			// than make the next node wait for it to expire.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = kv.Delete(dctx, key, jetstream.LastRevision(rev))
			dcancel()
			return
		}
	}
}

// tryLease takes the lease if it is free, expired or already ours.
func (e *Engine) tryLease(ctx context.Context, kv jetstream.KeyValue, key, me string) (uint64, bool) {
	val := leaseValue{me, time.Now().Add(leaseTTL)}.encode()
	ent, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err := kv.Create(ctx, key, val)
		return rev, err == nil
	case err != nil:
		return 0, false
	}
	if cur, ok := decodeLease(ent.Value()); ok && cur.holder != me && time.Now().Before(cur.expires) {
		return 0, false
	}
	rev, err := kv.Update(ctx, key, val, ent.Revision())
	return rev, err == nil
}

// natsLog passes the embedded server's log to slog, a level lower than
// NATS's own: a clustered server is chatty about routes and elections, and
// a peer that is still starting (or down) is routine for a cluster.
type natsLog struct{ log *slog.Logger }

func (l natsLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLog) Warnf(format string, v ...any)   { l.log.Info(fmt.Sprintf(format, v...)) }
func (l natsLog) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLog) Errorf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLog) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLog) Tracef(format string, v ...any)  {}

// jsRetry runs one JetStream API call. In a cluster a request that
// reaches an asset whose Raft group has just formed (a consumer of a
// stream created a moment ago, say) may get no answer at all, so there
// each attempt gets a short timeout and is repeated until ctx ends (at
// most 20 s); every call passed here is idempotent.
func (e *Engine) jsRetry(ctx context.Context, op func(context.Context) error) error {
	if e.cfg.Cluster == nil {
		return op(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		err := op(actx)
		acancel()
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// retryable: timeouts and a missing quorum/leader, not a refusal.
func retryable(err error) bool {
	if errors.Is(err, errNoQueue) {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound
	}
	return true
}
