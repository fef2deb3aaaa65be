package acceptance

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func streamFn() fixture {
	return fixture{"streamfn", "python3.12", "app.handler", func(t *testing.T) []byte { return mustZip(t, "testdata/streamfn") }}
}

func (s *server) createStream(t *testing.T, name string, shards int) string {
	t.Helper()
	var out struct{ StreamARN string }
	if code := s.kiln(t, "POST", "/2026-01-01/kiln/streams", []byte(fmt.Sprintf(`{"StreamName":%q,"ShardCount":%d}`, name, shards)), &out); code != 201 {
		t.Fatalf("create stream %s: %d", name, code)
	}
	return out.StreamARN
}

// putRecord returns the record's sequence number.
func (s *server) putRecord(t *testing.T, stream, key, data string) string {
	t.Helper()
	body, _ := json.Marshal(struct {
		PartitionKey string
		Data         []byte
	}{key, []byte(data)})
	var out struct{ ShardId, SequenceNumber string }
	if code := s.kiln(t, "POST", "/2026-01-01/kiln/streams/"+stream+"/records", body, &out); code != 200 {
		t.Fatalf("put %s: %d", stream, code)
	}
	return out.SequenceNumber
}

// batches reads the stream function's log lines: kind (OK, PARTIAL,
// FAILED) → the [key, data, sequence] of each batch, in log order.
func (s *server) batches(t *testing.T, fn string) map[string][][][3]string {
	t.Helper()
	var out struct{ Events []struct{ Message string } }
	if code := s.kiln(t, "GET", "/2026-01-01/kiln/functions/"+fn+"/logs?Limit=10000", nil, &out); code != 200 {
		t.Fatalf("logs %s: %d", fn, code)
	}
	got := map[string][][][3]string{}
	for _, ev := range out.Events {
		kind, rest, ok := strings.Cut(ev.Message, " ")
		if !ok || (kind != "OK" && kind != "PARTIAL" && kind != "FAILED") {
			continue
		}
		var items [][3]string
		if err := json.Unmarshal([]byte(rest), &items); err != nil {
			continue
		}
		got[kind] = append(got[kind], items)
	}
	return got
}

type streamFailure struct {
	RequestContext struct {
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		FunctionArn            string `json:"functionArn"`
	} `json:"requestContext"`
	ResponseContext *struct {
		FunctionError string `json:"functionError"`
	} `json:"responseContext"`
	Version          string `json:"version"`
	KinesisBatchInfo struct {
		ShardID             string `json:"shardId"`
		StartSequenceNumber string `json:"startSequenceNumber"`
		EndSequenceNumber   string `json:"endSequenceNumber"`
		BatchSize           int    `json:"batchSize"`
		StreamArn           string `json:"streamArn"`
	} `json:"KinesisBatchInfo"`
}

func mapStream(t *testing.T, c *lambda.Client, fn, arn string, mutate func(*lambda.CreateEventSourceMappingInput)) {
	t.Helper()
	in := &lambda.CreateEventSourceMappingInput{FunctionName: aws.String(fn), EventSourceArn: aws.String(arn),
		StartingPosition: types.EventSourcePositionTrimHorizon}
	if mutate != nil {
		mutate(in)
	}
	if _, err := c.CreateEventSourceMapping(ctx(), in); err != nil {
		t.Fatalf("map %s → %s: %v", arn, fn, err)
	}
}

