package async

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Kiln stream routes (SigV4-checked by the frontend), Kinesis field names:
//
//	POST   /2026-01-01/kiln/streams                   {"StreamName":"s","ShardCount":1}
//	GET    /2026-01-01/kiln/streams
//	GET    /2026-01-01/kiln/streams/{name}            DescribeStream (with shards)
//	DELETE /2026-01-01/kiln/streams/{name}
//	POST   /2026-01-01/kiln/streams/{name}/records    {"PartitionKey":"k","Data":"<base64>"}
//	GET    /2026-01-01/kiln/streams/{name}/shards/{shardId}/records?ShardIteratorType=&StartingSequenceNumber=&Timestamp=&Limit=&WaitTimeSeconds=
const StreamsPath = "/2026-01-01/kiln/streams"

// createStreamInput is the CreateStream body.
type createStreamInput struct {
	StreamName string `json:"StreamName"`
	ShardCount *int   `json:"ShardCount"`
}

// putRecordInput is the PutRecord body; Data is base64, as in Kinesis.
type putRecordInput struct {
	PartitionKey string `json:"PartitionKey"`
	Data         []byte `json:"Data"`
}

// decodeCreateStream parses a CreateStream body (ShardCount defaults to 1).
func decodeCreateStream(body []byte) (name string, shards int, err error) {
	var in createStreamInput
	if err := awsapi.DecodeJSON(body, &in); err != nil {
		return "", 0, err
	}
	shards = 1
	if in.ShardCount != nil {
		shards = *in.ShardCount
	}
	return in.StreamName, shards, nil
}

// decodePutRecord parses a PutRecord body.
func decodePutRecord(body []byte) (putRecordInput, error) {
	var in putRecordInput
	if err := json.Unmarshal(body, &in); err != nil {
		return in, &errdefs.APIError{Class: errdefs.ErrInvalid, Code: "SerializationException", Message: "Could not parse the request body: " + err.Error()}
	}
	return in, nil
}

func (e *Engine) routeStream(r *http.Request, account string, segs []string) (int, any, error) {
	ctx := r.Context()
	switch {
	case len(segs) == 3 && r.Method == http.MethodPost:
		body, err := awsapi.ReadBody(r, 4096, errdefs.RequestTooLarge("Request too large"))
		if err != nil {
			return 0, nil, err
		}
		name, shards, err := decodeCreateStream(body)
		if err != nil {
			return 0, nil, err
		}
		s, err := e.CreateStream(ctx, account, name, shards)
		return http.StatusCreated, s, err
	case len(segs) == 3 && r.Method == http.MethodGet:
		ss, err := e.ListStreams(ctx, account)
		return http.StatusOK, struct{ Streams []StreamInfo }{ss}, err
	case len(segs) == 4 && r.Method == http.MethodGet:
		s, err := e.DescribeStream(ctx, account, segs[3])
		return http.StatusOK, struct{ StreamDescription StreamInfo }{s}, err
	case len(segs) == 4 && r.Method == http.MethodDelete:
		return http.StatusNoContent, nil, e.DeleteStream(ctx, account, segs[3])
	case len(segs) == 5 && segs[4] == "records" && r.Method == http.MethodPost:
		// base64 of 1 MiB plus the key and the JSON around them.
		body, err := awsapi.ReadBody(r, MaxRecordData*4/3+8192, errdefs.RequestTooLarge("Record data must be at most %d bytes.", MaxRecordData))
		if err != nil {
			return 0, nil, err
		}
		in, err := decodePutRecord(body)
		if err != nil {
			return 0, nil, err
		}
		res, err := e.PutRecord(ctx, account, segs[3], in.PartitionKey, in.Data)
		return http.StatusOK, res, err
	case len(segs) == 7 && segs[4] == "shards" && segs[6] == "records" && r.Method == http.MethodGet:
		q := r.URL.Query()
		limit, err := intParam(q.Get("Limit"), 100, 1, maxGetRecords)
		if err != nil {
			return 0, nil, err
		}
		wait, err := intParam(q.Get("WaitTimeSeconds"), 0, 0, 20)
		if err != nil {
			return 0, nil, err
		}
		pos := Position{Type: q.Get("ShardIteratorType"), SequenceNumber: q.Get("StartingSequenceNumber")}
		if ts := q.Get("Timestamp"); ts != "" {
			sec, err := strconv.ParseFloat(ts, 64)
			if err != nil {
				return 0, nil, errdefs.InvalidParameter("Timestamp %q must be epoch seconds.", ts)
			}
			pos.Timestamp = time.UnixMilli(int64(sec * 1000))
		}
		recs, next, err := e.GetRecords(ctx, account, segs[3], segs[5], pos, limit, time.Duration(wait)*time.Second)
		return http.StatusOK, struct {
			Records            []StreamRecord
			NextSequenceNumber string `json:",omitempty"`
		}{recs, next}, err
	}
	return 0, nil, unknown(r)
}
