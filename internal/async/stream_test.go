package async

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

func TestShardFor(t *testing.T) {
	keys := []string{"a", "b", "user-1", "user-2", "", "ключ", "0", "partition-key-with-some-length"}
	for i := range 200 {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	for _, n := range []int{1, 2, 3, 4, 7, 10, 64} {
		// The ranges tile [0, 2^128) without gaps or overlaps.
		prev := big.NewInt(-1)
		for i := range n {
			lo, hi := shardRange(i, n)
			if new(big.Int).Add(prev, big.NewInt(1)).Cmp(lo) != 0 || lo.Cmp(hi) > 0 {
				t.Fatalf("n=%d shard %d range [%s, %s] after %s", n, i, lo, hi, prev)
			}
			prev = hi
		}
		if last := new(big.Int).Sub(hashSpace, big.NewInt(1)); prev.Cmp(last) != 0 {
			t.Fatalf("n=%d: ranges end at %s, want 2^128-1", n, prev)
		}
		for _, k := range keys {
			sum := md5.Sum([]byte(k))
			h := new(big.Int).SetBytes(sum[:])
			s := shardFor(k, n)
			lo, hi := shardRange(s, n)
			if h.Cmp(lo) < 0 || h.Cmp(hi) > 0 {
				t.Fatalf("n=%d key %q: hash %s placed in shard %d [%s, %s]", n, k, h, s, lo, hi)
			}
			// With 2 or 4 shards the shard is the hash's top bits.
			if n == 2 && s != int(sum[0]>>7) || n == 4 && s != int(sum[0]>>6) {
				t.Fatalf("n=%d key %q: shard %d, top bits say otherwise", n, k, s)
			}
		}
	}
	// Kinesis's own split for two shards.
	if lo, _ := shardRange(1, 2); lo.String() != "170141183460469231731687303715884105728" {
		t.Fatalf("shard 1 of 2 starts at %s", lo)
	}
}

func TestParseStreamArn(t *testing.T) {
	cases := []struct {
		arn, account, name string
		ok                 bool
	}{
		{"arn:aws:kinesis:us-east-1:123456789012:stream/s", "123456789012", "s", true},
		{"arn:aws:kinesis:us-east-1:123456789012:stream/a.b-c_d", "123456789012", "a.b-c_d", true},
		{"arn:aws:kinesis:us-east-1:123456789012:stream/", "", "", false},
		{"arn:aws:kinesis:us-east-1:12345678901:stream/s", "", "", false},
		{"arn:aws:sqs:us-east-1:123456789012:q", "", "", false},
		{"arn:aws:kinesis:us-east-1:123456789012:stream/a/b", "", "", false},
	}
	for _, tc := range cases {
		a, n, ok := parseStreamArn(tc.arn)
		if a != tc.account || n != tc.name || ok != tc.ok {
			t.Errorf("%s → %q %q %v", tc.arn, a, n, ok)
		}
	}
}

func TestStreamStore(t *testing.T) {
	e := open(t, t.TempDir(), &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) { return ok("") }}, nil, nil)
	ctx := context.Background()
	info, err := e.CreateStream(ctx, acct, "clicks.v1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if info.StreamARN != "arn:aws:kinesis:us-east-1:"+acct+":stream/clicks.v1" || info.ShardCount != 3 || info.RetentionPeriodHours != 24 {
		t.Fatalf("create: %+v", info)
	}
	var ae *errdefs.APIError
	if _, err := e.CreateStream(ctx, acct, "clicks.v1", 3); !errors.As(err, &ae) || ae.Code != "ResourceInUseException" {
		t.Fatalf("second create: %v", err)
	}
	for _, bad := range []struct {
		name   string
		shards int
	}{{"", 1}, {"a b", 1}, {"ok", 0}, {"ok", MaxShards + 1}} {
		if _, err := e.CreateStream(ctx, acct, bad.name, bad.shards); err == nil {
			t.Errorf("created %q with %d shards", bad.name, bad.shards)
		}
	}
	d, err := e.DescribeStream(ctx, acct, "clicks.v1")
	if err != nil || len(d.Shards) != 3 || d.Shards[0].ShardID != "shardId-000000000000" || d.Shards[0].HashKeyRange.StartingHashKey != "0" ||
		d.Shards[2].HashKeyRange.EndingHashKey != "340282366920938463463374607431768211455" {
		t.Fatalf("describe: %+v %v", d, err)
	}
	before := time.Now()
	last := map[string]string{}
	perShard := map[string][]string{}
	for i := range 60 {
		key := "user-" + strconv.Itoa(i%12)
		res, err := e.PutRecord(ctx, acct, "clicks.v1", key, []byte(fmt.Sprintf("r%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if res.ShardID != ShardID(shardFor(key, 3)) || len(res.SequenceNumber) != 20 {
			t.Fatalf("put %s: %+v", key, res)
		}
		if prev := last[res.ShardID]; prev != "" && res.SequenceNumber <= prev {
			t.Fatalf("sequence %s after %s in %s", res.SequenceNumber, prev, res.ShardID)
		}
		last[res.ShardID] = res.SequenceNumber
		perShard[res.ShardID] = append(perShard[res.ShardID], fmt.Sprintf("r%d", i))
	}
	total := 0
	for shard, want := range perShard {
		recs, next, err := e.GetRecords(ctx, acct, "clicks.v1", shard, Position{Type: "TRIM_HORIZON"}, 1000, 0)
		if err != nil || len(recs) != len(want) || next != last[shard] {
			t.Fatalf("%s: %d records (want %d), next %q, %v", shard, len(recs), len(want), next, err)
		}
		for i, r := range recs {
			if string(r.Data) != want[i] || shardFor(r.PartitionKey, 3) != mustShard(t, shard) || r.ApproximateArrivalTimestamp < float64(before.Unix()) {
				t.Fatalf("%s record %d: %+v", shard, i, r)
			}
		}
		total += len(recs)
		after, _, err := e.GetRecords(ctx, acct, "clicks.v1", shard, Position{Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: recs[0].SequenceNumber}, 1000, 0)
		if err != nil || len(after) != len(want)-1 {
			t.Fatalf("after first: %d %v", len(after), err)
		}
		at, _, _ := e.GetRecords(ctx, acct, "clicks.v1", shard, Position{Type: "AT_SEQUENCE_NUMBER", SequenceNumber: recs[1].SequenceNumber}, 1, 0)
		if len(at) != 1 || at[0].SequenceNumber != recs[1].SequenceNumber {
			t.Fatalf("at second: %+v", at)
		}
		if latest, _, _ := e.GetRecords(ctx, acct, "clicks.v1", shard, Position{Type: "LATEST"}, 10, 0); len(latest) != 0 {
			t.Fatalf("LATEST returned %d old records", len(latest))
		}
		if ts, _, _ := e.GetRecords(ctx, acct, "clicks.v1", shard, Position{Type: "AT_TIMESTAMP", Timestamp: time.Now().Add(time.Hour)}, 10, 0); len(ts) != 0 {
			t.Fatalf("AT_TIMESTAMP in the future returned %d", len(ts))
		}
	}
	if total != 60 {
		t.Fatalf("read %d records of 60", total)
	}
	if _, _, err := e.GetRecords(ctx, acct, "clicks.v1", "shardId-000000000003", Position{}, 10, 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("shard 3 of 3: %v", err)
	}
	if _, err := e.PutRecord(ctx, acct, "clicks.v1", "", []byte("x")); err == nil {
		t.Fatal("empty partition key accepted")
	}
	if _, err := e.PutRecord(ctx, acct, "nope", "k", []byte("x")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("put to a missing stream: %v", err)
	}
	ls, err := e.ListStreams(ctx, acct)
	if err != nil || len(ls) != 1 || ls[0].StreamName != "clicks.v1" || ls[0].Records != 60 {
		t.Fatalf("list: %+v %v", ls, err)
	}
	if ls, _ := e.ListStreams(ctx, "999999999999"); len(ls) != 0 {
		t.Fatalf("other account lists %+v", ls)
	}
	if err := e.DeleteStream(ctx, acct, "clicks.v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRecord(ctx, acct, "clicks.v1", "k", []byte("x")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("put after delete: %v", err)
	}
	if err := e.DeleteStream(ctx, acct, "clicks.v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func mustShard(t *testing.T, id string) int {
	n, ok := parseShardID(id, 1000)
	if !ok {
		t.Fatalf("shard id %q", id)
	}
	return n
}

type kinesisEvent struct {
	Records []kinesisRecord `json:"Records"`
}

func decodeKinesis(t *testing.T, in *frontend.InvokeInput) kinesisEvent {
	var ev kinesisEvent
	if err := json.Unmarshal(in.Payload, &ev); err != nil {
		t.Errorf("event: %v: %s", err, in.Payload)
	}
	return ev
}

func testStreamMapping(uuid, stream string) controlplane.EventSourceMapping {
	return controlplane.EventSourceMapping{
		UUID: uuid, Account: acct, EventSourceArn: "arn:aws:kinesis:us-east-1:" + acct + ":stream/" + stream,
		FunctionName: "consumer", BatchSize: 100, Enabled: true, StartingPosition: "TRIM_HORIZON",
		ParallelizationFactor: 1, MaximumRetryAttempts: -1, MaximumRecordAgeInSeconds: -1,
	}
}

func openMapped(t *testing.T, dir string, inv Invoker, ms ...controlplane.EventSourceMapping) *Engine {
	t.Helper()
	e, err := Open(context.Background(), Config{DataDir: dir, Invoker: inv, Mappings: staticMappings(ms), RetryScale: 0.001,
		Lease: time.Second, NoSync: true, MappingSync: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestStreamMappingOrderUnderParallelization(t *testing.T) {
	const keys, perKey = 40, 15
	var (
		mu       sync.Mutex
		seen     = map[string][]int{} // key → record numbers, successful batches only
		inFlight atomic.Int32
		peak     atomic.Int32
		calls    int
	)
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		ev := decodeKinesis(t, in)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%5 == 0 { // some batches fail once and are retried whole
			return unhandled()
		}
		for _, r := range ev.Records {
			var n int
			fmt.Sscanf(string(r.Kinesis.Data), "%d", &n)
			seen[r.Kinesis.PartitionKey] = append(seen[r.Kinesis.PartitionKey], n)
		}
		return ok(`null`)
	}}
	m := testStreamMapping("par", "orders")
	m.ParallelizationFactor, m.BatchSize = 4, 10
	e := openMapped(t, t.TempDir(), inv, m)
	defer e.Close()
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "orders", 2); err != nil {
		t.Fatal(err)
	}
	for i := range perKey {
		for k := range keys {
			if _, err := e.PutRecord(ctx, acct, "orders", "key-"+strconv.Itoa(k), []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every record processed", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range seen {
			n += len(v)
		}
		return n >= keys*perKey
	})
	mu.Lock()
	defer mu.Unlock()
	for k := range keys {
		got := seen["key-"+strconv.Itoa(k)]
		if len(got) != perKey {
			t.Fatalf("key-%d: %v", k, got)
		}
		for i, n := range got {
			if n != i {
				t.Fatalf("key-%d out of order: %v", k, got)
			}
		}
	}
	if peak.Load() < 3 {
		t.Errorf("at most %d batches ran at once over 2 shards × 4 lanes", peak.Load())
	}
}

// failureRecord reads a stream failure record from a Kiln queue.
func failureRecords(t *testing.T, e *Engine, queue string) []streamFailureRecord {
	t.Helper()
	msgs, err := e.ReceiveMessages(context.Background(), acct, queue, 100, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var out []streamFailureRecord
	for _, m := range msgs {
		var r streamFailureRecord
		if err := json.Unmarshal([]byte(m.Body), &r); err != nil {
			t.Fatalf("record %s: %v", m.Body, err)
		}
		out = append(out, r)
	}
	return out
}

func TestStreamMappingBisect(t *testing.T) {
	var mu sync.Mutex
	okCount := map[string]int{}
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		ev := decodeKinesis(t, in)
		for _, r := range ev.Records {
			if string(r.Kinesis.Data) == "bad" {
				return unhandled()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			okCount[string(r.Kinesis.Data)]++
		}
		return ok(`null`)
	}}
	m := testStreamMapping("bisect", "bis")
	m.BatchSize, m.BatchingWindowSeconds = 100, 1
	m.BisectBatchOnFunctionError, m.MaximumRetryAttempts = true, 2
	m.OnFailure = "arn:aws:sqs:us-east-1:" + acct + ":bisect-failed"
	dir := t.TempDir()
	// Records first, mapping second: the first batch holds all 100.
	e := openMapped(t, dir, inv)
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "bis", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateQueue(ctx, acct, "bisect-failed"); err != nil {
		t.Fatal(err)
	}
	var badSeq string
	for i := range 100 {
		data := "r" + strconv.Itoa(i)
		if i == 63 {
			data = "bad"
		}
		res, err := e.PutRecord(ctx, acct, "bis", "k"+strconv.Itoa(i), []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if i == 63 {
			badSeq = res.SequenceNumber
		}
	}
	e.Close()
	e = openMapped(t, dir, inv, m)
	defer e.Close()
	var recs []streamFailureRecord
	waitFor(t, "the bad record's failure record", 20*time.Second, func() bool {
		recs = append(recs, failureRecords(t, e, "bisect-failed")...)
		mu.Lock()
		defer mu.Unlock()
		return len(recs) > 0 && len(okCount) == 99
	})
	time.Sleep(200 * time.Millisecond)
	recs = append(recs, failureRecords(t, e, "bisect-failed")...)
	if len(recs) != 1 {
		t.Fatalf("%d failure records: %+v", len(recs), recs)
	}
	r := recs[0]
	bi := r.KinesisBatchInfo
	if bi.BatchSize != 1 || bi.StartSequenceNumber != badSeq || bi.EndSequenceNumber != badSeq || bi.ShardID != "shardId-000000000000" ||
		bi.StreamArn != m.EventSourceArn || bi.ApproximateArrivalOfFirstRecord == "" || r.Version != "1.0" ||
		r.RequestContext.Condition != "RetryAttemptsExhausted" || r.RequestContext.FunctionArn != "arn:aws:lambda:us-east-1:"+acct+":function:consumer" ||
		r.RequestContext.ApproximateInvokeCount < 3 || r.ResponseContext == nil || r.ResponseContext.FunctionError != "Unhandled" {
		t.Fatalf("failure record %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	for d, n := range okCount {
		if n != 1 {
			t.Errorf("%s processed %d times", d, n)
		}
	}
}

func TestStreamMappingPartialBatch(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var first []kinesisRecord
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		ev := decodeKinesis(t, in)
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = ev.Records
		}
		var fails []map[string]string
		for _, r := range ev.Records {
			d := string(r.Kinesis.Data)
			seen[d]++
			if d == "r5" && seen[d] == 1 || d == "r7" && seen[d] == 2 {
				fails = append(fails, map[string]string{"itemIdentifier": r.Kinesis.SequenceNumber})
			}
		}
		b, _ := json.Marshal(map[string]any{"batchItemFailures": fails})
		return ok(string(b))
	}}
	m := testStreamMapping("partial", "part")
	m.BatchSize, m.BatchingWindowSeconds, m.ReportBatchItemFailures = 10, 1, true
	dir := t.TempDir()
	e := openMapped(t, dir, inv)
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "part", 1); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := e.PutRecord(ctx, acct, "part", "k", []byte("r"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	e = openMapped(t, dir, inv, m)
	defer e.Close()
	waitFor(t, "retries", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["r9"] >= 3
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	// r5 fails: r0–r4 are checkpointed, r5–r9 retried; on the retry r7
	// fails: r5 and r6 are checkpointed, r7–r9 run a third time.
	want := map[string]int{"r0": 1, "r4": 1, "r5": 2, "r6": 2, "r7": 3, "r8": 3, "r9": 3}
	for d, n := range want {
		if seen[d] != n {
			t.Errorf("%s delivered %d times, want %d (all: %v)", d, seen[d], n, seen)
		}
	}
	r := first[0]
	if r.EventSource != "aws:kinesis" || r.EventName != "aws:kinesis:record" || r.EventVersion != "1.0" ||
		r.EventID != "shardId-000000000000:"+r.Kinesis.SequenceNumber || r.Kinesis.KinesisSchemaVersion != "1.0" ||
		r.Kinesis.PartitionKey != "k" || string(r.Kinesis.Data) != "r0" || r.AWSRegion != "us-east-1" ||
		r.EventSourceARN != m.EventSourceArn || r.Kinesis.ApproximateArrivalTimestamp < 1e9 {
		t.Errorf("record shape %+v", r)
	}
}

func TestStreamMappingCheckpointSurvivesRestart(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		ev := decodeKinesis(t, in)
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			seen[string(r.Kinesis.Data)]++
		}
		return ok(`null`)
	}}
	m := testStreamMapping("restart", "rs")
	m.BatchSize = 3
	dir := t.TempDir()
	e := openMapped(t, dir, inv, m)
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "rs", 2); err != nil {
		t.Fatal(err)
	}
	put := func(e *Engine, from, to int) {
		for i := from; i < to; i++ {
			if _, err := e.PutRecord(ctx, acct, "rs", "k"+strconv.Itoa(i), []byte("r"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(from, to int) bool {
		mu.Lock()
		defer mu.Unlock()
		for i := from; i < to; i++ {
			if seen["r"+strconv.Itoa(i)] == 0 {
				return false
			}
		}
		return true
	}
	put(e, 0, 20)
	waitFor(t, "first 20", 10*time.Second, func() bool { return count(0, 20) })
	e.Close() // finish() writes the checkpoint before the batch returns
	e = openMapped(t, dir, inv, m)
	defer e.Close()
	put(e, 20, 40)
	waitFor(t, "next 20 after restart", 10*time.Second, func() bool { return count(20, 40) })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := range 40 {
		if n := seen["r"+strconv.Itoa(i)]; n != 1 {
			t.Errorf("r%d processed %d times", i, n)
		}
	}
}

func TestStreamMappingStartingPosition(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // function → data
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		ev := decodeKinesis(t, in)
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			seen[in.FunctionRef] = append(seen[in.FunctionRef], string(r.Kinesis.Data))
		}
		return ok(`null`)
	}}
	dir := t.TempDir()
	e := openMapped(t, dir, inv)
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "pos", 1); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := e.PutRecord(ctx, acct, "pos", "k", []byte("old"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()
	time.Sleep(5 * time.Millisecond)
	created := time.Now()
	horizon := testStreamMapping("horizon", "pos")
	horizon.FunctionName = "horizon"
	latest := testStreamMapping("latest", "pos")
	latest.FunctionName, latest.StartingPosition, latest.LastModified = "latest", "LATEST", created.UnixMilli()
	at := testStreamMapping("at", "pos")
	at.FunctionName, at.StartingPosition, at.StartingPositionTimestamp = "at", "AT_TIMESTAMP", created.UnixMilli()
	e = openMapped(t, dir, inv, horizon, latest, at)
	defer e.Close()
	for i := range 3 {
		if _, err := e.PutRecord(ctx, acct, "pos", "k", []byte("new"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all mappings caught up", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen["horizon"]) >= 8 && len(seen["latest"]) >= 3 && len(seen["at"]) >= 3
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen["horizon"]) != "[old0 old1 old2 old3 old4 new0 new1 new2]" {
		t.Errorf("TRIM_HORIZON saw %v", seen["horizon"])
	}
	for _, fn := range []string{"latest", "at"} {
		if fmt.Sprint(seen[fn]) != "[new0 new1 new2]" {
			t.Errorf("%s saw %v", fn, seen[fn])
		}
	}
}

func TestStreamMappingFollowsRecreatedStream(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		ev := decodeKinesis(t, in)
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			seen = append(seen, string(r.Kinesis.Data))
		}
		return ok(`null`)
	}}
	e := openMapped(t, t.TempDir(), inv, testStreamMapping("re", "re"))
	defer e.Close()
	ctx := context.Background()
	has := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= n }
	}
	if _, err := e.CreateStream(ctx, acct, "re", 1); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a1", "a2", "a3"} {
		if _, err := e.PutRecord(ctx, acct, "re", "k", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "first stream's records", 10*time.Second, has(3))
	if err := e.DeleteStream(ctx, acct, "re"); err != nil {
		t.Fatal(err)
	}
	// The new stream's sequence numbers start over, below the old
	// checkpoint: nothing in it may be skipped.
	if _, err := e.CreateStream(ctx, acct, "re", 1); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b1", "b2"} {
		if _, err := e.PutRecord(ctx, acct, "re", "k", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "re-created stream's records", 10*time.Second, has(5))
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[a1 a2 a3 b1 b2]" {
		t.Fatalf("saw %v", seen)
	}
}

