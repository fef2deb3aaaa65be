package async

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Message headers of a queued event. The payload is the message body.
const (
	hRequestID  = "Kiln-Request-Id"
	hAccount    = "Kiln-Account"
	hFunction   = "Kiln-Function"  // unqualified name
	hQualifier  = "Kiln-Qualifier" // as invoked; "" for unqualified
	hAccepted   = "Kiln-Accepted"  // unix ms
	hAttempts   = "Kiln-Attempts"  // function-error attempts already made
	hNotBefore  = "Kiln-Not-Before"
	hClientCtx  = "Kiln-Client-Context"
	hLastStatus = "Kiln-Last-Status" // outcome of the last attempt, for records
)

// event is one queued asynchronous invocation.
type event struct {
	RequestID     string
	Account       string
	Function      string
	Qualifier     string
	AcceptedMs    int64
	Attempts      int
	NotBeforeMs   int64
	ClientContext string
	Payload       []byte
}

var errBadEvent = errors.New("async: malformed event message")

func (ev *event) msg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hRequestID, ev.RequestID)
	m.Header.Set(hAccount, ev.Account)
	m.Header.Set(hFunction, ev.Function)
	if ev.Qualifier != "" {
		m.Header.Set(hQualifier, ev.Qualifier)
	}
	m.Header.Set(hAccepted, strconv.FormatInt(ev.AcceptedMs, 10))
	if ev.Attempts > 0 {
		m.Header.Set(hAttempts, strconv.Itoa(ev.Attempts))
	}
	if ev.NotBeforeMs > 0 {
		m.Header.Set(hNotBefore, strconv.FormatInt(ev.NotBeforeMs, 10))
	}
	if ev.ClientContext != "" {
		m.Header.Set(hClientCtx, ev.ClientContext)
	}
	m.Data = ev.Payload
	return m
}

// msgID deduplicates a republish of the same attempt within JetStream's window.
func (ev *event) msgID() string { return ev.RequestID + "." + strconv.Itoa(ev.Attempts) }

// configQualifier is the qualifier whose FunctionEventInvokeConfig applies.
func (ev *event) configQualifier() string {
	if ev.Qualifier == "" {
		return "$LATEST"
	}
	return ev.Qualifier
}

// decodeEvent reads an event from message headers; it never trusts them to
// be well formed (the store may be shared with an external NATS).
func decodeEvent(h nats.Header, data []byte) (*event, error) {
	ev := &event{
		RequestID:     h.Get(hRequestID),
		Account:       h.Get(hAccount),
		Function:      h.Get(hFunction),
		Qualifier:     h.Get(hQualifier),
		ClientContext: h.Get(hClientCtx),
		Payload:       data,
	}
	if ev.RequestID == "" || ev.Account == "" || ev.Function == "" || strings.ContainsAny(ev.RequestID+ev.Account, ". *>") {
		return nil, fmt.Errorf("%w: missing identity headers", errBadEvent)
	}
	var err error
	if ev.AcceptedMs, err = strconv.ParseInt(h.Get(hAccepted), 10, 64); err != nil || ev.AcceptedMs <= 0 {
		return nil, fmt.Errorf("%w: %s", errBadEvent, hAccepted)
	}
	if s := h.Get(hAttempts); s != "" {
		if ev.Attempts, err = strconv.Atoi(s); err != nil || ev.Attempts < 0 || ev.Attempts > 100 {
			return nil, fmt.Errorf("%w: %s", errBadEvent, hAttempts)
		}
	}
	if s := h.Get(hNotBefore); s != "" {
		if ev.NotBeforeMs, err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: %s", errBadEvent, hNotBefore)
		}
	}
	return ev, nil
}
