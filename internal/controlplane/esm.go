package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Event-source mappings: a Kiln queue (SQS-shaped ARN) or a Kiln stream
// (Kinesis-shaped ARN) feeding a function. Deleting the function keeps its
// mappings, as on Lambda: they stay and fail to invoke until it is back.
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

	// Stream sources only (Kinesis-shaped ARNs). Every field is omitted
	// when zero, so snapshots written before streams existed still load.
	// A stream mapping always stores its retry and age limits explicitly
	// (-1 when unlimited), so a stored 0 really means 0.
	StartingPosition           string `json:"startPos,omitempty"` // TRIM_HORIZON | LATEST | AT_TIMESTAMP
	StartingPositionTimestamp  int64  `json:"startTs,omitempty"`  // unix ms, AT_TIMESTAMP only
	ParallelizationFactor      int    `json:"parallel,omitempty"`
	BisectBatchOnFunctionError bool   `json:"bisect,omitempty"`
	MaximumRetryAttempts       int    `json:"maxRetries,omitempty"`
	MaximumRecordAgeInSeconds  int    `json:"maxRecordAge,omitempty"`
	OnFailure                  string `json:"onFailure,omitempty"` // DestinationConfig.OnFailure.Destination
}

// IsStream reports whether the mapping reads a Kiln stream.
func (m *EventSourceMapping) IsStream() bool {
	return strings.HasPrefix(m.EventSourceArn, "arn:aws:kinesis:")
}

type esmStore struct {
	mu sync.RWMutex
	m  map[string]*EventSourceMapping // uuid → mapping
	// streams answers whether a Kiln stream exists (package async); nil
	// until SetStreams, and then stream sources are not checked.
	streams StreamChecker
}

// StreamChecker tells whether an account has a Kiln stream.
type StreamChecker interface {
	StreamExists(ctx context.Context, account, name string) (bool, error)
}

// SetStreams connects the stream store, so CreateEventSourceMapping refuses
// a stream that does not exist. Call before serving.
func (s *Service) SetStreams(c StreamChecker) {
	s.esm.mu.Lock()
	s.esm.streams = c
	s.esm.mu.Unlock()
}

// FunctionRole returns a function's execution role ($LATEST's), which
// stream events carry as invokeIdentityArn.
func (s *Service) FunctionRole(account, function string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn := s.st.Functions[account][function]
	if fn == nil || fn.Latest == nil {
		return "", false
	}
	return fn.Latest.Role, true
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
	// Stream sources only.
	StartingPositionTimestamp  *float64           `json:"StartingPositionTimestamp"` // epoch seconds
	ParallelizationFactor      *int               `json:"ParallelizationFactor"`
	BisectBatchOnFunctionError *bool              `json:"BisectBatchOnFunctionError"`
	MaximumRetryAttempts       *int               `json:"MaximumRetryAttempts"`
	MaximumRecordAgeInSeconds  *int               `json:"MaximumRecordAgeInSeconds"`
	TumblingWindowInSeconds    *int               `json:"TumblingWindowInSeconds"`
	DestinationConfig          *esmDestinationCfg `json:"DestinationConfig"`
}

type esmDestination struct {
	Destination *string `json:"Destination,omitempty"`
}

type esmDestinationCfg struct {
	OnSuccess *esmDestination `json:"OnSuccess,omitempty"`
	OnFailure *esmDestination `json:"OnFailure,omitempty"`
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
	// Stream sources only (absent for queues, as on Lambda).
	StartingPosition           *string            `json:"StartingPosition,omitempty"`
	StartingPositionTimestamp  *float64           `json:"StartingPositionTimestamp,omitempty"`
	ParallelizationFactor      *int               `json:"ParallelizationFactor,omitempty"`
	BisectBatchOnFunctionError *bool              `json:"BisectBatchOnFunctionError,omitempty"`
	MaximumRetryAttempts       *int               `json:"MaximumRetryAttempts,omitempty"`
	MaximumRecordAgeInSeconds  *int               `json:"MaximumRecordAgeInSeconds,omitempty"`
	TumblingWindowInSeconds    *int               `json:"TumblingWindowInSeconds,omitempty"`
	DestinationConfig          *esmDestinationCfg `json:"DestinationConfig,omitempty"`
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
	if m.IsStream() {
		sp, pf, bis, mra, age, tw := m.StartingPosition, m.ParallelizationFactor, m.BisectBatchOnFunctionError, m.MaximumRetryAttempts, m.MaximumRecordAgeInSeconds, 0
		out.StartingPosition, out.ParallelizationFactor, out.BisectBatchOnFunctionError = &sp, &pf, &bis
		out.MaximumRetryAttempts, out.MaximumRecordAgeInSeconds, out.TumblingWindowInSeconds = &mra, &age, &tw
		if m.StartingPosition == "AT_TIMESTAMP" {
			ts := float64(m.StartingPositionTimestamp) / 1000
			out.StartingPositionTimestamp = &ts
		}
		out.DestinationConfig = &esmDestinationCfg{OnFailure: &esmDestination{}}
		if m.OnFailure != "" {
			d := m.OnFailure
			out.DestinationConfig.OnFailure.Destination = &d
		}
	}
	return out
}