// TestStreams runs Kiln streams end to end on one server: the kiln stream
// verbs, per-key order under ParallelizationFactor 4, bisecting to the one
// bad record of 100, partial batch responses, LATEST vs TRIM_HORIZON, and a
// checkpoint surviving a SIGKILL of the server.
func TestStreams(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "--async-retry-scale", "0.01")
	c := s.client(t)

	// The CLI verbs.
	var seq string
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"stream", "create", "cli.s", "--shards", "2"}, ":stream/cli.s"},
		{[]string{"stream", "put", "cli.s", "user-1", `{"hello":"stream"}`}, "shardId-"},
		{[]string{"stream", "ls"}, "cli.s"},
		{[]string{"stream", "describe", "cli.s"}, "340282366920938463463374607431768211455"},
		{[]string{"stream", "read", "cli.s"}, `user-1	{"hello":"stream"}`},
		{[]string{"stream", "rm", "cli.s"}, ""},
	} {
		out, err := runKiln(t, s, step.args...)
		if err != nil || !strings.Contains(out, step.want) {
			t.Fatalf("kiln %v: %v\n%s", step.args, err, out)
		}
		if step.args[1] == "put" {
			seq = strings.TrimSpace(strings.Split(out, "\t")[1])
		}
	}
	if len(seq) != 20 {
		t.Fatalf("sequence number %q", seq)
	}
	if out, err := runKiln(t, s, "stream", "read", "cli.s"); err == nil || !strings.Contains(out, "ResourceNotFoundException") {
		t.Fatalf("read a deleted stream: %v\n%s", err, out)
	}

	// Per-key order with ParallelizationFactor 4 over 2 shards.
	createFunction(t, c, "sorder", streamFn())
	ordArn := s.createStream(t, "ord", 2)
	mapStream(t, c, "sorder", ordArn, func(in *lambda.CreateEventSourceMappingInput) {
		in.ParallelizationFactor, in.BatchSize = aws.Int32(4), aws.Int32(10)
	})
	// Bisect: the records are in place before the mapping starts, so the
	// first batch holds all 100.
	createFunction(t, c, "sbisect", streamFn())
	bisArn := s.createStream(t, "bis", 1)
	bisFail := s.createQueue(t, "bisfail")
	var badSeq string
	for i := range 100 {
		data := "b" + strconv.Itoa(i)
		if i == 42 {
			data = "bad"
		}
		if sq := s.putRecord(t, "bis", "k"+strconv.Itoa(i%7), data); data == "bad" {
			badSeq = sq
		}
	}
	mapStream(t, c, "sbisect", bisArn, func(in *lambda.CreateEventSourceMappingInput) {
		in.BatchSize, in.MaximumBatchingWindowInSeconds = aws.Int32(100), aws.Int32(1)
		in.BisectBatchOnFunctionError, in.MaximumRetryAttempts = aws.Bool(true), aws.Int32(1)
		in.DestinationConfig = &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(bisFail)}}
	})
	// Partial batch response: p5 is reported failed every time.
	createFunction(t, c, "spartial", streamFn())
	partArn := s.createStream(t, "part", 1)
	partFail := s.createQueue(t, "partfail")
	partSeq := map[string]string{}
	for i := range 10 {
		data := "p" + strconv.Itoa(i)
		if i == 5 {
			data = "pfail5"
		}
		partSeq[data] = s.putRecord(t, "part", "k", data)
	}
	mapStream(t, c, "spartial", partArn, func(in *lambda.CreateEventSourceMappingInput) {
		in.BatchSize, in.MaximumBatchingWindowInSeconds, in.MaximumRetryAttempts = aws.Int32(10), aws.Int32(1), aws.Int32(1)
		in.FunctionResponseTypes = []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures}
		in.DestinationConfig = &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(partFail)}}
	})
	// LATEST vs TRIM_HORIZON on one stream.
	createFunction(t, c, "slatest", streamFn())
	createFunction(t, c, "shorizon", streamFn())
	posArn := s.createStream(t, "pos", 1)
	s.putRecord(t, "pos", "k", "old1")
	s.putRecord(t, "pos", "k", "old2")
	mapStream(t, c, "shorizon", posArn, nil)
	mapStream(t, c, "slatest", posArn, func(in *lambda.CreateEventSourceMappingInput) { in.StartingPosition = types.EventSourcePositionLatest })
	s.putRecord(t, "pos", "k", "new1")
	s.putRecord(t, "pos", "k", "new2")

	const keys, perKey = 16, 8
	for i := range perKey {
		for k := range keys {
			s.putRecord(t, "ord", "key-"+strconv.Itoa(k), strconv.Itoa(i))
		}
	}

	var bisRecs, partRecs []streamFailure
	readFailures := func(queue string, into *[]streamFailure) {
		for _, b := range s.receiveBodies(t, queue) {
			var r streamFailure
			if err := json.Unmarshal([]byte(b), &r); err != nil {
				t.Fatalf("failure record %s: %v", b, err)
			}
			*into = append(*into, r)
		}
	}
	flat := func(bs [][][3]string) (out [][3]string) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		readFailures("bisfail", &bisRecs)
		readFailures("partfail", &partRecs)
		ord := len(flat(s.batches(t, "sorder")["OK"]))
		bis := len(flat(s.batches(t, "sbisect")["OK"]))
		lat := len(flat(s.batches(t, "slatest")["OK"]))
		hor := len(flat(s.batches(t, "shorizon")["OK"]))
		if ord >= keys*perKey && bis >= 99 && len(bisRecs) > 0 && len(partRecs) > 0 && lat >= 2 && hor >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams did not drain: order %d/%d, bisect %d/99 (+%d failure records), partial %d failure records, latest %d/2, horizon %d/4\n%s",
				ord, keys*perKey, bis, len(bisRecs), len(partRecs), lat, hor, s.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	readFailures("bisfail", &bisRecs)
	readFailures("partfail", &partRecs)

	t.Run("order per key under ParallelizationFactor 4", func(t *testing.T) {
		perKeySeen := map[string][]string{}
		for _, it := range flat(s.batches(t, "sorder")["OK"]) {
			perKeySeen[it[0]] = append(perKeySeen[it[0]], it[1])
		}
		for k := range keys {
			got := perKeySeen["key-"+strconv.Itoa(k)]
			for i := range perKey {
				if i >= len(got) || got[i] != strconv.Itoa(i) {
					t.Fatalf("key-%d saw %v", k, got)
				}
			}
		}
	})
	t.Run("bisect isolates the bad record", func(t *testing.T) {
		ok := map[string]int{}
		for _, it := range flat(s.batches(t, "sbisect")["OK"]) {
			ok[it[1]]++
		}
		if len(ok) != 99 || ok["bad"] != 0 {
			t.Fatalf("processed %d distinct records: %v", len(ok), ok)
		}
		for d, n := range ok {
			if n != 1 {
				t.Errorf("%s processed %d times", d, n)
			}
		}
		if len(bisRecs) != 1 {
			t.Fatalf("%d failure records: %+v", len(bisRecs), bisRecs)
		}
		r := bisRecs[0]
		if r.KinesisBatchInfo.BatchSize != 1 || r.KinesisBatchInfo.StartSequenceNumber != badSeq || r.KinesisBatchInfo.EndSequenceNumber != badSeq ||
			r.KinesisBatchInfo.StreamArn != bisArn || r.KinesisBatchInfo.ShardID != "shardId-000000000000" || r.Version != "1.0" ||
			r.RequestContext.Condition != "RetryAttemptsExhausted" || !strings.HasSuffix(r.RequestContext.FunctionArn, ":function:sbisect") ||
			r.ResponseContext == nil || r.ResponseContext.FunctionError != "Unhandled" {
			t.Fatalf("failure record %+v", r)
		}
	})
	t.Run("partial batch response", func(t *testing.T) {
		seen := map[string]int{}
		for _, it := range flat(s.batches(t, "spartial")["PARTIAL"]) {
			seen[it[1]]++
		}
		for i := range 10 {
			d, want := "p"+strconv.Itoa(i), 1
			if i == 5 {
				d = "pfail5"
			}
			if i >= 5 {
				want = 2 // the first try and the one retry
			}
			if seen[d] != want {
				t.Errorf("%s delivered %d times, want %d: %v", d, seen[d], want, seen)
			}
		}
		if len(partRecs) != 1 || partRecs[0].KinesisBatchInfo.StartSequenceNumber != partSeq["pfail5"] ||
			partRecs[0].KinesisBatchInfo.EndSequenceNumber != partSeq["p9"] || partRecs[0].KinesisBatchInfo.BatchSize != 5 {
			t.Fatalf("failure records %+v", partRecs)
		}
	})
	t.Run("LATEST skips what was there, TRIM_HORIZON does not", func(t *testing.T) {
		var lat, hor []string
		for _, it := range flat(s.batches(t, "slatest")["OK"]) {
			lat = append(lat, it[1])
		}
		for _, it := range flat(s.batches(t, "shorizon")["OK"]) {
			hor = append(hor, it[1])
		}
		if fmt.Sprint(lat) != "[new1 new2]" || fmt.Sprint(hor) != "[old1 old2 new1 new2]" {
			t.Fatalf("LATEST saw %v, TRIM_HORIZON saw %v", lat, hor)
		}
	})

	// A checkpoint survives a SIGKILL: after the restart the mapping goes
	// on after what it finished, and skips nothing.
	createFunction(t, c, "srestart", streamFn())
	rsArn := s.createStream(t, "rs", 1)
	mapStream(t, c, "srestart", rsArn, func(in *lambda.CreateEventSourceMappingInput) { in.BatchSize = aws.Int32(3) })
	for i := range 10 {
		s.putRecord(t, "rs", "k"+strconv.Itoa(i), "r"+strconv.Itoa(i))
	}
	waitSeen := func(s *server, want int) []string {
		var got []string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got = got[:0]
			for _, it := range flat(s.batches(t, "srestart")["OK"]) {
				got = append(got, it[1])
			}
			if len(got) >= want {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("saw %v, want %d records", got, want)
			}
		}
	}
	waitSeen(s, 10)
	time.Sleep(500 * time.Millisecond) // the checkpoint follows the batch
	s.kill()
	s = startServer(t, dir, "--async-retry-scale", "0.01")
	for i := 10; i < 20; i++ {
		s.putRecord(t, "rs", "k"+strconv.Itoa(i), "r"+strconv.Itoa(i))
	}
	waitSeen(s, 10)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	got := waitSeen(s, 10)
	want := []string{}
	for i := 10; i < 20; i++ {
		want = append(want, "r"+strconv.Itoa(i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart the mapping saw %v, want %v", got, want)
	}
}
