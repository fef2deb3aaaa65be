package async

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Kiln streams have Kinesis semantics: a stream has a fixed number of
// shards, each an ordered log; a record goes to the shard whose slice of the
// 128-bit hash-key range holds the MD5 of its partition key. A stream is one
// JetStream limits stream (kept 24 h, like Kinesis's default retention) with
// one subject per shard, so a record is stored (and, with SyncAlways,
// fsynced) before PutRecord returns, exactly like a queued event. A shard's
// sequence numbers are the JetStream stream sequences of its records:
// increasing within the shard (not contiguous), printed as 20 zero-padded
// decimal digits so that string order is numeric order.

const (
	streamPf         = "KILNS_" // KILNS_<account>_<name, '.' as '~'>
	streamSubject    = "kiln.s" // kiln.s.<account>.<name, '.' as '~'>.<shard>
	streamShardsMeta = "kiln.shards"
	streamNameMeta   = "kiln.name"
	// StreamRetention is Kinesis's default retention period.
	StreamRetention = 24 * time.Hour
	// MaxShards bounds CreateStream's ShardCount (Kinesis's on-demand
	// default quota is far above anything one node can use).
	MaxShards = 64
	// MaxRecordData is Kinesis's record size limit (data plus key).
	MaxRecordData = 1048576
	// maxGetRecords is Kinesis's GetRecords limit.
	maxGetRecords = 10000
)

// StreamInfo describes one stream, in Kinesis's field names.
type StreamInfo struct {
	StreamName              string      `json:"StreamName"`
	StreamARN               string      `json:"StreamARN"`
	StreamStatus            string      `json:"StreamStatus"`
	ShardCount              int         `json:"OpenShardCount"`
	RetentionPeriodHours    int         `json:"RetentionPeriodHours"`
	StreamCreationTimestamp float64     `json:"StreamCreationTimestamp"`
	Records                 uint64      `json:"ApproximateNumberOfRecords"`
	Shards                  []ShardInfo `json:"Shards,omitempty"`
}

// ShardInfo is one shard of DescribeStream.
type ShardInfo struct {
	ShardID             string       `json:"ShardId"`
	HashKeyRange        HashKeyRange `json:"HashKeyRange"`
	SequenceNumberRange struct {
		StartingSequenceNumber string `json:"StartingSequenceNumber"`
	} `json:"SequenceNumberRange"`
}

// HashKeyRange is a shard's slice of the 128-bit hash-key space (decimal).
type HashKeyRange struct {
	StartingHashKey string `json:"StartingHashKey"`
	EndingHashKey   string `json:"EndingHashKey"`
}

// PutRecordResult is where a record was stored.
type PutRecordResult struct {
	ShardID        string `json:"ShardId"`
	SequenceNumber string `json:"SequenceNumber"`
}

// StreamRecord is one record as GetRecords returns it (Data is base64 in JSON).
type StreamRecord struct {
	SequenceNumber              string  `json:"SequenceNumber"`
	ApproximateArrivalTimestamp float64 `json:"ApproximateArrivalTimestamp"`
	Data                        []byte  `json:"Data"`
	PartitionKey                string  `json:"PartitionKey"`

	seq     uint64
	arrival time.Time
}

// Position says where GetRecords starts in a shard: Kinesis's iterator
// types TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER and
// AT_TIMESTAMP.
type Position struct {
	Type           string
	SequenceNumber string
	Timestamp      time.Time
}

func streamJSName(account, name string) string {
	return streamPf + account + "_" + strings.ReplaceAll(name, ".", "~")
}

func streamSubj(account, name string, shard int) string {
	return streamSubject + "." + account + "." + strings.ReplaceAll(name, ".", "~") + "." + strconv.Itoa(shard)
}

// StreamArn is a stream's Kinesis-shaped ARN.
func (e *Engine) StreamArn(account, name string) string {
	return fmt.Sprintf("arn:aws:kinesis:%s:%s:stream/%s", e.cfg.Region, account, name)
}

// ShardID formats a shard index as Kinesis does.
func ShardID(i int) string { return fmt.Sprintf("shardId-%012d", i) }