// checkSourceArn accepts a Kiln queue (SQS-shaped ARN) or a Kiln stream
// (Kinesis-shaped ARN) in the caller's account and region; a stream must
// exist when the stream store is connected.
func (s *Service) checkSourceArn(c *call, arn string) error {
	p := strings.Split(arn, ":")
	if len(p) == 6 && p[0] == "arn" && p[1] == "aws" && p[2] == "sqs" && p[3] == s.region && p[4] == c.account && p[5] != "" && len(p[5]) <= 80 {
		return nil
	}
	if len(p) == 6 && p[0] == "arn" && p[1] == "aws" && p[2] == "kinesis" && p[3] == s.region && p[4] == c.account && strings.HasPrefix(p[5], "stream/") {
		name := strings.TrimPrefix(p[5], "stream/")
		if name == "" || len(name) > 128 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != "" {
			return errdefs.InvalidParameter("Stream not found: %s", arn)
		}
		s.esm.mu.RLock()
		chk := s.esm.streams
		s.esm.mu.RUnlock()
		if chk != nil {
			ok, err := chk.StreamExists(c.ctx, c.account, name)
			if err != nil {
				return err
			}
			if !ok {
				return errdefs.InvalidParameter("Stream not found: %s", arn)
			}
		}
		return nil
	}
	return errdefs.InvalidParameter("Unsupported event source %s: Kiln maps Kiln queues (arn:aws:sqs:%s:%s:<queue>) and Kiln streams (arn:aws:kinesis:%s:%s:stream/<stream>).", arn, s.region, c.account, s.region, c.account)
}

// checkOnFailure accepts a Kiln queue or a function of the caller's account.
func (s *Service) checkOnFailure(account, arn string) error {
	p := strings.Split(arn, ":")
	switch {
	case len(p) == 6 && p[0] == "arn" && p[1] == "aws" && p[2] == "sqs" && p[3] == s.region && p[4] == account && p[5] != "" && len(p[5]) <= 80:
		return nil
	case (len(p) == 7 || len(p) == 8) && p[0] == "arn" && p[1] == "aws" && p[2] == "lambda" && p[3] == s.region && p[4] == account && p[5] == "function" && p[6] != "":
		return nil
	}
	return errdefs.InvalidParameter("The provided destination config DestinationConfig(OnFailure=%s) is invalid: Kiln sends stream failures to a Kiln queue or a function of this account.", arn)
}

