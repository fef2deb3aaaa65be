package async

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Kiln queues are JetStream work-queue streams addressed by SQS-shaped ARNs.
// They are what async destinations (and, later, event-source mappings) use.

var errNoQueue = errors.New("async: no such queue")

// QueueInfo describes one queue.
type QueueInfo struct {
	QueueName string `json:"QueueName"`
	QueueArn  string `json:"QueueArn"`
	Messages  uint64 `json:"ApproximateNumberOfMessages"`
}

// QueueMessage is one received message.
type QueueMessage struct {
	MessageID     string `json:"MessageId"`
	Body          string `json:"Body"`
	SentTimestamp int64  `json:"SentTimestamp"` // unix ms
}

func queueStream(account, name string) string { return queueStreamPf + account + "_" + name }
func queueSubj(account, name string) string   { return queueSubject + "." + account + "." + name }

func (e *Engine) queueArn(account, name string) string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", e.cfg.Region, account, name)
}

func errQueueName(name string) error {
	return errdefs.InvalidParameter("Queue name %q must be 1 to 80 characters of letters, digits, hyphens and underscores.", name)
}

func errQueueNotFound(name string) error {
	return errdefs.ResourceNotFound("The specified queue does not exist: %s", name)
}

// CreateQueue creates a queue (idempotent).
func (e *Engine) CreateQueue(ctx context.Context, account, name string) (QueueInfo, error) {
	if !validQueueName(name) {
		return QueueInfo{}, errQueueName(name)
	}
	st := queueStream(account, name)
	err := e.jsRetry(ctx, func(ctx context.Context) error {
		_, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:      st,
			Subjects:  []string{queueSubj(account, name)},
			Retention: jetstream.WorkQueuePolicy,
			Storage:   jetstream.FileStorage,
			MaxAge:    14 * 24 * time.Hour, // SQS's longest retention
			Replicas:  e.replicas(),
		})
		return err
	})
	if err != nil {
		return QueueInfo{}, fmt.Errorf("async: create queue: %w", err)
	}
	if err := e.jsRetry(ctx, func(ctx context.Context) error {
		_, err := e.js.CreateOrUpdateConsumer(ctx, st, jetstream.ConsumerConfig{
			Durable:   queueConsumer,
			AckPolicy: jetstream.AckExplicitPolicy,
			AckWait:   30 * time.Second, // SQS's default visibility timeout
		})
		return err
	}); err != nil {
		return QueueInfo{}, fmt.Errorf("async: create queue consumer: %w", err)
	}
	return QueueInfo{QueueName: name, QueueArn: e.queueArn(account, name)}, nil
}

// DeleteQueue deletes a queue and its messages.
func (e *Engine) DeleteQueue(ctx context.Context, account, name string) error {
	if !validQueueName(name) {
		return errQueueName(name)
	}
	err := e.js.DeleteStream(ctx, queueStream(account, name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return errQueueNotFound(name)
	}
	return err
}

// ListQueues lists the account's queues.
func (e *Engine) ListQueues(ctx context.Context, account string) ([]QueueInfo, error) {
	prefix := queueStreamPf + account + "_"
	out := []QueueInfo{}
	l := e.js.ListStreams(ctx)
	for info := range l.Info() {
		if name, ok := strings.CutPrefix(info.Config.Name, prefix); ok {
			out = append(out, QueueInfo{QueueName: name, QueueArn: e.queueArn(account, name), Messages: info.State.Msgs})
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("async: list queues: %w", err)
	}
	return out, nil
}

// SendMessage stores one message durably and returns its id.
func (e *Engine) SendMessage(ctx context.Context, account, name string, body []byte) (string, error) {
	if !validQueueName(name) {
		return "", errQueueName(name)
	}
	var ack *jetstream.PubAck
	err := e.jsRetry(ctx, func(ctx context.Context) (err error) {
		ack, err = e.js.Publish(ctx, queueSubj(account, name), body)
		if errors.Is(err, jetstream.ErrNoStreamResponse) && e.cfg.Cluster != nil {
			if _, serr := e.js.Stream(ctx, queueStream(account, name)); !errors.Is(serr, jetstream.ErrStreamNotFound) {
				return err // electing a leader: try again
			}
			return errNoQueue
		}
		return err
	})
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, errNoQueue) {
		return "", errQueueNotFound(name)
	}
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(ack.Sequence, 10), nil
}

func (e *Engine) publishQueue(ctx context.Context, account, name string, body []byte) error {
	err := e.jsRetry(ctx, func(ctx context.Context) error {
		_, err := e.js.Publish(ctx, queueSubj(account, name), body)
		if errors.Is(err, jetstream.ErrNoStreamResponse) && e.cfg.Cluster != nil {
			// In a cluster nobody answers while the queue's servers elect
			// a leader, too: only a queue that is gone is no queue.
			if _, serr := e.js.Stream(ctx, queueStream(account, name)); !errors.Is(serr, jetstream.ErrStreamNotFound) {
				return err
			}
			return errNoQueue
		}
		return err
	})
	if errors.Is(err, jetstream.ErrNoStreamResponse) && e.cfg.Cluster == nil || errors.Is(err, errNoQueue) {
		return fmt.Errorf("%w: %s", errNoQueue, name)
	}
	return err
}

// ReceiveMessages takes up to max messages, waiting up to wait for the
// first, and deletes what it returns (receive and delete in one call).
func (e *Engine) ReceiveMessages(ctx context.Context, account, name string, max int, wait time.Duration) ([]QueueMessage, error) {
	if !validQueueName(name) {
		return nil, errQueueName(name)
	}
	cons, err := e.js.Consumer(ctx, queueStream(account, name), queueConsumer)
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, errQueueNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	if wait < 100*time.Millisecond {
		wait = 100 * time.Millisecond
	}
	batch, err := cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, err
	}
	out := []QueueMessage{}
	for m := range batch.Messages() {
		md, _ := m.Metadata()
		qm := QueueMessage{Body: string(m.Data())}
		if md != nil {
			qm.MessageID = strconv.FormatUint(md.Sequence.Stream, 10)
			qm.SentTimestamp = md.Timestamp.UnixMilli()
		}
		if err := m.DoubleAck(ctx); err != nil {
			e.log.Warn("delete received message", "queue", name, "err", err)
		}
		out = append(out, qm)
	}
	return out, nil
}
