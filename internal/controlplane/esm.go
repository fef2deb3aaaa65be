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

// Event-source mappings: a Kiln queue (SQS-shaped ARN) feeding a function.
// Like event invoke configs they live in their own consensus part; package
// async runs them.

// ESMPartName is the part's name in the shared Raft log.
const ESMPartName = "controlplane.esm"

// EventSourceMapping is one mapping as the runner needs it.
type EventSourceMapping struct {
	UUID                    string `json:"uuid"`
	Account                 string `json:"account"`
	EventSourceArn          string `json:"source"`
	FunctionName            string `json:"fn"`
	Qualifier               string `json:"qualifier,omitempty"`
	BatchSize               int    `json:"batch"`
	BatchingWindowSeconds   int    `json:"window"`
	Enabled                 bool   `json:"enabled"`
	ReportBatchItemFailures bool   `json:"partial,omitempty"`
	MaximumConcurrency      int    `json:"maxConc,omitempty"`
	LastModified            int64  `json:"modified"` // unix ms
}

type esmStore struct {
	mu sync.RWMutex
	m  map[string]*EventSourceMapping // uuid → mapping
}

type esmCommand struct {
	Op      string              `json:"op"` // put | delete
	Mapping *EventSourceMapping `json:"mapping,omitempty"`
	UUID    string              `json:"uuid,omitempty"`
	Account string              `json:"account,omitempty"`
}

func (st *esmStore) Apply(index uint64, b []byte) any {
	var cmd esmCommand
	if err := json.Unmarshal(b, &cmd); err != nil {
		return fmt.Errorf("controlplane: decode esm command at %d: %w", index, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch cmd.Op {
	case "put":
		m := *cmd.Mapping
		st.m[m.UUID] = &m
		return &m
	case "delete":
		m := st.m[cmd.UUID]
		if m == nil || m.Account != cmd.Account {
			return errESMNotFound(cmd.UUID)
		}
		delete(st.m, cmd.UUID)
		return m
	}
	return fmt.Errorf("controlplane: unknown esm op %q", cmd.Op)
}

func (st *esmStore) Snapshot() ([]byte, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return json.Marshal(st.m)
}

func (st *esmStore) Restore(b []byte) error {
	m := map[string]*EventSourceMapping{}
	if b != nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("controlplane: decode esm snapshot: %w", err)
		}
	}
	st.mu.Lock()
	st.m = m
	st.mu.Unlock()
	return nil
}