// applyESMInput validates in and applies it to m (create: m holds the
// account and UUID; the source's defaults are set here).
func (s *Service) applyESMInput(c *call, in *esmInput, m *EventSourceMapping, create bool) error {
	if create {
		if in.EventSourceArn == nil {
			var v vErrs
			v.null("eventSourceArn")
			return v.err()
		}
		m.EventSourceArn = *in.EventSourceArn
		m.BatchSize = 10 // SQS
		if m.IsStream() {
			m.BatchSize, m.ParallelizationFactor, m.MaximumRetryAttempts, m.MaximumRecordAgeInSeconds = 100, 1, -1, -1
		}
	}
	stream := m.IsStream()
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
	if in.ParallelizationFactor != nil {
		v.intRange(*in.ParallelizationFactor, "parallelizationFactor", 1, 10)
	}
	if in.MaximumRetryAttempts != nil {
		v.intRange(*in.MaximumRetryAttempts, "maximumRetryAttempts", -1, 10000)
	}
	if in.MaximumRecordAgeInSeconds != nil {
		v.intRange(*in.MaximumRecordAgeInSeconds, "maximumRecordAgeInSeconds", -1, 604800)
	}
	if in.TumblingWindowInSeconds != nil {
		v.intRange(*in.TumblingWindowInSeconds, "tumblingWindowInSeconds", 0, 900)
	}
	if create && in.StartingPosition != nil {
		v.enum(*in.StartingPosition, "startingPosition", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
	}
	if err := v.err(); err != nil {
		return err
	}
	if err := s.applyStreamFields(c, in, m, create, stream); err != nil {
		return err
	}
	if !stream && m.BatchSize > 10 && m.BatchingWindowSeconds < 1 {
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
		if err := s.checkSourceArn(c, m.EventSourceArn); err != nil {
			return err
		}
	}
	return nil
}

// applyStreamFields applies the stream-only fields, refusing them on a
// queue source and queue-only ones on a stream, as Lambda does.
func (s *Service) applyStreamFields(c *call, in *esmInput, m *EventSourceMapping, create, stream bool) error {
	if !stream {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"StartingPosition", create && in.StartingPosition != nil},
			{"StartingPositionTimestamp", create && in.StartingPositionTimestamp != nil},
			{"ParallelizationFactor", in.ParallelizationFactor != nil},
			{"BisectBatchOnFunctionError", in.BisectBatchOnFunctionError != nil},
			{"MaximumRetryAttempts", in.MaximumRetryAttempts != nil},
			{"MaximumRecordAgeInSeconds", in.MaximumRecordAgeInSeconds != nil},
			{"TumblingWindowInSeconds", in.TumblingWindowInSeconds != nil},
			{"DestinationConfig", in.DestinationConfig != nil && (in.DestinationConfig.OnFailure != nil || in.DestinationConfig.OnSuccess != nil)},
		} {
			if f.set {
				return errdefs.InvalidParameter("%s is not valid for SQS event sources.", f.name)
			}
		}
		return nil
	}
	if in.ScalingConfig != nil && in.ScalingConfig.MaximumConcurrency != nil {
		return errdefs.InvalidParameter("ScalingConfig is not valid for Kinesis event sources.")
	}
	if create {
		if in.StartingPosition == nil {
			return errdefs.InvalidParameter("StartingPosition is required for Kinesis event sources.")
		}
		m.StartingPosition = *in.StartingPosition
		switch {
		case m.StartingPosition == "AT_TIMESTAMP" && in.StartingPositionTimestamp == nil:
			return errdefs.InvalidParameter("StartingPositionTimestamp must be provided when StartingPosition is AT_TIMESTAMP.")
		case m.StartingPosition != "AT_TIMESTAMP" && in.StartingPositionTimestamp != nil:
			return errdefs.InvalidParameter("StartingPositionTimestamp can only be set when StartingPosition is AT_TIMESTAMP.")
		case in.StartingPositionTimestamp != nil:
			m.StartingPositionTimestamp = int64(*in.StartingPositionTimestamp * 1000)
		}
	}
	if in.ParallelizationFactor != nil {
		m.ParallelizationFactor = *in.ParallelizationFactor
	}
	if in.BisectBatchOnFunctionError != nil {
		m.BisectBatchOnFunctionError = *in.BisectBatchOnFunctionError
	}
	if in.MaximumRetryAttempts != nil {
		m.MaximumRetryAttempts = *in.MaximumRetryAttempts
	}
	if in.MaximumRecordAgeInSeconds != nil {
		if a := *in.MaximumRecordAgeInSeconds; a != -1 && a < 60 {
			return errdefs.InvalidParameter("MaximumRecordAgeInSeconds must be -1 (no limit) or between 60 and 604800; got %d.", a)
		}
		m.MaximumRecordAgeInSeconds = *in.MaximumRecordAgeInSeconds
	}
	if in.TumblingWindowInSeconds != nil && *in.TumblingWindowInSeconds != 0 {
		return errdefs.InvalidParameter("TumblingWindowInSeconds is not supported by Kiln streams; set it to 0.")
	}
	if d := in.DestinationConfig; d != nil {
		if d.OnSuccess != nil && d.OnSuccess.Destination != nil && *d.OnSuccess.Destination != "" {
			return errdefs.InvalidParameter("Unsupported DestinationConfig parameter for given event source mapping type: OnSuccess.")
		}
		if d.OnFailure != nil {
			m.OnFailure = ""
			if d.OnFailure.Destination != nil && *d.OnFailure.Destination != "" {
				if err := s.checkOnFailure(c.account, *d.OnFailure.Destination); err != nil {
					return err
				}
				m.OnFailure = *d.OnFailure.Destination
			}
		}
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
	m := &EventSourceMapping{UUID: id, Account: c.account, Enabled: true}
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
