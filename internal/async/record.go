package async

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kiln-dev/kiln/internal/frontend"
)

// Record is Lambda's asynchronous invocation record, as destinations receive it.
type Record struct {
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	RequestContext  RecordRequest    `json:"requestContext"`
	RequestPayload  json.RawMessage  `json:"requestPayload"`
	ResponseContext *RecordResponse  `json:"responseContext,omitempty"`
	ResponsePayload *json.RawMessage `json:"responsePayload,omitempty"`
}

// RecordRequest is the record's requestContext.
type RecordRequest struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// RecordResponse is the record's responseContext.
type RecordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

func (e *Engine) functionArn(account, name, qualifier string) string {
	if qualifier == "" {
		qualifier = "$LATEST"
	}
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s:%s", e.cfg.Region, account, name, qualifier)
}

// asJSON keeps valid JSON as is and turns anything else into a JSON string.
func asJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

func (e *Engine) record(ev *event, condition string, invokes int, out *frontend.InvokeOutput) []byte {
	r := Record{
		Version:   "1.0",
		Timestamp: e.now().UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: RecordRequest{
			RequestID:              ev.RequestID,
			FunctionArn:            e.functionArn(ev.Account, ev.Function, ev.Qualifier),
			Condition:              condition,
			ApproximateInvokeCount: invokes,
		},
		RequestPayload: asJSON(ev.Payload),
	}
	if out != nil {
		r.ResponseContext = &RecordResponse{StatusCode: 200, ExecutedVersion: out.ExecutedVersion, FunctionError: out.FunctionError}
		p := asJSON(out.Payload)
		r.ResponsePayload = &p
	}
	b, err := json.Marshal(r)
	if err != nil { // unreachable: every field marshals
		panic(err)
	}
	return b
}

type destKind int

const (
	destFunction destKind = iota + 1
	destQueue
)

type destination struct {
	kind      destKind
	account   string
	name      string
	qualifier string
}

// parseDestination accepts a Lambda function ARN (optionally qualified) or
// an SQS-shaped ARN naming a Kiln queue.
func parseDestination(arn string) (destination, error) {
	p := strings.Split(arn, ":")
	if len(p) < 6 || p[0] != "arn" || !strings.HasPrefix(p[1], "aws") || !isAccount(p[4]) {
		return destination{}, fmt.Errorf("async: destination %q is not an ARN", arn)
	}
	switch {
	case p[2] == "lambda" && p[5] == "function" && (len(p) == 7 || len(p) == 8) && p[6] != "":
		d := destination{kind: destFunction, account: p[4], name: p[6]}
		if len(p) == 8 {
			d.qualifier = p[7]
		}
		return d, nil
	case p[2] == "sqs" && len(p) == 6 && validQueueName(p[5]):
		return destination{kind: destQueue, account: p[4], name: p[5]}, nil
	}
	return destination{}, fmt.Errorf("async: destination %q is neither a function nor a queue ARN", arn)
}

func isAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validQueueName is SQS's rule: 1–80 of [A-Za-z0-9_-] (no FIFO queues).
func validQueueName(s string) bool {
	if len(s) == 0 || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