func parseShardID(s string, shards int) (int, bool) {
	d, ok := strings.CutPrefix(s, "shardId-")
	if !ok || len(d) != 12 {
		return 0, false
	}
	n, err := strconv.Atoi(d)
	if err != nil || n < 0 || n >= shards {
		return 0, false
	}
	return n, true
}

func seqString(seq uint64) string { return fmt.Sprintf("%020d", seq) }

func parseSeq(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// validStreamName is Kinesis's rule: 1–128 of [a-zA-Z0-9_.-].
func validStreamName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func errStreamName(name string) error {
	return errdefs.Validation("1 validation error detected: Value '%s' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128", name)
}

func errStreamNotFound(account, name string) error {
	return errdefs.ResourceNotFound("Stream %s under account %s not found.", name, account)
}

// hashSpace is 2^128, the size of Kinesis's hash-key range.
var hashSpace = new(big.Int).Lsh(big.NewInt(1), 128)

// shardRange is shard i's slice of [0, 2^128) when split evenly in n: each
// shard but the last gets floor(2^128/n) keys; the last also takes the rest.
func shardRange(i, n int) (lo, hi *big.Int) {
	step := new(big.Int).Div(hashSpace, big.NewInt(int64(n)))
	lo = new(big.Int).Mul(step, big.NewInt(int64(i)))
	if i == n-1 {
		hi = new(big.Int).Sub(hashSpace, big.NewInt(1))
	} else {
		hi = new(big.Int).Sub(new(big.Int).Add(lo, step), big.NewInt(1))
	}
	return lo, hi
}

// shardFor is Kinesis's placement: the MD5 of the partition key, read as an
// unsigned 128-bit big-endian integer, falls in exactly one shard's range.
func shardFor(partitionKey string, n int) int {
	sum := md5.Sum([]byte(partitionKey))
	h := new(big.Int).SetBytes(sum[:])
	step := new(big.Int).Div(hashSpace, big.NewInt(int64(n)))
	i := new(big.Int).Div(h, step).Int64()
	return int(min(i, int64(n-1)))
}

// streamState is the engine's stream bookkeeping.
type streamState struct {
	shards streamShards
	cpMu   sync.Mutex
	cp     jetstream.KeyValue // checkpoints of stream mappings (stream_esm.go), opened lazily
}

// streamShards caches each stream's shard count (fixed for its life), so
// PutRecord does not ask JetStream per record.
type streamShards struct {
	mu sync.Mutex
	n  map[string]int // JetStream name → shard count
}

func (c *streamShards) get(js string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.n[js]
	return n, ok
}

func (c *streamShards) set(js string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if n == 0 {
		delete(c.n, js)
		return
	}
	c.n[js] = n
}

// CreateStream creates a stream of shardCount shards.
func (e *Engine) CreateStream(ctx context.Context, account, name string, shardCount int) (StreamInfo, error) {
	if !validStreamName(name) {
		return StreamInfo{}, errStreamName(name)
	}
	if shardCount < 1 || shardCount > MaxShards {
		return StreamInfo{}, errdefs.InvalidParameter("ShardCount must be between 1 and %d; got %d.", MaxShards, shardCount)
	}
	js := streamJSName(account, name)
	errInUse := &errdefs.APIError{Class: errdefs.ErrConflict, Code: "ResourceInUseException",
		Message: fmt.Sprintf("Stream %s under account %s already exists.", name, account)}
	// JetStream's create is idempotent for an identical config; Kinesis's is not.
	if _, err := e.js.Stream(ctx, js); err == nil {
		return StreamInfo{}, errInUse
	}
	st, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       js,
		Subjects:   []string{streamSubject + "." + account + "." + strings.ReplaceAll(name, ".", "~") + ".*"},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     StreamRetention,
		MaxMsgSize: MaxRecordData + 4096,
		Metadata:   map[string]string{streamShardsMeta: strconv.Itoa(shardCount), streamNameMeta: name},
		Replicas:   e.replicas(),
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return StreamInfo{}, errInUse
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("async: create stream: %w", err)
	}
	e.streams.shards.set(js, shardCount)
	return e.streamInfo(account, st.CachedInfo(), false)
}

