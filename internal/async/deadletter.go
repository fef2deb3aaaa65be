package async

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter queues: Lambda's older failure target. Unlike an OnFailure
// destination it receives the original event payload, not an invocation
// record; when both are set, both get the failed event.

// DeadLetterSource is optionally implemented by the ConfigSource: it gives
// the DeadLetterConfig.TargetArn of the version a qualifier names.
type DeadLetterSource interface {
	DeadLetterTarget(account, function, qualifier string) (string, bool)
}

func (e *Engine) deadLetterOf(ev *event) string {
	if ds, ok := e.cfg.Configs.(DeadLetterSource); ok {
		if arn, set := ds.DeadLetterTarget(ev.Account, ev.Function, ev.Qualifier); set {
			return arn
		}
	}
	return ""
}

// deadLetter writes the event's payload to its dead-letter queue. It reports
// whether the event may be acked: true once the payload is durable, and also
// when it never can be (a bad ARN or a queue that does not exist: Lambda
// then drops the event and counts a dead-letter error).
func (e *Engine) deadLetter(ctx context.Context, arn string, ev *event, log interface {
	Warn(string, ...any)
}) bool {
	d, err := parseDestination(arn)
	if err != nil || d.kind != destQueue || d.account != ev.Account {
		e.stats.DeadLetterFailures.Add(1)
		log.Warn("bad dead-letter queue", "dead_letter", arn, "err", err)
		return true
	}
	// The message id makes a re-send after a later nak (the OnFailure
	// destination was down) a no-op within the queue's duplicate window.
	_, err = e.js.Publish(ctx, queueSubj(d.account, d.name), ev.Payload, jetstream.WithMsgID(ev.RequestID+".dlq"))
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		err = errNoQueue
	}
	if err != nil {
		e.stats.DeadLetterFailures.Add(1)
		log.Warn("dead-letter delivery", "dead_letter", arn, "err", err)
		return errors.Is(err, errNoQueue)
	}
	e.stats.DeadLetterDeliveries.Add(1)
	return true
}
