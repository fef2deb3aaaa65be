package controlplane

import (
	"strings"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// DeadLetterConfig (the legacy async failure target) and the clean-up of a
// function's async settings when the function is deleted.

// deadLetterConfig is the wire shape of DeadLetterConfig, in and out.
type deadLetterConfig struct {
	TargetArn *string `json:"TargetArn,omitempty"`
}

// checkDeadLetter validates DeadLetterConfig.TargetArn and returns the value
// to store: "" clears the setting, as an empty TargetArn does on Lambda.
// Lambda takes an SQS queue or an SNS topic; Kiln has queues only, in the
// caller's account and region.
func (s *Service) checkDeadLetter(account string, in *deadLetterConfig) (*string, error) {
	if in == nil {
		return nil, nil
	}
	arn := ""
	if in.TargetArn != nil {
		arn = *in.TargetArn
	}
	if arn == "" {
		return &arn, nil
	}
	if !strings.HasPrefix(arn, "arn:") {
		return nil, errdefs.InvalidParameter("Invalid dead letter queue ARN: ARNs must start with 'arn:': %s", arn)
	}
	p := strings.Split(arn, ":")
	ok := len(p) == 6 && p[1] == "aws" && p[2] == "sqs" && p[3] == s.region && p[4] == account && validQueueName(p[5])
	if !ok {
		return nil, errdefs.InvalidParameter("The provided target arn is invalid: %s. Kiln sends dead-letter events to Kiln queues (arn:aws:sqs:%s:%s:<queue>) in the same account and region.", arn, s.region, account)
	}
	return &arn, nil
}

// validQueueName is SQS's rule: 1–80 of [A-Za-z0-9_-] (no FIFO queues).
func validQueueName(n string) bool {
	if n == "" || len(n) > 80 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func deadLetterOut(arn string) *deadLetterConfig {
	if arn == "" {
		return nil
	}
	return &deadLetterConfig{TargetArn: &arn}
}

// DeadLetterTarget returns the dead-letter queue ARN of the version a
// qualifier names ("" or "$LATEST", a version, or an alias's primary
// version), read from the local replica.
func (s *Service) DeadLetterTarget(account, function, qualifier string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn := s.st.Functions[account][function]
	if fn == nil {
		return "", false
	}
	v, _, err := s.versionLocked(fn, qualifier)
	if err != nil || v.DeadLetterArn == "" {
		return "", false
	}
	return v.DeadLetterArn, true
}

// forgetAsyncLocked drops a deleted function's event invoke configs, so a
// function later created under the same name starts without them. Its
// event-source mappings stay, as on Lambda (they fail to invoke until the
// function exists again). It runs inside the deleteFunction apply (the
// caller holds s.mu; lock order is s.mu before eic.mu), so the removal is
// atomic with the delete and replays identically from the log.
func (s *Service) forgetAsyncLocked(account, name string) {
	if s.eic != nil {
		s.eic.mu.Lock()
		delete(s.eic.m[account], name)
		if len(s.eic.m[account]) == 0 {
			delete(s.eic.m, account)
		}
		s.eic.mu.Unlock()
	}
}