func (e *Engine) streamInfo(account string, info *jetstream.StreamInfo, shards bool) (StreamInfo, error) {
	n, err := strconv.Atoi(info.Config.Metadata[streamShardsMeta])
	if err != nil || n < 1 {
		return StreamInfo{}, fmt.Errorf("async: stream %s has no shard count", info.Config.Name)
	}
	name := info.Config.Metadata[streamNameMeta]
	out := StreamInfo{
		StreamName: name, StreamARN: e.StreamArn(account, name), StreamStatus: "ACTIVE", ShardCount: n,
		RetentionPeriodHours:    int(info.Config.MaxAge / time.Hour),
		StreamCreationTimestamp: float64(info.Created.UnixMilli()) / 1000,
		Records:                 info.State.Msgs,
	}
	if shards {
		for i := range n {
			lo, hi := shardRange(i, n)
			s := ShardInfo{ShardID: ShardID(i), HashKeyRange: HashKeyRange{StartingHashKey: lo.String(), EndingHashKey: hi.String()}}
			s.SequenceNumberRange.StartingSequenceNumber = seqString(0)
			out.Shards = append(out.Shards, s)
		}
	}
	return out, nil
}

// DescribeStream returns a stream with its shards.
func (e *Engine) DescribeStream(ctx context.Context, account, name string) (StreamInfo, error) {
	if !validStreamName(name) {
		return StreamInfo{}, errStreamName(name)
	}
	st, err := e.js.Stream(ctx, streamJSName(account, name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return StreamInfo{}, errStreamNotFound(account, name)
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("async: describe stream: %w", err)
	}
	return e.streamInfo(account, st.CachedInfo(), true)
}

// StreamExists reports whether the account has the named stream (the
// control plane asks before it maps one).
func (e *Engine) StreamExists(ctx context.Context, account, name string) (bool, error) {
	_, err := e.shardCount(ctx, account, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (e *Engine) shardCount(ctx context.Context, account, name string) (int, error) {
	js := streamJSName(account, name)
	if n, ok := e.streams.shards.get(js); ok {
		return n, nil
	}
	info, err := e.DescribeStream(ctx, account, name)
	if err != nil {
		return 0, err
	}
	e.streams.shards.set(js, info.ShardCount)
	return info.ShardCount, nil
}

// DeleteStream deletes a stream and its records.
func (e *Engine) DeleteStream(ctx context.Context, account, name string) error {
	if !validStreamName(name) {
		return errStreamName(name)
	}
	js := streamJSName(account, name)
	e.streams.shards.set(js, 0)
	err := e.js.DeleteStream(ctx, js)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return errStreamNotFound(account, name)
	}
	return err
}

// ListStreams lists the account's streams.
func (e *Engine) ListStreams(ctx context.Context, account string) ([]StreamInfo, error) {
	prefix := streamPf + account + "_"
	out := []StreamInfo{}
	l := e.js.ListStreams(ctx)
	for info := range l.Info() {
		if !strings.HasPrefix(info.Config.Name, prefix) {
			continue
		}
		if s, err := e.streamInfo(account, info, false); err == nil {
			out = append(out, s)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("async: list streams: %w", err)
	}
	return out, nil
}

const pkHeader = "Kiln-Partition-Key"

// PutRecord stores one record durably in the shard its partition key hashes
// to, and returns where.
func (e *Engine) PutRecord(ctx context.Context, account, name, partitionKey string, data []byte) (PutRecordResult, error) {
	if !validStreamName(name) {
		return PutRecordResult{}, errStreamName(name)
	}
	if n := utf8.RuneCountInString(partitionKey); n < 1 || n > 256 || !utf8.ValidString(partitionKey) {
		return PutRecordResult{}, errdefs.Validation("1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and 256")
	}
	if len(data)+len(partitionKey) > MaxRecordData {
		return PutRecordResult{}, errdefs.Validation("1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to %d", MaxRecordData)
	}
	for attempt := 0; ; attempt++ {
		n, err := e.shardCount(ctx, account, name)
		if err != nil {
			return PutRecordResult{}, err
		}
		shard := shardFor(partitionKey, n)
		msg := &nats.Msg{Subject: streamSubj(account, name, shard), Data: data, Header: nats.Header{}}
		msg.Header.Set(pkHeader, partitionKey)
		ack, err := e.js.PublishMsg(ctx, msg)
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// Deleted (or re-created with another shard count) since cached.
			e.streams.shards.set(streamJSName(account, name), 0)
			if attempt == 0 {
				continue
			}
			return PutRecordResult{}, errStreamNotFound(account, name)
		}
		if err != nil {
			return PutRecordResult{}, fmt.Errorf("async: put record: %w", err)
		}
		return PutRecordResult{ShardID: ShardID(shard), SequenceNumber: seqString(ack.Sequence)}, nil
	}
}

// shardConsumer opens an unacknowledged ephemeral consumer over one shard
// starting at pos; the caller reads it with Fetch and deletes it (or lets
// it expire after a minute idle).
func (e *Engine) shardConsumer(ctx context.Context, account, name string, shard int, pos Position) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     streamSubj(account, name, shard),
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	}
	switch pos.Type {
	case "TRIM_HORIZON", "":
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case "LATEST":
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER":
		seq, ok := parseSeq(pos.SequenceNumber)
		if !ok {
			return nil, errdefs.InvalidParameter("StartingSequenceNumber %q is not a sequence number of this stream.", pos.SequenceNumber)
		}
		if pos.Type == "AFTER_SEQUENCE_NUMBER" {
			seq++
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = max(seq, 1)
	case "AT_TIMESTAMP":
		t := pos.Timestamp
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	default:
		return nil, errdefs.InvalidParameter("ShardIteratorType %q must be one of TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP.", pos.Type)
	}
	cons, err := e.js.CreateConsumer(ctx, streamJSName(account, name), cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, errStreamNotFound(account, name)
	}
	return cons, err
}

// toRecord turns a stored message into a stream record.
func toRecord(m jetstream.Msg) StreamRecord {
	r := StreamRecord{Data: m.Data(), PartitionKey: m.Headers().Get(pkHeader)}
	if md, err := m.Metadata(); err == nil {
		r.seq, r.arrival = md.Sequence.Stream, md.Timestamp
		r.SequenceNumber = seqString(r.seq)
		r.ApproximateArrivalTimestamp = float64(md.Timestamp.UnixMilli()) / 1000
	}
	return r
}

// GetRecords reads up to limit records of one shard from pos, waiting up to
// wait for the first. It does not consume them (streams are logs). next is
// the AFTER_SEQUENCE_NUMBER position to continue from ("" if none read).
func (e *Engine) GetRecords(ctx context.Context, account, name, shardID string, pos Position, limit int, wait time.Duration) (recs []StreamRecord, next string, err error) {
	if !validStreamName(name) {
		return nil, "", errStreamName(name)
	}
	if limit < 1 || limit > maxGetRecords {
		return nil, "", errdefs.InvalidParameter("Limit must be between 1 and %d.", maxGetRecords)
	}
	n, err := e.shardCount(ctx, account, name)
	if err != nil {
		return nil, "", err
	}
	shard, ok := parseShardID(shardID, n)
	if !ok {
		return nil, "", errdefs.ResourceNotFound("Shard %s in stream %s under account %s does not exist", shardID, name, account)
	}
	cons, err := e.shardConsumer(ctx, account, name, shard, pos)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		_ = e.js.DeleteConsumer(context.WithoutCancel(ctx), streamJSName(account, name), cons.CachedInfo().Name)
	}()
	wait = max(wait, 50*time.Millisecond)
	batch, err := cons.Fetch(limit, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, "", fmt.Errorf("async: get records: %w", err)
	}
	recs = []StreamRecord{}
	for m := range batch.Messages() {
		recs = append(recs, toRecord(m))
	}
	if len(recs) > 0 {
		next = recs[len(recs)-1].SequenceNumber
	}
	return recs, next, nil
}