// EventSourceMappings returns every mapping (copies), from the local replica.
func (s *Service) EventSourceMappings() []EventSourceMapping {
	s.esm.mu.RLock()
	defer s.esm.mu.RUnlock()
	out := make([]EventSourceMapping, 0, len(s.esm.m))
	for _, m := range s.esm.m {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out
}

func errESMNotFound(id string) error {
	return errdefs.ResourceNotFound("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: %s)", id)
}

// ---- wire shapes ----

type scalingConfig struct {
	MaximumConcurrency *int `json:"MaximumConcurrency,omitempty"`
}

type esmInput struct {
	FunctionName                   *string        `json:"FunctionName"`
	EventSourceArn                 *string        `json:"EventSourceArn"`
	BatchSize                      *int           `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int           `json:"MaximumBatchingWindowInSeconds"`
	Enabled                        *bool          `json:"Enabled"`
	FunctionResponseTypes          *[]string      `json:"FunctionResponseTypes"`
	ScalingConfig                  *scalingConfig `json:"ScalingConfig"`
	StartingPosition               *string        `json:"StartingPosition"`
}

type esmOutput struct {
	UUID                           string         `json:"UUID"`
	EventSourceArn                 string         `json:"EventSourceArn"`
	FunctionArn                    string         `json:"FunctionArn"`
	BatchSize                      int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int            `json:"MaximumBatchingWindowInSeconds"`
	State                          string         `json:"State"`
	StateTransitionReason          string         `json:"StateTransitionReason"`
	LastModified                   float64        `json:"LastModified"`
	LastProcessingResult           string         `json:"LastProcessingResult"`
	FunctionResponseTypes          []string       `json:"FunctionResponseTypes"`
	ScalingConfig                  *scalingConfig `json:"ScalingConfig,omitempty"`
}

func (s *Service) esmOutput(m *EventSourceMapping, state string) esmOutput {
	arn := s.functionArn(m.Account, m.FunctionName)
	if m.Qualifier != "" {
		arn += ":" + m.Qualifier
	}
	if state == "" {
		state = "Disabled"
		if m.Enabled {
			state = "Enabled"
		}
	}
	out := esmOutput{
		UUID: m.UUID, EventSourceArn: m.EventSourceArn, FunctionArn: arn, BatchSize: m.BatchSize,
		MaximumBatchingWindowInSeconds: m.BatchingWindowSeconds, State: state, StateTransitionReason: "USER_INITIATED",
		LastModified: float64(m.LastModified) / 1000, LastProcessingResult: "No records processed",
		FunctionResponseTypes: []string{},
	}
	if m.ReportBatchItemFailures {
		out.FunctionResponseTypes = []string{"ReportBatchItemFailures"}
	}
	if m.MaximumConcurrency > 0 {
		n := m.MaximumConcurrency
		out.ScalingConfig = &scalingConfig{MaximumConcurrency: &n}
	}
	return out
}

// checkQueueArn accepts a Kiln queue ARN in the caller's account and region.
func (s *Service) checkQueueArn(account, arn string) error {
	p := strings.Split(arn, ":")
	if len(p) == 6 && p[0] == "arn" && p[1] == "aws" && p[2] == "sqs" && p[3] == s.region && p[4] == account && p[5] != "" && len(p[5]) <= 80 {
		return nil
	}
	return errdefs.InvalidParameter("Unsupported event source %s: Kiln maps Kiln queues (arn:aws:sqs:%s:%s:<queue>).", arn, s.region, account)
}

// applyESMInput validates in and applies it to m (create: m holds defaults).
func (s *Service) applyESMInput(c *call, in *esmInput, m *EventSourceMapping, create bool) error {
	var v vErrs
	if in.BatchSize != nil {
		v.intRange(*in.BatchSize, "batchSize", 1, 10000)
		m.BatchSize = *in.BatchSize
	}
	if in.MaximumBatchingWindowInSeconds != nil {
		v.intRange(*in.MaximumBatchingWindowInSeconds, "maximumBatchingWindowInSeconds", 0, 300)
		m.BatchingWindowSeconds = *in.MaximumBatchingWindowInSeconds
	}
	if in.ScalingConfig != nil {
		m.MaximumConcurrency = 0
		if in.ScalingConfig.MaximumConcurrency != nil {
			v.intRange(*in.ScalingConfig.MaximumConcurrency, "scalingConfig.maximumConcurrency", 2, 1000)
			m.MaximumConcurrency = *in.ScalingConfig.MaximumConcurrency
		}
	}
	if in.FunctionResponseTypes != nil {
		m.ReportBatchItemFailures = false
		for _, t := range *in.FunctionResponseTypes {
			v.enum(t, "functionResponseTypes", "ReportBatchItemFailures")
			m.ReportBatchItemFailures = true
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	if m.BatchSize > 10 && m.BatchingWindowSeconds < 1 {
		return errdefs.InvalidParameter("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
	}
	if in.Enabled != nil {
		m.Enabled = *in.Enabled
	}
	if in.FunctionName != nil {
		ref, ok := parseFunctionRef(*in.FunctionName)
		if !ok {
			return errFunctionName(*in.FunctionName)
		}
		if (ref.account != "" && ref.account != c.account) || (ref.region != "" && ref.region != s.region) {
			return s.refNotFound(ref, c.account, ref.qualifier)
		}
		s.mu.RLock()
		fn, err := s.lookupLocked(c.account, target{name: ref.name})
		if err == nil && ref.qualifier != "" {
			_, _, err = s.versionLocked(fn, ref.qualifier)
		}
		s.mu.RUnlock()
		if err != nil {
			return err
		}
		m.FunctionName, m.Qualifier = ref.name, ref.qualifier
	}
	if create {
		if in.EventSourceArn == nil {
			var v vErrs
			v.null("eventSourceArn")
			return v.err()
		}
		if err := s.checkQueueArn(c.account, *in.EventSourceArn); err != nil {
			return err
		}
		m.EventSourceArn = *in.EventSourceArn
	}
	return nil
}

func (s *Service) proposeESM(c *call, cmd *esmCommand) (*EventSourceMapping, error) {
	return applyAs[*EventSourceMapping](c.ctx, s.node, ESMPartName, cmd)
}

func (s *Service) createESM(c *call) (int, any, error) {
	var in esmInput
	if err := c.body(256*1024, &in); err != nil {
		return 0, nil, err
	}
	if in.FunctionName == nil {
		var v vErrs
		v.null("functionName")
		return 0, nil, v.err()
	}
	id, err := s.newRevision()
	if err != nil {
		return 0, nil, err
	}
	m := &EventSourceMapping{UUID: id, Account: c.account, BatchSize: 10, Enabled: true}
	if err := s.applyESMInput(c, &in, m, true); err != nil {
		return 0, nil, err
	}
	m.LastModified = s.now().UnixMilli()
	res, err := s.proposeESM(c, &esmCommand{Op: "put", Mapping: m})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, s.esmOutput(res, "Creating"), nil
}

func (s *Service) lookupESM(c *call) (*EventSourceMapping, error) {
	id := c.segs[2]
	s.esm.mu.RLock()
	defer s.esm.mu.RUnlock()
	m := s.esm.m[id]
	if m == nil || m.Account != c.account {
		return nil, errESMNotFound(id)
	}
	cp := *m
	return &cp, nil
}

func (s *Service) getESM(c *call) (int, any, error) {
	m, err := s.lookupESM(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.esmOutput(m, ""), nil
}

func (s *Service) updateESM(c *call) (int, any, error) {
	m, err := s.lookupESM(c)
	if err != nil {
		return 0, nil, err
	}
	var in esmInput
	if err := c.body(256*1024, &in); err != nil {
		return 0, nil, err
	}
	if err := s.applyESMInput(c, &in, m, false); err != nil {
		return 0, nil, err
	}
	m.LastModified = s.now().UnixMilli()
	res, err := s.proposeESM(c, &esmCommand{Op: "put", Mapping: m})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, s.esmOutput(res, "Updating"), nil
}

func (s *Service) deleteESM(c *call) (int, any, error) {
	res, err := s.proposeESM(c, &esmCommand{Op: "delete", UUID: c.segs[2], Account: c.account})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, s.esmOutput(res, "Deleting"), nil
}

func (s *Service) listESMs(c *call) (int, any, error) {
	max, err := parseMaxItems(c.query.Get("MaxItems"))
	if err != nil {
		return 0, nil, err
	}
	src, fnFilter := c.query.Get("EventSourceArn"), ""
	if f := c.query.Get("FunctionName"); f != "" {
		ref, ok := parseFunctionRef(f)
		if !ok {
			return 0, nil, errFunctionName(f)
		}
		fnFilter = ref.name
	}
	marker := c.query.Get("Marker")
	out := struct {
		EventSourceMappings []esmOutput
		NextMarker          *string `json:",omitempty"`
	}{EventSourceMappings: []esmOutput{}}
	for _, m := range s.EventSourceMappings() {
		if m.Account != c.account || (src != "" && m.EventSourceArn != src) || (fnFilter != "" && m.FunctionName != fnFilter) || (marker != "" && m.UUID <= marker) {
			continue
		}
		if len(out.EventSourceMappings) == max {
			last := out.EventSourceMappings[max-1].UUID
			out.NextMarker = &last
			break
		}
		out.EventSourceMappings = append(out.EventSourceMappings, s.esmOutput(&m, ""))
	}
	return http.StatusOK, out, nil
}
