package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// FunctionEventInvokeConfig: per function, version or alias settings for
// asynchronous invocation. They live in their own consensus part so the
// function state machine stays as it is; the part is replicated and
// snapshotted with the rest of the control plane.

// EventInvokePartName is the part's name in the shared Raft log.
const EventInvokePartName = "controlplane.eventinvoke"

// EventInvokeConfig is the async policy of one function qualifier. Nil
// numbers mean Lambda's defaults (2 retries, 6 h).
type EventInvokeConfig struct {
	MaximumRetryAttempts     *int   `json:"retries,omitempty"`
	MaximumEventAgeInSeconds *int   `json:"age,omitempty"`
	OnSuccess                string `json:"onSuccess,omitempty"`
	OnFailure                string `json:"onFailure,omitempty"`
	LastModified             int64  `json:"modified"` // unix ms
}

// eventInvokeStore is the part's state: account → function → qualifier.
type eventInvokeStore struct {
	s  *Service
	mu sync.RWMutex
	m  map[string]map[string]map[string]*EventInvokeConfig
}

type eicCommand struct {
	Op        string             `json:"op"` // put | update | delete
	Account   string             `json:"account"`
	Name      string             `json:"name"`
	Qualifier string             `json:"qualifier"`
	Config    *EventInvokeConfig `json:"config,omitempty"`
	// For update: which fields the request set.
	SetRetries, SetAge, SetSuccess, SetFailure bool `json:",omitempty"`
	At                                         int64
}

func newEventInvokeStore(s *Service) *eventInvokeStore {
	return &eventInvokeStore{s: s, m: map[string]map[string]map[string]*EventInvokeConfig{}}
}

func (st *eventInvokeStore) Apply(index uint64, b []byte) any {
	var cmd eicCommand
	if err := json.Unmarshal(b, &cmd); err != nil {
		return fmt.Errorf("controlplane: decode event-invoke command at %d: %w", index, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	fns := st.m[cmd.Account]
	cur := fns[cmd.Name][cmd.Qualifier]
	switch cmd.Op {
	case "delete":
		if cur == nil {
			return errEICNotFound(cmd.Name, cmd.Qualifier)
		}
		delete(fns[cmd.Name], cmd.Qualifier)
		if len(fns[cmd.Name]) == 0 {
			delete(fns, cmd.Name)
		}
		return &EventInvokeConfig{}
	case "put", "update":
		next := *cmd.Config
		if cmd.Op == "update" && cur != nil {
			next = *cur
			if cmd.SetRetries {
				next.MaximumRetryAttempts = cmd.Config.MaximumRetryAttempts
			}
			if cmd.SetAge {
				next.MaximumEventAgeInSeconds = cmd.Config.MaximumEventAgeInSeconds
			}
			if cmd.SetSuccess {
				next.OnSuccess = cmd.Config.OnSuccess
			}
			if cmd.SetFailure {
				next.OnFailure = cmd.Config.OnFailure
			}
		}
		next.LastModified = cmd.At
		if fns == nil {
			fns = map[string]map[string]*EventInvokeConfig{}
			st.m[cmd.Account] = fns
		}
		if fns[cmd.Name] == nil {
			fns[cmd.Name] = map[string]*EventInvokeConfig{}
		}
		fns[cmd.Name][cmd.Qualifier] = &next
		return &next
	}
	return fmt.Errorf("controlplane: unknown event-invoke op %q", cmd.Op)
}

func (st *eventInvokeStore) Snapshot() ([]byte, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return json.Marshal(st.m)
}

func (st *eventInvokeStore) Restore(b []byte) error {
	m := map[string]map[string]map[string]*EventInvokeConfig{}
	if b != nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("controlplane: decode event-invoke snapshot: %w", err)
		}
	}
	st.mu.Lock()
	st.m = m
	st.mu.Unlock()
	return nil
}

