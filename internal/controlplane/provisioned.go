package controlplane

import (
	"context"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// ProvisionedStatus is one provisioned-concurrency configuration with how
// many of its sandboxes are initialised.
type ProvisionedStatus struct {
	Qualifier    string
	Requested    int
	Allocated    int
	LastModified time.Time
	// StatusReason is set once the allocation failed (Lambda's reason, such
	// as FUNCTION_ERROR_INIT_FAILURE): the status is then FAILED.
	StatusReason string
}

// Provisioning keeps provisioned concurrency: the configuration (replicated,
// counting) and the sandboxes (the worker manager), wired by the server.
type Provisioning interface {
	PutProvisioned(ctx context.Context, account, function, qualifier string, n int) (ProvisionedStatus, error)
	GetProvisioned(ctx context.Context, account, function, qualifier string) (ProvisionedStatus, bool)
	DeleteProvisioned(ctx context.Context, account, function, qualifier string) error
	ListProvisioned(ctx context.Context, account, function string) []ProvisionedStatus
}

// SetProvisioning connects provisioned concurrency. Call before serving.
func (s *Service) SetProvisioning(p Provisioning) { s.prov = p }

type provisionedConfigOutput struct {
	FunctionArn                              string `json:"FunctionArn,omitempty"`
	RequestedProvisionedConcurrentExecutions int    `json:"RequestedProvisionedConcurrentExecutions"`
	AvailableProvisionedConcurrentExecutions int    `json:"AvailableProvisionedConcurrentExecutions"`
	AllocatedProvisionedConcurrentExecutions int    `json:"AllocatedProvisionedConcurrentExecutions"`
	Status                                   string `json:"Status"`
	StatusReason                             string `json:"StatusReason,omitempty"`
	LastModified                             string `json:"LastModified"`
}

// Lambda's provisioned-concurrency statuses.
const (
	provInProgress = "IN_PROGRESS"
	provReady      = "READY"
	provFailed     = "FAILED"
)

func provisionedOutput(st ProvisionedStatus, arn string) provisionedConfigOutput {
	status := provInProgress
	switch {
	case st.StatusReason != "":
		status = provFailed
	case st.Allocated >= st.Requested:
		status = provReady
	}
	alloc := min(st.Allocated, st.Requested)
	return provisionedConfigOutput{
		FunctionArn:                              arn,
		RequestedProvisionedConcurrentExecutions: st.Requested,
		AvailableProvisionedConcurrentExecutions: alloc,
		AllocatedProvisionedConcurrentExecutions: alloc,
		Status:                                   status,
		StatusReason:                             st.StatusReason,
		LastModified:                             st.LastModified.UTC().Format("2006-01-02T15:04:05.000+0000"),
	}
}

func errProvisionedNotFound(name, q string) error {
	return &errdefs.APIError{Class: errdefs.ErrNotFound, Code: "ProvisionedConcurrencyConfigNotFoundException",
		Message: "No Provisioned Concurrency Config found for this function"}
}

// provisionedTarget checks the function exists and Qualifier names one of
// its published versions or aliases; it returns the qualified ARN.
func (s *Service) provisionedTarget(c *call) (target, string, error) {
	t, err := s.target(c, true)
	if err != nil {
		return t, "", err
	}
	if t.qualifier == "" {
		return t, "", errdefs.Validation("1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null")
	}
	if t.qualifier == latestVersion {
		return t, "", errdefs.InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return t, "", err
	}
	if _, _, err := s.versionLocked(fn, t.qualifier); err != nil {
		return t, "", err
	}
	if s.prov == nil {
		return t, "", errNoConcurrency
	}
	return t, fn.arn + ":" + t.qualifier, nil
}

type putProvisionedInput struct {
	ProvisionedConcurrentExecutions *int
}

func (s *Service) putProvisionedConcurrency(c *call) (int, any, error) {
	var in putProvisionedInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	if in.ProvisionedConcurrentExecutions == nil {
		return 0, nil, errdefs.Validation("1 validation error detected: Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null")
	}
	t, _, err := s.provisionedTarget(c)
	if err != nil {
		return 0, nil, err
	}
	if err := s.provisionedConflict(c.ctx, c.account, t); err != nil {
		return 0, nil, err
	}
	st, err := s.prov.PutProvisioned(c.ctx, c.account, t.name, t.qualifier, *in.ProvisionedConcurrentExecutions)
	if err != nil {
		return 0, nil, err
	}
	out := provisionedOutput(st, "")
	s.log.Info("provisioned concurrency set", "account", c.account, "function", t.name, "qualifier", t.qualifier, "requested", st.Requested)
	return http.StatusAccepted, out, nil
}

// provisionedConflict applies Lambda's rule that a version has one
// provisioned configuration: on itself or on an alias pointing at it, not
// both. (A check before the command, as Lambda's is: two racing Puts may
// both pass it.)
func (s *Service) provisionedConflict(ctx context.Context, account string, t target) error {
	s.mu.RLock()
	fn, err := s.lookupLocked(account, t)
	if err != nil {
		s.mu.RUnlock()
		return err
	}
	aliasVersion := map[string]string{}
	for name, a := range fn.Aliases {
		aliasVersion[name] = a.FunctionVersion
	}
	s.mu.RUnlock()
	configured := map[string]bool{}
	for _, st := range s.prov.ListProvisioned(ctx, account, t.name) {
		configured[st.Qualifier] = true
	}
	if v, isAlias := aliasVersion[t.qualifier]; isAlias {
		if configured[v] {
			return errdefs.ResourceConflict("Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version")
		}
		return nil
	}
	for alias, v := range aliasVersion {
		if v == t.qualifier && configured[alias] {
			return errdefs.ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
		}
	}
	return nil
}

// getProvisionedConcurrency serves both GetProvisionedConcurrencyConfig and
// (with ?List=ALL) ListProvisionedConcurrencyConfigs, which share the path.
func (s *Service) getProvisionedConcurrency(c *call) (int, any, error) {
	if c.query.Get("List") == "ALL" {
		return s.listProvisionedConcurrency(c)
	}
	t, _, err := s.provisionedTarget(c)
	if err != nil {
		return 0, nil, err
	}
	st, ok := s.prov.GetProvisioned(c.ctx, c.account, t.name, t.qualifier)
	if !ok {
		return 0, nil, errProvisionedNotFound(t.name, t.qualifier)
	}
	return http.StatusOK, provisionedOutput(st, ""), nil
}

func (s *Service) listProvisionedConcurrency(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	s.mu.RLock()
	fn, err := s.lookupLocked(c.account, t)
	var arn string
	if err == nil {
		arn = fn.arn
	}
	s.mu.RUnlock()
	if err != nil {
		return 0, nil, err
	}
	out := struct {
		ProvisionedConcurrencyConfigs []provisionedConfigOutput
	}{[]provisionedConfigOutput{}}
	if s.prov != nil {
		for _, st := range s.prov.ListProvisioned(c.ctx, c.account, t.name) {
			out.ProvisionedConcurrencyConfigs = append(out.ProvisionedConcurrencyConfigs, provisionedOutput(st, arn+":"+st.Qualifier))
		}
	}
	return http.StatusOK, out, nil
}

func (s *Service) deleteProvisionedConcurrency(c *call) (int, any, error) {
	t, _, err := s.provisionedTarget(c)
	if err != nil {
		return 0, nil, err
	}
	if _, ok := s.prov.GetProvisioned(c.ctx, c.account, t.name, t.qualifier); !ok {
		return 0, nil, errProvisionedNotFound(t.name, t.qualifier)
	}
	if err := s.prov.DeleteProvisioned(c.ctx, c.account, t.name, t.qualifier); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
