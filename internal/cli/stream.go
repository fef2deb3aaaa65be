package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const streamUsage = `Usage: kiln stream SUBCOMMAND [flags]

Kiln streams are ordered, sharded logs with Kinesis semantics, addressed by
Kinesis-shaped ARNs (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME). A record goes
to the shard its partition key hashes to (MD5 over the 128-bit hash-key range)
and is kept 24 hours. Map a stream to a function with
CreateEventSourceMapping (StartingPosition is required).

Subcommands:
  create NAME          create a stream (--shards N) and print its ARN
  ls                   list streams with their shard and record counts
  describe NAME        print a stream and its shards' hash-key ranges
  rm NAME              delete a stream and its records
  put NAME KEY [DATA]  put one record (DATA, or stdin when omitted)
  read NAME            print records: shard, sequence number, key, data
`

var streamVerbs = map[string]func(ctx context.Context, e *env, args []string) int{
	"create":   runStreamCreate,
	"ls":       runStreamLs,
	"describe": runStreamDescribe,
	"rm":       runStreamRm,
	"put":      runStreamPut,
	"read":     runStreamRead,
}

func runStream(ctx context.Context, e *env, args []string) int {
	return runSubcommand(ctx, e, "stream", streamUsage, streamVerbs, args)
}

func streamSegs(extra ...string) []string {
	return append([]string{"2026-01-01", "kiln", "streams"}, extra...)
}

type streamInfo struct {
	StreamName           string
	StreamARN            string
	StreamStatus         string
	OpenShardCount       int
	RetentionPeriodHours int
	Records              uint64 `json:"ApproximateNumberOfRecords"`
	Shards               []struct {
		ShardId      string
		HashKeyRange struct{ StartingHashKey, EndingHashKey string }
	}
}

func runStreamCreate(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream create", "stream create NAME [--shards N] [flags]", "Creates a stream and prints its ARN.", 1, 1, true)
	shards := cmd.fs.Int("shards", 1, "number of shards (`N`, 1-64)")
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	if *shards < 1 || *shards > 64 {
		return cmd.usageError(e, "--shards must be between 1 and 64")
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	body, _ := json.Marshal(struct {
		StreamName string
		ShardCount int
	}{pos[0], *shards})
	var s streamInfo
	if err := c.kilnCall(ctx, "CreateStream", http.MethodPost, streamSegs(), nil, body, &s); err != nil {
		return e.fail("CreateStream", err)
	}
	fmt.Fprintln(e.stdout, s.StreamARN)
	return exitOK
}

func runStreamLs(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream ls", "stream ls [flags]", "Lists streams with their shard counts and approximate record counts.", 0, 0, true)
	if _, code, done := cmd.parse(e, args); done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	var out struct{ Streams []streamInfo }
	if err := c.kilnCall(ctx, "ListStreams", http.MethodGet, streamSegs(), nil, nil, &out); err != nil {
		return e.fail("ListStreams", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSHARDS\tRECORDS\tARN")
	for _, s := range out.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", s.StreamName, s.OpenShardCount, s.Records, s.StreamARN)
	}
	_ = tw.Flush()
	return exitOK
}

func (c *client) describeStream(ctx context.Context, name string) (streamInfo, error) {
	var out struct{ StreamDescription streamInfo }
	err := c.kilnCall(ctx, "DescribeStream", http.MethodGet, streamSegs(name), nil, nil, &out)
	return out.StreamDescription, err
}

func runStreamDescribe(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream describe", "stream describe NAME [flags]", "Prints a stream's ARN, status and retention, and each shard's hash-key range.", 1, 1, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	s, err := c.describeStream(ctx, pos[0])
	if err != nil {
		return e.fail("DescribeStream", err)
	}
	fmt.Fprintf(e.stdout, "Name:       %s\nARN:        %s\nStatus:     %s\nRetention:  %d h\nRecords:    %d\n\n",
		s.StreamName, s.StreamARN, s.StreamStatus, s.RetentionPeriodHours, s.Records)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tSTARTING HASH KEY\tENDING HASH KEY")
	for _, sh := range s.Shards {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sh.ShardId, sh.HashKeyRange.StartingHashKey, sh.HashKeyRange.EndingHashKey)
	}
	_ = tw.Flush()
	return exitOK
}

func runStreamRm(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream rm", "stream rm NAME [flags]", "Deletes a stream and its records.", 1, 1, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	if _, err := c.kilnRequest(ctx, "DeleteStream", http.MethodDelete, streamSegs(pos[0]), nil, nil); err != nil {
		return e.fail("DeleteStream", err)
	}
	return exitOK
}

