package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// Event-source mappings from Kiln streams (Kinesis semantics). Per shard,
// one dispatcher reads the shard in order and hands each record to one of
// ParallelizationFactor lanes chosen by a hash of its partition key, so a
// key's records always go through the same lane, in order. A lane batches,
// invokes, and retries a failing batch (bisecting it when asked) before it
// takes the next, so a key's order holds through failures too. The shard's
// checkpoint is the highest sequence number below which every record is
// finished (succeeded, or handed to the on-failure destination); it is
// written to a JetStream KV bucket, so a restarted server resumes after it
// and never skips a record (records finished past it run again: duplicates,
// as on Lambda, never losses).

const (
	checkpointBucket = "KILN_STREAM_CHECKPOINTS"
	// maxStreamBatchBytes keeps a batch's event under Lambda's 6 MB
	// invoke payload once base64 and the record envelope are added.
	maxStreamBatchBytes = 4 << 20
	recordOverhead      = 512
)

// RoleSource is optionally implemented by the MappingSource: it gives a
// function's execution role, which Kinesis events carry as invokeIdentityArn.
type RoleSource interface {
	FunctionRole(account, function string) (string, bool)
}

// parseStreamArn reads arn:aws:kinesis:<region>:<account>:stream/<name>.
func parseStreamArn(arn string) (account, name string, ok bool) {
	p := strings.Split(arn, ":")
	if len(p) != 6 || p[0] != "arn" || !strings.HasPrefix(p[1], "aws") || p[2] != "kinesis" || !isAccount(p[4]) {
		return "", "", false
	}
	name, ok = strings.CutPrefix(p[5], "stream/")
	if !ok || !validStreamName(name) {
		return "", "", false
	}
	return p[4], name, true
}

// kinesisData and kinesisRecord are Lambda's Kinesis event record.
type kinesisData struct {
	KinesisSchemaVersion        string       `json:"kinesisSchemaVersion"`
	PartitionKey                string       `json:"partitionKey"`
	SequenceNumber              string       `json:"sequenceNumber"`
	Data                        []byte       `json:"data"`
	ApproximateArrivalTimestamp epochSeconds `json:"approximateArrivalTimestamp"`
}

// epochSeconds prints as seconds with milliseconds (1545084650.987), always
// with a fraction, so handlers see a float even on a whole second.
type epochSeconds float64

func (s epochSeconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(s), 'f', 3, 64), nil
}

type kinesisRecord struct {
	Kinesis           kinesisData `json:"kinesis"`
	EventSource       string      `json:"eventSource"`
	EventVersion      string      `json:"eventVersion"`
	EventID           string      `json:"eventID"`
	EventName         string      `json:"eventName"`
	InvokeIdentityArn string      `json:"invokeIdentityArn"`
	AWSRegion         string      `json:"awsRegion"`
	EventSourceARN    string      `json:"eventSourceARN"`
}

// kinesisBatchInfo and streamFailureRecord are what Lambda sends to a
// stream mapping's on-failure destination: the batch's coordinates, never
// its data.
type kinesisBatchInfo struct {
	ShardID                         string `json:"shardId"`
	StartSequenceNumber             string `json:"startSequenceNumber"`
	EndSequenceNumber               string `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  string `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int    `json:"batchSize"`
	StreamArn                       string `json:"streamArn"`
}

type streamFailureRecord struct {
	RequestContext   RecordRequest    `json:"requestContext"`
	ResponseContext  *RecordResponse  `json:"responseContext,omitempty"`
	Version          string           `json:"version"`
	Timestamp        string           `json:"timestamp"`
	KinesisBatchInfo kinesisBatchInfo `json:"KinesisBatchInfo"`
}

const isoMillis = "2006-01-02T15:04:05.000Z"

// streamMapping runs one stream event-source mapping.
type streamMapping struct {
	e       *Engine
	m       controlplane.EventSourceMapping
	account string
	name    string
	created int64 // the stream's creation time (ns): a re-created stream starts over
	log     *slog.Logger
}