// EventInvokeConfig returns the config for a function qualifier ("$LATEST"
// for unqualified invokes), read from the local replica.
func (s *Service) EventInvokeConfig(account, function, qualifier string) (EventInvokeConfig, bool) {
	s.eic.mu.RLock()
	defer s.eic.mu.RUnlock()
	c := s.eic.m[account][function][qualifier]
	if c == nil {
		return EventInvokeConfig{}, false
	}
	return *c, true
}

func errEICNotFound(name, qualifier string) error {
	return errdefs.ResourceNotFound("The function %s:%s doesn't have an EventInvokeConfig", name, qualifier)
}

// ---- wire shapes ----

type destinationTarget struct {
	Destination *string `json:"Destination,omitempty"`
}

type destinationConfig struct {
	OnSuccess *destinationTarget `json:"OnSuccess,omitempty"`
	OnFailure *destinationTarget `json:"OnFailure,omitempty"`
}

type eventInvokeInput struct {
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *destinationConfig `json:"DestinationConfig"`
}

type eventInvokeOutput struct {
	FunctionArn              string            `json:"FunctionArn"`
	LastModified             float64           `json:"LastModified"` // epoch seconds
	MaximumRetryAttempts     *int              `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int              `json:"MaximumEventAgeInSeconds,omitempty"`
	DestinationConfig        destinationConfig `json:"DestinationConfig"`
}

func eicOutput(arn string, c *EventInvokeConfig) eventInvokeOutput {
	out := eventInvokeOutput{
		FunctionArn:              arn,
		LastModified:             float64(c.LastModified) / 1000,
		MaximumRetryAttempts:     c.MaximumRetryAttempts,
		MaximumEventAgeInSeconds: c.MaximumEventAgeInSeconds,
		DestinationConfig:        destinationConfig{OnSuccess: &destinationTarget{}, OnFailure: &destinationTarget{}},
	}
	if c.OnSuccess != "" {
		out.DestinationConfig.OnSuccess.Destination = &c.OnSuccess
	}
	if c.OnFailure != "" {
		out.DestinationConfig.OnFailure.Destination = &c.OnFailure
	}
	return out
}

// checkDestination accepts what Kiln can deliver to: a Lambda function ARN
// or an SQS-shaped Kiln queue ARN, in the caller's account and region.
func (s *Service) checkDestination(account, arn string) error {
	p := strings.Split(arn, ":")
	ok := len(p) >= 6 && p[0] == "arn" && p[1] == "aws" && p[3] == s.region && p[4] == account &&
		((p[2] == "lambda" && p[5] == "function" && (len(p) == 7 || len(p) == 8) && isName(p[6])) ||
			(p[2] == "sqs" && len(p) == 6 && p[5] != "" && len(p[5]) <= 80))
	if !ok {
		return errdefs.InvalidParameter("The destination ARN %s is invalid: Kiln delivers to Lambda functions and Kiln queues (arn:aws:sqs:%s:%s:<queue>) in the same account and region.", arn, s.region, account)
	}
	return nil
}

// eicTarget parses the path and qualifier and returns the function name,
// the qualifier the config is keyed by, and its qualified ARN.
func (s *Service) eicTarget(c *call) (name, qualifier, arn string, err error) {
	t, err := s.target(c, true)
	if err != nil {
		return "", "", "", err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return "", "", "", err
	}
	q := t.qualifier
	if q == "" {
		q = latestVersion
	}
	if _, _, err := s.versionLocked(fn, q); err != nil {
		return "", "", "", err
	}
	return t.name, q, fn.arn + ":" + q, nil
}

func (s *Service) proposeEIC(c *call, cmd *eicCommand) (*EventInvokeConfig, error) {
	cmd.At = s.now().UnixMilli()
	return applyAs[*EventInvokeConfig](c.ctx, s.node, EventInvokePartName, cmd)
}

func (s *Service) putEventInvokeConfig(c *call) (int, any, error) {
	name, q, arn, err := s.eicTarget(c)
	if err != nil {
		return 0, nil, err
	}
	var in eventInvokeInput
	if err := c.body(64*1024, &in); err != nil {
		return 0, nil, err
	}
	var v vErrs
	if in.MaximumRetryAttempts != nil {
		v.intRange(*in.MaximumRetryAttempts, "maximumRetryAttempts", 0, 2)
	}
	if in.MaximumEventAgeInSeconds != nil {
		v.intRange(*in.MaximumEventAgeInSeconds, "maximumEventAgeInSeconds", 60, 21600)
	}
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	cmd := &eicCommand{Op: "put", Account: c.account, Name: name, Qualifier: q, Config: &EventInvokeConfig{
		MaximumRetryAttempts: in.MaximumRetryAttempts, MaximumEventAgeInSeconds: in.MaximumEventAgeInSeconds,
	}}
	if c.r.Method == http.MethodPost {
		cmd.Op = "update"
		cmd.SetRetries, cmd.SetAge = in.MaximumRetryAttempts != nil, in.MaximumEventAgeInSeconds != nil
	}
	if d := in.DestinationConfig; d != nil {
		for _, x := range []struct {
			t   *destinationTarget
			dst *string
			set *bool
		}{{d.OnSuccess, &cmd.Config.OnSuccess, &cmd.SetSuccess}, {d.OnFailure, &cmd.Config.OnFailure, &cmd.SetFailure}} {
			if x.t == nil {
				continue
			}
			*x.set = true
			if x.t.Destination != nil && *x.t.Destination != "" {
				if err := s.checkDestination(c.account, *x.t.Destination); err != nil {
					return 0, nil, err
				}
				*x.dst = *x.t.Destination
			}
		}
	}
	cfg, err := s.proposeEIC(c, cmd)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, eicOutput(arn, cfg), nil
}

func (s *Service) getEventInvokeConfig(c *call) (int, any, error) {
	name, q, arn, err := s.eicTarget(c)
	if err != nil {
		return 0, nil, err
	}
	cfg, ok := s.EventInvokeConfig(c.account, name, q)
	if !ok {
		return 0, nil, errEICNotFound(name, q)
	}
	return http.StatusOK, eicOutput(arn, &cfg), nil
}

func (s *Service) deleteEventInvokeConfig(c *call) (int, any, error) {
	name, q, _, err := s.eicTarget(c)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.proposeEIC(c, &eicCommand{Op: "delete", Account: c.account, Name: name, Qualifier: q}); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Service) listEventInvokeConfigs(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	max, err := parseMaxItems(c.query.Get("MaxItems"))
	if err != nil {
		return 0, nil, err
	}
	s.mu.RLock()
	fn, err := s.lookupLocked(c.account, t)
	var fnArn string
	if fn != nil {
		fnArn = fn.arn
	}
	s.mu.RUnlock()
	if err != nil {
		return 0, nil, err
	}
	s.eic.mu.RLock()
	quals := make([]string, 0, len(s.eic.m[c.account][t.name]))
	for q := range s.eic.m[c.account][t.name] {
		quals = append(quals, q)
	}
	sort.Strings(quals)
	marker := c.query.Get("Marker")
	out := struct {
		FunctionEventInvokeConfigs []eventInvokeOutput
		NextMarker                 *string `json:",omitempty"`
	}{FunctionEventInvokeConfigs: []eventInvokeOutput{}}
	for _, q := range quals {
		if marker != "" && q <= marker {
			continue
		}
		if len(out.FunctionEventInvokeConfigs) == max {
			last := quals[sort.SearchStrings(quals, q)-1]
			out.NextMarker = &last
			break
		}
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, eicOutput(fnArn+":"+q, s.eic.m[c.account][t.name][q]))
	}
	s.eic.mu.RUnlock()
	return http.StatusOK, out, nil
}
