package async

import (
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/tenant"
)

// Kiln routes (SigV4-checked by the frontend, which puts the account in ctx):
//
//	GET    /2026-01-01/kiln/async/metrics
//	POST   /2026-01-01/kiln/queues                      {"QueueName":"q"}
//	GET    /2026-01-01/kiln/queues
//	DELETE /2026-01-01/kiln/queues/{name}
//	POST   /2026-01-01/kiln/queues/{name}/messages      raw body
//	GET    /2026-01-01/kiln/queues/{name}/messages?MaxNumberOfMessages=&WaitTimeSeconds=
const (
	MetricsPath = "/2026-01-01/kiln/async/metrics"
	QueuesPath  = "/2026-01-01/kiln/queues"
	maxMessage  = 256 * 1024 // SQS's message size limit
)

// Handler serves the Kiln async routes.
func (e *Engine) Handler() http.Handler { return http.HandlerFunc(e.serveHTTP) }

func (e *Engine) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := r.Header.Get("X-Amzn-Requestid")
	if reqID == "" {
		reqID = awsapi.RequestID()
	}
	status, reply, err := e.route(r)
	if err != nil {
		awsapi.WriteError(w, e.log, reqID, err)
		return
	}
	if reply == nil {
		awsapi.SetCommonHeaders(w, reqID)
		w.WriteHeader(status)
		return
	}
	awsapi.WriteJSON(w, reqID, status, reply)
}

func unknown(r *http.Request) error {
	return &errdefs.APIError{Class: errdefs.ErrNotFound, Code: "UnknownOperationException", Message: "Unknown operation " + r.Method + " " + r.URL.EscapedPath()}
}

func (e *Engine) route(r *http.Request) (int, any, error) {
	ctx := r.Context()
	account, ok := tenant.Account(ctx)
	if !ok {
		return 0, nil, errdefs.MissingAuthenticationToken()
	}
	segs, err := awsapi.Segments(r.URL.EscapedPath())
	if err != nil {
		return 0, nil, err
	}
	if len(segs) < 3 || segs[0] != "2026-01-01" || segs[1] != "kiln" {
		return 0, nil, unknown(r)
	}
	switch {
	case len(segs) == 4 && segs[2] == "async" && segs[3] == "metrics" && r.Method == http.MethodGet:
		if e.cfg.IsAdmin != nil && !e.cfg.IsAdmin(account) {
			return 0, nil, errdefs.AccessDenied("Account %s is not authorized to perform: kiln:GetAsyncMetrics", account)
		}
		return http.StatusOK, e.Stats(ctx), nil
	case segs[2] == "streams":
		return e.routeStream(r, account, segs) // stream_http.go
	case segs[2] != "queues":
		return 0, nil, unknown(r)
	case len(segs) == 3 && r.Method == http.MethodPost:
		body, err := awsapi.ReadBody(r, 4096, errdefs.RequestTooLarge("Request too large"))
		if err != nil {
			return 0, nil, err
		}
		var in struct{ QueueName string }
		if err := awsapi.DecodeJSON(body, &in); err != nil {
			return 0, nil, err
		}
		q, err := e.CreateQueue(ctx, account, in.QueueName)
		return http.StatusCreated, q, err
	case len(segs) == 3 && r.Method == http.MethodGet:
		qs, err := e.ListQueues(ctx, account)
		return http.StatusOK, struct{ Queues []QueueInfo }{qs}, err
	case len(segs) == 4 && r.Method == http.MethodDelete:
		return http.StatusNoContent, nil, e.DeleteQueue(ctx, account, segs[3])
	case len(segs) == 5 && segs[4] == "messages" && r.Method == http.MethodPost:
		body, err := awsapi.ReadBody(r, maxMessage, errdefs.RequestTooLarge("Message must be shorter than %d bytes.", maxMessage))
		if err != nil {
			return 0, nil, err
		}
		id, err := e.SendMessage(ctx, account, segs[3], body)
		return http.StatusOK, struct{ MessageId string }{id}, err
	case len(segs) == 5 && segs[4] == "messages" && r.Method == http.MethodGet:
		q := r.URL.Query()
		max, err := intParam(q.Get("MaxNumberOfMessages"), 10, 1, 10000)
		if err != nil {
			return 0, nil, err
		}
		wait, err := intParam(q.Get("WaitTimeSeconds"), 0, 0, 20)
		if err != nil {
			return 0, nil, err
		}
		msgs, err := e.ReceiveMessages(ctx, account, segs[3], max, time.Duration(wait)*time.Second)
		return http.StatusOK, struct{ Messages []QueueMessage }{msgs}, err
	}
	return 0, nil, unknown(r)
}

func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errdefs.InvalidParameter("Value %q must be an integer between %d and %d.", s, lo, hi)
	}
	return n, nil
}