func (e *Engine) runStreamMapping(ctx context.Context, m controlplane.EventSourceMapping) {
	account, name, ok := parseStreamArn(m.EventSourceArn)
	log := e.log.With("uuid", m.UUID, "stream", name, "function", m.FunctionName)
	if !ok || account != m.Account {
		log.Warn("stream event-source mapping with an unusable source", "source", m.EventSourceArn)
		return
	}
	for ctx.Err() == nil {
		// The stream may not exist yet, or any more: the mapping waits for
		// it. A stream deleted under a running mapping stops its shards, and
		// a stream re-created under the name starts over (its checkpoints
		// are keyed by the stream's creation time).
		st, err := e.js.Stream(ctx, streamJSName(account, name))
		if err != nil {
			log.Debug("stream not available", "err", err)
			sleep(ctx, 2*e.cfg.MappingSync)
			continue
		}
		info := st.CachedInfo()
		s, err := e.streamInfo(account, info, false)
		if err != nil {
			log.Warn("stream without a shard count", "err", err)
			sleep(ctx, 2*e.cfg.MappingSync)
			continue
		}
		sm := &streamMapping{e: e, m: m, account: account, name: name, created: info.Created.UnixNano(), log: log}
		sctx, gone := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := range s.ShardCount {
			wg.Go(func() {
				sm.runShard(sctx, i)
				gone() // only a vanished stream ends a shard early
			})
		}
		wg.Wait()
		gone()
	}
}

func (e *Engine) checkpoints(ctx context.Context) (jetstream.KeyValue, error) {
	e.streams.cpMu.Lock()
	defer e.streams.cpMu.Unlock()
	if e.streams.cp != nil {
		return e.streams.cp, nil
	}
	var kv jetstream.KeyValue
	err := e.jsRetry(ctx, func(ctx context.Context) (err error) {
		kv, err = e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: checkpointBucket, Storage: jetstream.FileStorage, Replicas: e.replicas()})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("async: checkpoint bucket: %w", err)
	}
	e.streams.cp = kv
	return kv, nil
}

// shardRun is one shard of a running mapping.
type shardRun struct {
	sm    *streamMapping
	shard int
	key   string // checkpoint key
	kv    jetstream.KeyValue

	mu      sync.Mutex
	pending []uint64        // dispatched, not yet under the checkpoint, in order
	done    map[uint64]bool // finished records among pending
	saved   uint64          // checkpoint last written

	saveMu sync.Mutex
}

func (sm *streamMapping) runShard(ctx context.Context, shard int) {
	e, m := sm.e, sm.m
	sr := &shardRun{sm: sm, shard: shard, done: map[uint64]bool{},
		key: fmt.Sprintf("%s.%d.%d", m.UUID, sm.created, shard)}
	var pos Position
	for ctx.Err() == nil {
		kv, err := e.checkpoints(ctx)
		if err == nil {
			sr.kv = kv
			var ent jetstream.KeyValueEntry
			ent, err = kv.Get(ctx, sr.key)
			switch {
			case err == nil:
				seq, ok := parseSeq(string(ent.Value()))
				if ok {
					sr.saved = seq
					pos = Position{Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: seqString(seq)}
				}
			case errors.Is(err, jetstream.ErrKeyNotFound):
				err = nil
				pos = sm.startingPosition()
			}
		}
		if err == nil {
			break
		}
		sm.log.Warn("read stream checkpoint", "shard", shard, "err", err)
		sleep(ctx, time.Second)
	}
	lanes := max(m.ParallelizationFactor, 1)
	chans := make([]chan []StreamRecord, lanes)
	var wg sync.WaitGroup
	lctx, stop := context.WithCancel(ctx)
	defer wg.Wait()
	defer stop() // runs first: the lanes end, then they are waited for
	for i := range chans {
		chans[i] = make(chan []StreamRecord, 16)
		wg.Go(func() { sr.lane(lctx, chans[i]) })
	}
	batch := max(m.BatchSize, 1)
	fetch := min(batch*lanes, maxGetRecords)
	for ctx.Err() == nil {
		if !sm.sameStream(ctx) {
			sm.log.Info("stream deleted or re-created; mapping starts over", "shard", shard)
			return
		}
		cons, err := e.shardConsumer(ctx, sm.account, sm.name, shard, pos)
		if errors.Is(err, errdefs.ErrNotFound) {
			sm.log.Info("stream deleted; mapping waits for it", "shard", shard)
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				sm.log.Debug("open shard consumer", "shard", shard, "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for ctx.Err() == nil {
			recs, err := sr.read(ctx, cons, fetch)
			if err != nil {
				break // reopen after the last dispatched record
			}
			if len(recs) == 0 {
				continue
			}
			sr.track(recs)
			pos = Position{Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: recs[len(recs)-1].SequenceNumber}
			split := make([][]StreamRecord, lanes)
			for _, r := range recs {
				l := laneOf(r.PartitionKey, lanes)
				split[l] = append(split[l], r)
			}
			for l, part := range split {
				if len(part) == 0 {
					continue
				}
				select {
				case chans[l] <- part:
				case <-ctx.Done():
				}
			}
		}
		_ = e.js.DeleteConsumer(context.WithoutCancel(ctx), streamJSName(sm.account, sm.name), cons.CachedInfo().Name)
	}
}

// sameStream reports whether the mapped stream is still the one the
// mapping started on (a re-created stream's sequence numbers start over).
// It errs on the side of yes when JetStream cannot answer.
func (sm *streamMapping) sameStream(ctx context.Context) bool {
	st, err := sm.e.js.Stream(ctx, streamJSName(sm.account, sm.name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	return err != nil || st.CachedInfo().Created.UnixNano() == sm.created
}

// startingPosition is where a shard starts without a checkpoint. LATEST
// means records that arrive after the mapping was created or last
// updated, so the answer is the same however late (or often) the poller
// starts, and nothing put after CreateEventSourceMapping returned is skipped.
func (sm *streamMapping) startingPosition() Position {
	switch sm.m.StartingPosition {
	case "LATEST":
		if sm.m.LastModified > 0 {
			return Position{Type: "AT_TIMESTAMP", Timestamp: time.UnixMilli(sm.m.LastModified)}
		}
		return Position{Type: "LATEST"}
	case "AT_TIMESTAMP":
		return Position{Type: "AT_TIMESTAMP", Timestamp: time.UnixMilli(sm.m.StartingPositionTimestamp)}
	}
	return Position{Type: "TRIM_HORIZON"}
}

// read waits up to a second for a record, then takes what else is there.
func (sr *shardRun) read(ctx context.Context, cons jetstream.Consumer, n int) ([]StreamRecord, error) {
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return nil, err
	}
	var recs []StreamRecord
	for msg := range first.Messages() {
		recs = append(recs, toRecord(msg))
	}
	if err := first.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return recs, err
	}
	if len(recs) == 0 || n <= 1 {
		return recs, ctx.Err()
	}
	rest, err := cons.FetchNoWait(n - 1)
	if err != nil {
		return recs, nil
	}
	for msg := range rest.Messages() {
		recs = append(recs, toRecord(msg))
	}
	return recs, nil
}

func laneOf(partitionKey string, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(partitionKey))
	return int(h.Sum32() % uint32(lanes))
}