func runStreamPut(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream put", "stream put NAME PARTITION-KEY [DATA] [flags]",
		"Puts one record: DATA, or all of stdin when DATA is omitted. Prints the shard\nand the sequence number it was stored under.", 2, 3, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	var data []byte
	if len(pos) == 3 {
		data = []byte(pos[2])
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20+1))
		if err != nil {
			return e.fail("", err)
		}
		data = b
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	body, _ := json.Marshal(struct {
		PartitionKey string
		Data         []byte
	}{pos[1], data})
	var out struct{ ShardId, SequenceNumber string }
	if err := c.kilnCall(ctx, "PutRecord", http.MethodPost, streamSegs(pos[0], "records"), nil, body, &out); err != nil {
		return e.fail("PutRecord", err)
	}
	fmt.Fprintf(e.stdout, "%s\t%s\n", out.ShardId, out.SequenceNumber)
	return exitOK
}

func runStreamRead(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("stream read", "stream read NAME [flags]",
		"Prints records without consuming them, one per line: shard, sequence number,\npartition key and data, tab-separated. Reads every shard unless --shard is given.", 1, 1, true)
	shard := cmd.fs.String("shard", "", "read only this shard (`ID`, e.g. shardId-000000000000)")
	from := cmd.fs.String("from", "TRIM_HORIZON", "where to start: TRIM_HORIZON, LATEST, or AT_TIMESTAMP (with --at)")
	after := cmd.fs.String("after", "", "start after this sequence number (`SEQ`; needs --shard)")
	at := cmd.fs.String("at", "", "with --from AT_TIMESTAMP: the `TIME` (RFC 3339 or epoch seconds)")
	max := cmd.fs.Int("max", 100, "most records per shard (`N`, 1-10000)")
	wait := cmd.fs.Int("wait", 0, "seconds to wait for a first record per shard (0-20)")
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	if *max < 1 || *max > 10000 {
		return cmd.usageError(e, "--max must be between 1 and 10000")
	}
	if *wait < 0 || *wait > 20 {
		return cmd.usageError(e, "--wait must be between 0 and 20")
	}
	q := url.Values{"Limit": {strconv.Itoa(*max)}, "WaitTimeSeconds": {strconv.Itoa(*wait)}, "ShardIteratorType": {strings.ToUpper(*from)}}
	switch {
	case *after != "":
		if *shard == "" {
			return cmd.usageError(e, "--after needs --shard (sequence numbers are per shard)")
		}
		q.Set("ShardIteratorType", "AFTER_SEQUENCE_NUMBER")
		q.Set("StartingSequenceNumber", *after)
	case strings.EqualFold(*from, "AT_TIMESTAMP"):
		if *at == "" {
			return cmd.usageError(e, "--from AT_TIMESTAMP needs --at")
		}
		sec, err := strconv.ParseFloat(*at, 64)
		if err != nil {
			t, perr := time.Parse(time.RFC3339Nano, *at)
			if perr != nil {
				return cmd.usageError(e, "--at %q is neither RFC 3339 nor epoch seconds", *at)
			}
			sec = float64(t.UnixMilli()) / 1000
		}
		q.Set("Timestamp", strconv.FormatFloat(sec, 'f', 3, 64))
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	shards := []string{*shard}
	if *shard == "" {
		s, err := c.describeStream(ctx, pos[0])
		if err != nil {
			return e.fail("DescribeStream", err)
		}
		shards = shards[:0]
		for _, sh := range s.Shards {
			shards = append(shards, sh.ShardId)
		}
	}
	for _, id := range shards {
		b, err := c.kilnRequest(ctx, "GetRecords", http.MethodGet, streamSegs(pos[0], "shards", id, "records"), q, nil)
		if err != nil {
			return e.fail("GetRecords", err)
		}
		var out struct {
			Records []struct {
				SequenceNumber string
				PartitionKey   string
				Data           []byte
			}
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return e.fail("GetRecords", decodeErr("GetRecords", err))
		}
		for _, r := range out.Records {
			fmt.Fprintf(e.stdout, "%s\t%s\t%s\t%s\n", id, r.SequenceNumber, r.PartitionKey, r.Data)
		}
	}
	return exitOK
}
