package frontend

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// MaxAsyncPayload is Lambda's Event payload limit (1 MB since 2025).
const MaxAsyncPayload = 1048576

// AsyncEvent is an InvocationType=Event invoke, validated and resolved at
// accept time, handed to the durable queue.
type AsyncEvent struct {
	RequestID     string
	AccountID     string
	FunctionName  string // unqualified, as resolved
	Qualifier     string // version or alias as invoked; "" for unqualified
	Payload       []byte
	ClientContext string // decoded JSON
}

// EventQueue stores accepted events durably (package async).
type EventQueue interface {
	// Enqueue returns nil only once the event is durable.
	Enqueue(ctx context.Context, ev *AsyncEvent) error
}

var errAsyncUnsupported = errdefs.InvalidParameter("InvocationType Event (asynchronous invocation) is not enabled on this Kiln server; use RequestResponse.")

// enqueue accepts an async invoke: resolve (404 as for sync), check the
// size, queue durably, then 202. legacy is the 2014 InvokeAsync route,
// which answers {"Status":202}.
func (f *Frontend) enqueue(ctx context.Context, w http.ResponseWriter, r *http.Request, reqID, account, ref string, body []byte, clientContext string, legacy bool) {
	if f.cfg.Async == nil {
		awsapi.WriteError(w, f.log, reqID, errAsyncUnsupported)
		return
	}
	if len(body) > MaxAsyncPayload {
		awsapi.WriteError(w, f.log, reqID, errdefs.RequestTooLarge(
			"%d byte payload is too large for the Event invocation type (limit %d bytes)", len(body), MaxAsyncPayload))
		return
	}
	res, err := f.cfg.Functions.Resolve(ctx, account, ref, queryValue(r, "Qualifier"), rand.Float64())
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	ev := &AsyncEvent{
		RequestID:     reqID,
		AccountID:     account,
		FunctionName:  res.Version.FunctionName,
		Qualifier:     qualifierOf(res.InvokedArn),
		Payload:       body,
		ClientContext: clientContext,
	}
	if err := f.cfg.Async.Enqueue(ctx, ev); err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	if legacy {
		awsapi.WriteJSON(w, reqID, http.StatusAccepted, struct{ Status int }{http.StatusAccepted})
		return
	}
	awsapi.SetCommonHeaders(w, reqID)
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusAccepted)
}

// qualifierOf returns the qualifier of a function ARN, "" if unqualified.
func qualifierOf(arn string) string {
	// arn:aws:lambda:region:account:function:name[:qualifier]
	if strings.Count(arn, ":") == 7 {
		return arn[strings.LastIndexByte(arn, ':')+1:]
	}
	return ""
}

// isAsyncAPI reports whether a path belongs to the async engine's Kiln routes.
func isAsyncAPI(path string) bool {
	return strings.HasPrefix(path, "/2026-01-01/kiln/queues") || strings.HasPrefix(path, "/2026-01-01/kiln/streams") ||
		path == "/2026-01-01/kiln/async/metrics"
}