func (sr *shardRun) track(recs []StreamRecord) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	for _, r := range recs {
		sr.pending = append(sr.pending, r.seq)
	}
}

// finish marks records finished and moves the checkpoint over every
// finished record that has no unfinished record before it.
func (sr *shardRun) finish(ctx context.Context, recs []StreamRecord) {
	sr.mu.Lock()
	for _, r := range recs {
		sr.done[r.seq] = true
	}
	var mark uint64
	i := 0
	for i < len(sr.pending) && sr.done[sr.pending[i]] {
		mark = sr.pending[i]
		delete(sr.done, sr.pending[i])
		i++
	}
	sr.pending = sr.pending[i:]
	sr.mu.Unlock()
	if mark == 0 {
		return
	}
	sr.saveMu.Lock()
	defer sr.saveMu.Unlock()
	if mark <= sr.saved || sr.kv == nil {
		return
	}
	// A batch that finished as the mapping stops still gets its checkpoint
	// (the engine closes NATS only after every mapping has returned).
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := sr.kv.Put(pctx, sr.key, []byte(seqString(mark))); err != nil {
		// Not fatal: a restart re-runs from the older checkpoint.
		sr.sm.log.Warn("write stream checkpoint", "shard", sr.shard, "err", err)
		return
	}
	sr.saved = mark
}

