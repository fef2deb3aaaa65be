package server

import (
	"context"
	"log/slog"
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

func (p *provisioning) status(ctx context.Context, account, function string, pc counting.ProvisionedConfig) controlplane.ProvisionedStatus {
	st := controlplane.ProvisionedStatus{Qualifier: pc.Qualifier, Requested: pc.Requested, LastModified: time.UnixMilli(pc.LastModified)}
	if spec, err := p.spec(ctx, account, function, pc.Qualifier); err == nil {
		st.Allocated = p.wm.Provisioned(spec.Key)
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
	p.wm.Provision(spec, n)
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
		p.wm.Provision(spec, 0)
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

// restore re-creates the provisioned sandboxes of every configuration (after
// a start, the replicated configuration is there but no sandbox is).
func (p *provisioning) restore(ctx context.Context) {
	for _, t := range p.store.AllProvisioned() {
		spec, err := p.spec(ctx, t.Account, t.Function, t.Qualifier)
		if err != nil {
			p.log.Warn("provisioned concurrency target is gone", "account", t.Account, "function", t.Function, "qualifier", t.Qualifier, "err", err)
			continue
		}
		p.wm.Provision(spec, t.Requested)
	}
}
