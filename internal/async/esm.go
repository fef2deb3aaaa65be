package async

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// Event-source mappings from Kiln queues: pollers share the queue's
// receive consumer (SQS semantics: a message goes to one receiver, and
// comes back after its visibility timeout unless deleted), build Lambda's
// SQS event, run it through the sync path, and delete what succeeded.

// MappingSource lists the event-source mappings to run.
type MappingSource interface {
	EventSourceMappings() []controlplane.EventSourceMapping
}

// defaultMappingConcurrency is SQS's starting number of concurrent batches.
const defaultMappingConcurrency = 5

// runMappings keeps one set of pollers per enabled mapping, restarting a
// mapping's pollers when its configuration changes.
func (e *Engine) runMappings(ctx context.Context) {
	type running struct {
		m      controlplane.EventSourceMapping
		cancel context.CancelFunc
		done   chan struct{}
	}
	live := map[string]*running{}
	defer func() {
		for _, r := range live {
			r.cancel()
			<-r.done
		}
	}()
	t := time.NewTicker(e.cfg.MappingSync)
	defer t.Stop()
	for {
		want := map[string]controlplane.EventSourceMapping{}
		for _, m := range e.cfg.Mappings.EventSourceMappings() {
			if m.Enabled {
				want[m.UUID] = m
			}
		}
		for id, r := range live {
			if m, ok := want[id]; !ok || m != r.m {
				r.cancel()
				<-r.done
				delete(live, id)
			}
		}
		for id, m := range want {
			if live[id] != nil {
				continue
			}
			mctx, cancel := context.WithCancel(ctx)
			r := &running{m: m, cancel: cancel, done: make(chan struct{})}
			live[id] = r
			go func() {
				defer close(r.done)
				e.runMapping(mctx, m)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Engine) runMapping(ctx context.Context, m controlplane.EventSourceMapping) {
	if m.IsStream() {
		// One node at a time reads a stream mapping's shards (in order).
		e.withLease(ctx, "esm."+m.UUID, func(ctx context.Context) { e.runStreamMapping(ctx, m) }) // stream_esm.go
		return
	}
	d, err := parseDestination(m.EventSourceArn)
	if err != nil || d.kind != destQueue || d.account != m.Account {
		e.log.Warn("event-source mapping with an unusable source", "uuid", m.UUID, "source", m.EventSourceArn)
		return
	}
	n := m.MaximumConcurrency
	if n <= 0 {
		n = defaultMappingConcurrency
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if !e.mappingBatch(ctx, m, d.name) {
					sleep(ctx, 200*time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

// sqsRecord is one record of Lambda's SQS event.
type sqsRecord struct {
	MessageID         string            `json:"messageId"`
	ReceiptHandle     string            `json:"receiptHandle"`
	Body              string            `json:"body"`
	Attributes        map[string]string `json:"attributes"`
	MessageAttributes map[string]any    `json:"messageAttributes"`
	MD5OfBody         string            `json:"md5OfBody"`
	EventSource       string            `json:"eventSource"`
	EventSourceARN    string            `json:"eventSourceARN"`
	AWSRegion         string            `json:"awsRegion"`
}

// mappingBatch receives one batch, runs it and settles it. It reports
// whether there was anything to do.
func (e *Engine) mappingBatch(ctx context.Context, m controlplane.EventSourceMapping, queue string) bool {
	cons, err := e.js.Consumer(ctx, queueStream(m.Account, queue), queueConsumer)
	if err != nil {
		return false
	}
	var msgs []jetstream.Msg
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return false
	}
	for msg := range first.Messages() {
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return false
	}
	if m.BatchSize > 1 {
		var rest jetstream.MessageBatch
		if m.BatchingWindowSeconds > 0 {
			rest, err = cons.Fetch(m.BatchSize-1, jetstream.FetchMaxWait(time.Duration(m.BatchingWindowSeconds)*time.Second))
		} else {
			rest, err = cons.FetchNoWait(m.BatchSize - 1)
		}
		if err == nil {
			for msg := range rest.Messages() {
				msgs = append(msgs, msg)
			}
		}
	}
	records := make([]sqsRecord, 0, len(msgs))
	for _, msg := range msgs {
		r := sqsRecord{
			Body: string(msg.Data()), MessageAttributes: map[string]any{}, EventSource: "aws:sqs",
			EventSourceARN: m.EventSourceArn, AWSRegion: e.cfg.Region,
			Attributes: map[string]string{"SenderId": m.Account},
		}
		if md, err := msg.Metadata(); err == nil {
			seq := strconv.FormatUint(md.Sequence.Stream, 10)
			r.MessageID = seq
			r.ReceiptHandle = base64.StdEncoding.EncodeToString([]byte(queue + ":" + seq))
			r.Attributes["ApproximateReceiveCount"] = strconv.FormatUint(md.NumDelivered, 10)
			r.Attributes["SentTimestamp"] = strconv.FormatInt(md.Timestamp.UnixMilli(), 10)
			r.Attributes["ApproximateFirstReceiveTimestamp"] = strconv.FormatInt(e.now().UnixMilli(), 10)
		}
		sum := md5.Sum(msg.Data())
		r.MD5OfBody = hex.EncodeToString(sum[:])
		records = append(records, r)
	}
	payload, _ := json.Marshal(struct {
		Records []sqsRecord `json:"Records"`
	}{records})

	hctx, stop := context.WithCancel(ctx)
	for _, msg := range msgs {
		go e.extendLease(hctx, msg)
	}
	out, err := e.cfg.Invoker.Invoke(ctx, &frontend.InvokeInput{
		RequestID: uuid.NewString(), AccountID: m.Account, FunctionRef: m.FunctionName, Qualifier: m.Qualifier, Payload: payload,
	})
	stop()
	visibility := e.scale(30 * time.Second)
	failed := map[string]bool{}
	switch {
	case err != nil || out.FunctionError != "":
		for _, r := range records {
			failed[r.MessageID] = true
		}
	case m.ReportBatchItemFailures:
		ids, ok := batchItemFailures(out.Payload, records)
		if !ok {
			for _, r := range records {
				failed[r.MessageID] = true
			}
		}
		for _, id := range ids {
			failed[id] = true
		}
	}
	e.stats.MappingBatches.Add(1)
	for i, msg := range msgs {
		if failed[records[i].MessageID] {
			e.stats.MappingRecordFailures.Add(1)
			_ = msg.NakWithDelay(visibility)
			continue
		}
		if err := msg.DoubleAck(ctx); err != nil {
			e.log.Warn("delete processed message", "queue", queue, "err", err)
		}
	}
	return true
}

// batchItemFailures reads a partial batch response. ok is false when the
// response is malformed or names an unknown item (Lambda then retries the
// whole batch).
func batchItemFailures(payload []byte, records []sqsRecord) (ids []string, ok bool) {
	p := strings.TrimSpace(string(payload))
	if p == "" || p == "null" || p == "{}" {
		return nil, true
	}
	var resp struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(payload, &resp); err != nil {
		return nil, true // not a partial-batch response: all succeeded
	}
	known := map[string]bool{}
	for _, r := range records {
		known[r.MessageID] = true
	}
	for _, f := range resp.BatchItemFailures {
		if f.ItemIdentifier == nil || !known[*f.ItemIdentifier] {
			return nil, false
		}
		ids = append(ids, *f.ItemIdentifier)
	}
	return ids, true
}