// lane batches the records of its keys and runs each batch to the end.
func (sr *shardRun) lane(ctx context.Context, in <-chan []StreamRecord) {
	m := sr.sm.m
	size := max(m.BatchSize, 1)
	window := time.Duration(m.BatchingWindowSeconds) * time.Second
	var buf []StreamRecord
	for ctx.Err() == nil {
		if len(buf) == 0 {
			select {
			case part := <-in:
				buf = part
			case <-ctx.Done():
				return
			}
		}
		if window > 0 && len(buf) < size {
			t := time.NewTimer(window)
		gather:
			for len(buf) < size {
				select {
				case part := <-in:
					buf = append(buf, part...)
				case <-t.C:
					break gather
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			t.Stop()
		} else {
		drain:
			for len(buf) < size {
				select {
				case part := <-in:
					buf = append(buf, part...)
				default:
					break drain
				}
			}
		}
		n, bytes := 0, 0
		for n < len(buf) && n < size && (n == 0 || bytes+len(buf[n].Data)*4/3+recordOverhead <= maxStreamBatchBytes) {
			bytes += len(buf[n].Data)*4/3 + recordOverhead
			n++
		}
		batch := append([]StreamRecord(nil), buf[:n]...)
		buf = buf[n:]
		sr.process(ctx, batch)
	}
}

// job is one (part of a) batch on its way to success or the destination.
type job struct {
	recs     []StreamRecord
	attempts int // function errors so far (bisecting does not count)
	invokes  int
}

// process runs a batch until every record in it succeeded or was sent to
// the on-failure destination (or ctx ends: then nothing is finished, and
// the records run again from the checkpoint).
func (sr *shardRun) process(ctx context.Context, batch []StreamRecord) {
	e, m := sr.sm.e, sr.sm.m
	maxAge := StreamRetention
	if m.MaximumRecordAgeInSeconds > 0 {
		maxAge = time.Duration(m.MaximumRecordAgeInSeconds) * time.Second
	}
	work := []*job{{recs: batch}}
	systemErrs := uint64(0)
	for len(work) > 0 && ctx.Err() == nil {
		j := work[0]
		// Records past MaximumRecordAgeInSeconds are not invoked again.
		// Records are in arrival order, so the expired ones lead.
		now := e.now()
		k := 0
		for k < len(j.recs) && now.Sub(j.recs[k].arrival) > maxAge {
			k++
		}
		if k > 0 {
			if !sr.fail(ctx, j.recs[:k], "RecordAgeExceeded", j.invokes, "", nil) {
				return
			}
			j.recs = j.recs[k:]
			if len(j.recs) == 0 {
				work = work[1:]
				continue
			}
		}
		reqID := uuid.NewString()
		out, err := e.cfg.Invoker.Invoke(ctx, &frontend.InvokeInput{
			RequestID: reqID, AccountID: m.Account, FunctionRef: m.FunctionName, Qualifier: m.Qualifier,
			Payload: sr.event(j.recs),
		})
		if err != nil {
			// Throttled, a system error, or the function is gone (its
			// mapping stays, as on Lambda): not the function's failure, so
			// retried with backoff until the records are too old.
			if ctx.Err() != nil {
				return
			}
			systemErrs++
			if errors.Is(err, errdefs.ErrNotFound) {
				sr.sm.log.Debug("mapped function not found", "err", err)
			}
			sleep(ctx, e.backoff(systemErrs))
			continue
		}
		systemErrs = 0
		j.invokes++
		e.stats.MappingBatches.Add(1)
		failed := j.recs
		partial := false
		if out.FunctionError == "" {
			idx := -1
			ok := true
			if m.ReportBatchItemFailures {
				idx, ok = streamItemFailure(out.Payload, j.recs)
			}
			if ok && idx < 0 {
				sr.finish(ctx, j.recs)
				work = work[1:]
				continue
			}
			if ok {
				// Checkpoint before the first failed item, retry from it.
				sr.finish(ctx, j.recs[:idx])
				failed = j.recs[idx:]
				partial = true
			}
		}
		j.recs = failed
		if m.BisectBatchOnFunctionError && !partial && len(j.recs) > 1 {
			h := len(j.recs) / 2
			a := &job{recs: j.recs[:h], attempts: j.attempts, invokes: j.invokes}
			b := &job{recs: j.recs[h:], attempts: j.attempts, invokes: j.invokes}
			work = append([]*job{a, b}, work[1:]...)
			continue
		}
		j.attempts++
		if m.MaximumRetryAttempts >= 0 && j.attempts > m.MaximumRetryAttempts {
			if !sr.fail(ctx, j.recs, "RetryAttemptsExhausted", j.invokes, reqID, out) {
				return
			}
			work = work[1:]
			continue
		}
		sleep(ctx, sr.retryDelay(j.attempts))
	}
}

// retryDelay grows from 1 s to 1 min (scaled by RetryScale).
func (sr *shardRun) retryDelay(attempt int) time.Duration {
	d := time.Second
	for i := 1; i < attempt && d < time.Minute; i++ {
		d *= 2
	}
	return sr.sm.e.scale(min(d, time.Minute))
}

// event builds Lambda's Kinesis event for records.
func (sr *shardRun) event(recs []StreamRecord) []byte {
	e, m := sr.sm.e, sr.sm.m
	role := ""
	if rs, ok := e.cfg.Mappings.(RoleSource); ok {
		role, _ = rs.FunctionRole(m.Account, m.FunctionName)
	}
	out := struct {
		Records []kinesisRecord `json:"Records"`
	}{make([]kinesisRecord, 0, len(recs))}
	shard := ShardID(sr.shard)
	for _, r := range recs {
		out.Records = append(out.Records, kinesisRecord{
			Kinesis: kinesisData{
				KinesisSchemaVersion: "1.0", PartitionKey: r.PartitionKey, SequenceNumber: r.SequenceNumber,
				Data: r.Data, ApproximateArrivalTimestamp: epochSeconds(r.ApproximateArrivalTimestamp),
			},
			EventSource: "aws:kinesis", EventVersion: "1.0", EventID: shard + ":" + r.SequenceNumber,
			EventName: "aws:kinesis:record", InvokeIdentityArn: role, AWSRegion: e.cfg.Region,
			EventSourceARN: m.EventSourceArn,
		})
	}
	b, err := json.Marshal(out)
	if err != nil { // unreachable: every field marshals
		panic(err)
	}
	return b
}

// fail sends the failure record of recs to the on-failure destination (if
// any) and finishes them. It keeps trying while the destination is only
// unavailable, and reports false if ctx ended first.
func (sr *shardRun) fail(ctx context.Context, recs []StreamRecord, condition string, invokes int, reqID string, out *frontend.InvokeOutput) bool {
	e, m := sr.sm.e, sr.sm.m
	e.stats.MappingRecordFailures.Add(int64(len(recs)))
	if m.OnFailure == "" {
		sr.sm.log.Warn("stream records discarded with no on-failure destination", "condition", condition,
			"shard", ShardID(sr.shard), "first", recs[0].SequenceNumber, "last", recs[len(recs)-1].SequenceNumber)
		sr.finish(ctx, recs)
		return true
	}
	if reqID == "" {
		reqID = uuid.NewString()
	}
	fnArn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", e.cfg.Region, m.Account, m.FunctionName)
	if m.Qualifier != "" {
		fnArn += ":" + m.Qualifier
	}
	rec := streamFailureRecord{
		RequestContext: RecordRequest{RequestID: reqID, FunctionArn: fnArn, Condition: condition, ApproximateInvokeCount: invokes},
		Version:        "1.0",
		Timestamp:      e.now().UTC().Format(isoMillis),
		KinesisBatchInfo: kinesisBatchInfo{
			ShardID:                         ShardID(sr.shard),
			StartSequenceNumber:             recs[0].SequenceNumber,
			EndSequenceNumber:               recs[len(recs)-1].SequenceNumber,
			ApproximateArrivalOfFirstRecord: recs[0].arrival.UTC().Format(isoMillis),
			ApproximateArrivalOfLastRecord:  recs[len(recs)-1].arrival.UTC().Format(isoMillis),
			BatchSize:                       len(recs),
			StreamArn:                       m.EventSourceArn,
		},
	}
	if out != nil {
		rec.ResponseContext = &RecordResponse{StatusCode: 200, ExecutedVersion: out.ExecutedVersion, FunctionError: out.FunctionError}
	}
	b, err := json.Marshal(rec)
	if err != nil { // unreachable
		panic(err)
	}
	for try := uint64(1); !e.deliver(ctx, m.OnFailure, &event{Account: m.Account, Function: m.FunctionName}, b, sr.sm.log); try++ {
		if ctx.Err() != nil {
			return false
		}
		sleep(ctx, e.backoff(try))
	}
	sr.finish(ctx, recs)
	return true
}

// streamItemFailure reads a stream partial batch response: the index of
// the failed record with the lowest sequence number, -1 when none failed.
// ok is false when the response names an empty, null or unknown item
// (Lambda then treats the whole batch as failed).
func streamItemFailure(payload []byte, recs []StreamRecord) (idx int, ok bool) {
	p := strings.TrimSpace(string(payload))
	if p == "" || p == "null" || p == "{}" {
		return -1, true
	}
	var resp struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(payload, &resp); err != nil {
		return -1, true // not a partial-batch response: all succeeded
	}
	at := make(map[string]int, len(recs))
	for i, r := range recs {
		at[r.SequenceNumber] = i
	}
	idx = -1
	for _, f := range resp.BatchItemFailures {
		if f.ItemIdentifier == nil {
			return -1, false
		}
		i, known := at[*f.ItemIdentifier]
		if !known {
			return -1, false
		}
		if idx < 0 || i < idx {
			idx = i
		}
	}
	return idx, true
}