func TestStreamMappingRecordAge(t *testing.T) {
	clk := &clock{}
	var calls atomic.Int32
	inv := &scripted{fn: func(*frontend.InvokeInput, int) (*frontend.InvokeOutput, error) {
		calls.Add(1)
		return unhandled()
	}}
	m := testStreamMapping("age", "old")
	m.MaximumRecordAgeInSeconds, m.OnFailure = 60, "arn:aws:sqs:us-east-1:"+acct+":aged"
	e, err := Open(context.Background(), Config{DataDir: t.TempDir(), Invoker: inv, Mappings: staticMappings{m}, RetryScale: 0.001,
		NoSync: true, MappingSync: 50 * time.Millisecond, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.CreateQueue(ctx, acct, "aged"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateStream(ctx, acct, "old", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRecord(ctx, acct, "old", "k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retries", 10*time.Second, func() bool { return calls.Load() >= 2 })
	clk.offset.Store(int64(2 * time.Minute))
	var recs []streamFailureRecord
	waitFor(t, "age failure record", 10*time.Second, func() bool {
		recs = append(recs, failureRecords(t, e, "aged")...)
		return len(recs) > 0
	})
	if recs[0].RequestContext.Condition != "RecordAgeExceeded" || recs[0].KinesisBatchInfo.BatchSize != 1 {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestStreamItemFailure(t *testing.T) {
	recs := []StreamRecord{{SequenceNumber: "01"}, {SequenceNumber: "02"}, {SequenceNumber: "03"}}
	cases := []struct {
		payload string
		idx     int
		ok      bool
	}{
		{``, -1, true},
		{`null`, -1, true},
		{`{}`, -1, true},
		{`"done"`, -1, true},
		{`{"batchItemFailures":[]}`, -1, true},
		{`{"batchItemFailures":[{"itemIdentifier":"02"}]}`, 1, true},
		{`{"batchItemFailures":[{"itemIdentifier":"03"},{"itemIdentifier":"02"}]}`, 1, true},
		{`{"batchItemFailures":[{"itemIdentifier":"09"}]}`, -1, false},
		{`{"batchItemFailures":[{"itemIdentifier":""}]}`, -1, false},
		{`{"batchItemFailures":[{}]}`, -1, false},
	}
	for _, tc := range cases {
		idx, ok := streamItemFailure([]byte(tc.payload), recs)
		if idx != tc.idx || ok != tc.ok {
			t.Errorf("%s → %d %v, want %d %v", tc.payload, idx, ok, tc.idx, tc.ok)
		}
	}
}

func FuzzStreamItemFailure(f *testing.F) {
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":"00000000000000000002"}]}`))
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":null}]}`))
	f.Add([]byte(`[1,2]`))
	recs := []StreamRecord{{SequenceNumber: "00000000000000000001"}, {SequenceNumber: "00000000000000000002"}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		idx, ok := streamItemFailure(payload, recs)
		if idx < -1 || idx >= len(recs) || (!ok && idx != -1) {
			t.Fatalf("%q → %d %v", payload, idx, ok)
		}
	})
}

func FuzzDecodeStreamBodies(f *testing.F) {
	f.Add([]byte(`{"StreamName":"s","ShardCount":2}`))
	f.Add([]byte(`{"PartitionKey":"k","Data":"aGVsbG8="}`))
	f.Add([]byte(`{"Data":"not base64"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _, _ = decodeCreateStream(body) // must not panic
		in, err := decodePutRecord(body)
		if err != nil {
			var ae *errdefs.APIError
			if !errors.As(err, &ae) || ae.Code != "SerializationException" {
				t.Fatalf("error %v is not an API error", err)
			}
			return
		}
		b, _ := json.Marshal(in)
		back, err := decodePutRecord(b)
		if err != nil || back.PartitionKey != in.PartitionKey || string(back.Data) != string(in.Data) {
			t.Fatalf("round trip %+v → %+v %v", in, back, err)
		}
	})
}

// TestKinesisEventShape pins the event a stream mapping delivers to
// Lambda's Kinesis event (testdata/kinesis_event.json, in Lambda's field
// names and order).
func TestKinesisEventShape(t *testing.T) {
	e := &Engine{cfg: Config{Region: "us-east-2", Mappings: staticMappings{}}}
	m := testStreamMapping("u", "lambda-stream")
	m.EventSourceArn = "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
	sr := &shardRun{sm: &streamMapping{e: e, m: m}, shard: 6}
	got := sr.event([]StreamRecord{
		{SequenceNumber: "00000000000000000042", PartitionKey: "1", Data: []byte("Hello, this is a test."), ApproximateArrivalTimestamp: 1545084650.987},
		{SequenceNumber: "00000000000000000043", PartitionKey: "2", Data: []byte("whole second"), ApproximateArrivalTimestamp: 1545084651},
	})
	want, err := os.ReadFile("testdata/kinesis_event.json")
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatal(err)
	}
	if string(got) != compact.String() {
		t.Fatalf("event\n got %s\nwant %s", got, compact.String())
	}
}

// BenchmarkPutRecord measures a durable PutRecord (fsynced unless -short).
func BenchmarkPutRecord(b *testing.B) {
	e, err := Open(context.Background(), Config{DataDir: b.TempDir(), Invoker: &scripted{}, NoSync: testing.Short()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "bench", 4); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"event":"click","n":1}`)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := e.PutRecord(ctx, acct, "bench", "k"+strconv.Itoa(i%100), data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkStreamMapping measures records/s from a 4-shard stream through a
// mapping (BatchSize 100, ParallelizationFactor 2) to a trivial function.
func BenchmarkStreamMapping(b *testing.B) {
	var done atomic.Int64
	inv := &scripted{fn: func(in *frontend.InvokeInput, _ int) (*frontend.InvokeOutput, error) {
		var ev kinesisEvent
		_ = json.Unmarshal(in.Payload, &ev)
		done.Add(int64(len(ev.Records)))
		return ok(`null`)
	}}
	dir := b.TempDir()
	e, err := Open(context.Background(), Config{DataDir: dir, Invoker: inv, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.CreateStream(ctx, acct, "bench", 4); err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		if _, err := e.PutRecord(ctx, acct, "bench", "k"+strconv.Itoa(i%1000), []byte(`{"n":1}`)); err != nil {
			b.Fatal(err)
		}
	}
	e.Close()
	m := testStreamMapping("bench", "bench")
	m.ParallelizationFactor = 2
	b.ResetTimer()
	e, err = Open(context.Background(), Config{DataDir: dir, Invoker: inv, NoSync: true, Mappings: staticMappings{m}, MappingSync: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for done.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
