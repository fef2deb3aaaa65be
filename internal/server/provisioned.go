package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/counting"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/internal/workermgr"
)

// provisioning joins the replicated provisioned-concurrency configuration
// (counting) to the sandboxes that realise it (workermgr), resolving an
// alias to its version through the control plane.
type provisioning struct {
	store *counting.Store
	cp    *controlplane.Service
	wm    *workermgr.Manager
	log   *slog.Logger

	mu   sync.Mutex
	keys map[string]string // account/function/qualifier → provisioned version key
	stop chan struct{}
	done chan struct{}
}

// spec is the sandbox spec of the version a qualifier names; it must match
// the frontend's (same Key), so invokes find these sandboxes.
func (p *provisioning) spec(ctx context.Context, account, function, qualifier string) (worker.FunctionSpec, error) {
	res, err := p.cp.Resolve(ctx, account, function, qualifier, 0)
	if err != nil {
		return worker.FunctionSpec{}, err
	}
	v := res.Version
	return worker.FunctionSpec{
		Key:             v.Key(),
		AccountID:       account,
		FunctionName:    v.FunctionName,
		FunctionVersion: v.Version,
		Runtime:         v.Runtime,
		Handler:         v.Handler,
		MemoryMB:        v.MemorySize,
		TimeoutSec:      v.Timeout,
		EphemeralMB:     v.EphemeralStorage,
		Env:             v.Environment,
		CodeSha256Hex:   v.CodeSha256Hex,
	}, nil
}

// status joins the replicated configuration to this node's sandboxes. An
// allocation is FAILED once the state says so, or as soon as the worker
// manager gave up on it (the reconcile loop then records it in the state).
func (p *provisioning) status(ctx context.Context, account, function string, pc counting.ProvisionedConfig) controlplane.ProvisionedStatus {
	st := controlplane.ProvisionedStatus{Qualifier: pc.Qualifier, Requested: pc.Requested, LastModified: time.UnixMilli(pc.LastModified), StatusReason: pc.Failed}
	if spec, err := p.spec(ctx, account, function, pc.Qualifier); err == nil {
		alive, failed := p.wm.ProvisionStatus(spec.Key)
		st.Allocated = alive
		if st.StatusReason == "" {
			st.StatusReason = failed
		}
	}
	if st.StatusReason != "" {
		st.Allocated = 0
	}
	return st
}

func (p *provisioning) PutProvisioned(ctx context.Context, account, function, qualifier string, n int) (controlplane.ProvisionedStatus, error) {
	spec, err := p.spec(ctx, account, function, qualifier)
	if err != nil {
		return controlplane.ProvisionedStatus{}, err
	}
	if err := p.store.PutProvisioned(ctx, account, function, qualifier, n); err != nil {
		return controlplane.ProvisionedStatus{}, err
	}
	p.provision(account, function, qualifier, spec, n)
	// Put again after a failure: Lambda tries to allocate it afresh.
	p.wm.RetryProvision(spec.Key)
	pc, _ := p.store.Provisioned(account, function, qualifier)
	return p.status(ctx, account, function, pc), nil
}

func (p *provisioning) GetProvisioned(ctx context.Context, account, function, qualifier string) (controlplane.ProvisionedStatus, bool) {
	pc, ok := p.store.Provisioned(account, function, qualifier)
	if !ok {
		return controlplane.ProvisionedStatus{}, false
	}
	return p.status(ctx, account, function, pc), true
}

func (p *provisioning) DeleteProvisioned(ctx context.Context, account, function, qualifier string) error {
	if err := p.store.DeleteProvisioned(ctx, account, function, qualifier); err != nil {
		return err
	}
	if spec, err := p.spec(ctx, account, function, qualifier); err == nil {
		p.provision(account, function, qualifier, spec, 0)
	}
	return nil
}

func (p *provisioning) ListProvisioned(ctx context.Context, account, function string) []controlplane.ProvisionedStatus {
	var out []controlplane.ProvisionedStatus
	for _, pc := range p.store.ListProvisioned(account, function) {
		out = append(out, p.status(ctx, account, function, pc))
	}
	return out
}

// provision points a configuration at spec's version with n sandboxes; if
// it pointed at another version (its alias moved), that one's provisioned
// sandboxes are released.
func (p *provisioning) provision(account, function, qualifier string, spec worker.FunctionSpec, n int) {
	id := account + "/" + function + "/" + qualifier
	p.mu.Lock()
	old := p.keys[id]
	if n > 0 {
		p.keys[id] = spec.Key
	} else {
		delete(p.keys, id)
	}
	p.mu.Unlock()
	if old != "" && old != spec.Key {
		p.wm.Provision(worker.FunctionSpec{Key: old}, 0)
	}
	p.wm.Provision(spec, n)
}

// start re-creates every configuration's sandboxes (after a start the
// replicated configuration is there but no sandbox is), then keeps them
// following their aliases until Close.
func (p *provisioning) start(ctx context.Context, every time.Duration) {
	p.keys = map[string]string{}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	p.reconcile(ctx)
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.reconcile(context.Background())
			}
		}
	}()
}

func (p *provisioning) close() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
	}
}

// reconcile provisions each configuration on the version its qualifier
// names now, and records in the state the allocations that failed (so
// every frontend sends their invokes on demand, as Lambda does).
func (p *provisioning) reconcile(ctx context.Context) {
	for _, t := range p.store.AllProvisioned() {
		spec, err := p.spec(ctx, t.Account, t.Function, t.Qualifier)
		if err != nil {
			continue // the function is gone; ForgetFunction drops the config
		}
		if t.Failed != "" {
			continue // retried only when it is put again
		}
		if _, failed := p.wm.ProvisionStatus(spec.Key); failed != "" {
			if err := p.store.MarkProvisionedFailed(ctx, t.Account, t.Function, t.Qualifier, t.LastModified, failed); err != nil {
				p.log.Warn("record failed provisioned concurrency", "function", t.Function, "qualifier", t.Qualifier, "err", err)
			}
			continue
		}
		id := t.Account + "/" + t.Function + "/" + t.Qualifier
		p.mu.Lock()
		same := p.keys[id] == spec.Key
		p.mu.Unlock()
		if !same || p.wm.Provisioned(spec.Key) < t.Requested {
			p.provision(t.Account, t.Function, t.Qualifier, spec, t.Requested)
		}
	}
}
