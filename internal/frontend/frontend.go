package frontend

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/controlplane"
	"github.com/kiln-dev/kiln/internal/counting"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/logstore"
	"github.com/kiln-dev/kiln/internal/sigv4"
	"github.com/kiln-dev/kiln/internal/tenant"
	"github.com/kiln-dev/kiln/internal/worker"
	"github.com/kiln-dev/kiln/internal/workermgr"
)

// Lambda's payload limits.
const (
	MaxSyncPayload    = 6 * 1024 * 1024 // 6291456 bytes, request and response
	MaxManagementBody = 70167211        // a 50 MB zip, base64-encoded in JSON
	maxClientContext  = 3583
)

// Authenticator checks a request's signature.
type Authenticator interface {
	Verify(ctx context.Context, r *http.Request, body []byte) (sigv4.Identity, error)
}

// Resolver maps an invoke target to a function version.
type Resolver interface {
	Resolve(ctx context.Context, accountID, functionRef, qualifier string, pick float64) (*controlplane.Resolved, error)
}

// Admitter decides admission (counting).
type Admitter interface {
	Acquire(ctx context.Context, r counting.Request) (counting.Token, error)
	Release(t counting.Token)
}

// Sandboxes reserves a sandbox for one invoke (the worker manager).
type Sandboxes interface {
	Reserve(ctx context.Context, spec worker.FunctionSpec) (*workermgr.Lease, error)
}

// LogReader returns a function's recent log lines.
type LogReader interface {
	Tail(account, function string, n int) []logstore.Event
}

// Config wires a Frontend.
type Config struct {
	Auth       Authenticator
	Functions  Resolver
	Counting   Admitter
	Sandboxes  Sandboxes
	Logs       LogReader
	Management http.Handler // the control plane's API
	Async      EventQueue   // nil: Event invokes are refused
	AsyncAPI   http.Handler // Kiln queue and async metrics routes; nil: none
	Logger     *slog.Logger
}

// Frontend is the API's http.Handler.
type Frontend struct {
	cfg Config
	log *slog.Logger
}

// New returns a Frontend.
func New(cfg Config) *Frontend {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Frontend{cfg: cfg, log: log}
}

type route int

const (
	routeManagement route = iota
	routeInvoke
	routeInvokeAsync
	routeLogs
	routeAsyncAPI
)

// classify picks the route from the raw path without allocating.
func classify(method, path string) (route, string) {
	switch method {
	case http.MethodPost:
		if name, ok := between(path, "/2015-03-31/functions/", "/invocations"); ok {
			return routeInvoke, name
		}
		if name, ok := between(path, "/2014-11-13/functions/", "/invoke-async"); ok {
			return routeInvokeAsync, name
		}
	case http.MethodGet:
		if name, ok := between(path, "/2026-01-01/kiln/functions/", "/logs"); ok {
			return routeLogs, name
		}
	}
	if isAsyncAPI(path) {
		return routeAsyncAPI, ""
	}
	return routeManagement, ""
}

// between returns the single path segment between prefix and suffix.
func between(path, prefix, suffix string) (string, bool) {
	if len(path) <= len(prefix)+len(suffix) || !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, suffix) {
		return "", false
	}
	name := path[len(prefix) : len(path)-len(suffix)]
	return name, !strings.Contains(name, "/")
}

// ServeHTTP authenticates and routes every request.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := awsapi.RequestID()
	rawPath := r.URL.EscapedPath()
	rt, rawName := classify(r.Method, rawPath)

	limit := int64(MaxManagementBody)
	var tooLarge error = errdefs.RequestTooLarge("Request must be smaller than %d bytes for the operation", MaxManagementBody)
	if rt == routeInvoke || rt == routeInvokeAsync {
		limit = MaxSyncPayload
		tooLarge = errdefs.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", MaxSyncPayload)
	}
	body, err := awsapi.ReadBody(r, limit, tooLarge)
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	id, err := f.cfg.Auth.Verify(r.Context(), r, body)
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	ctx := tenant.WithAccount(r.Context(), id.AccountID)

	switch rt {
	case routeInvoke:
		f.invoke(ctx, w, r, reqID, id.AccountID, rawName, body)
	case routeInvokeAsync:
		if ref, err := unescapeSegment(rawName); err != nil {
			awsapi.WriteError(w, f.log, reqID, err)
		} else {
			f.enqueue(ctx, w, r, reqID, id.AccountID, ref, body, "", true)
		}
	case routeAsyncAPI:
		if f.cfg.AsyncAPI == nil {
			awsapi.WriteError(w, f.log, reqID, errAsyncUnsupported)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r = r.WithContext(ctx)
		r.Header.Set("X-Amzn-Requestid", reqID)
		f.cfg.AsyncAPI.ServeHTTP(w, r)
	case routeLogs:
		f.logs(ctx, w, r, reqID, id.AccountID, rawName)
	default:
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r = r.WithContext(ctx)
		r.Header.Set("X-Amzn-Requestid", reqID)
		f.cfg.Management.ServeHTTP(w, r)
	}
}

func (f *Frontend) logs(ctx context.Context, w http.ResponseWriter, r *http.Request, reqID, account, rawName string) {
	ref, err := unescapeSegment(rawName)
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	res, err := f.cfg.Functions.Resolve(ctx, account, ref, "", 0)
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	n := 200
	if s := r.URL.Query().Get("Limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 10000 {
			awsapi.WriteError(w, f.log, reqID, errdefs.InvalidParameter("Limit must be between 1 and 10000."))
			return
		}
		n = v
	}
	events := f.cfg.Logs.Tail(account, res.Version.FunctionName, n)
	if events == nil {
		events = []logstore.Event{}
	}
	awsapi.WriteJSON(w, reqID, http.StatusOK, struct{ Events []logstore.Event }{events})
}

func unescapeSegment(raw string) (string, error) {
	segs, err := awsapi.Segments(raw)
	if err != nil || len(segs) != 1 {
		return "", errdefs.Validation("1 validation error detected: Value at 'functionName' failed to satisfy constraint: Member must not be empty")
	}
	return segs[0], nil
}

func (f *Frontend) invoke(ctx context.Context, w http.ResponseWriter, r *http.Request, reqID, account, rawName string, body []byte) {
	ref, err := unescapeSegment(rawName)
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	h := r.Header
	invType := headerValue(h, "X-Amz-Invocation-Type")
	switch invType {
	case "", "RequestResponse", "DryRun", "Event":
	default:
		awsapi.WriteError(w, f.log, reqID, errdefs.Validation(
			"1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", invType))
		return
	}
	logType := headerValue(h, "X-Amz-Log-Type")
	if logType != "" && logType != "None" && logType != "Tail" {
		awsapi.WriteError(w, f.log, reqID, errdefs.Validation(
			"1 validation error detected: Value '%s' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]", logType))
		return
	}
	var clientContext string
	if cc := headerValue(h, "X-Amz-Client-Context"); cc != "" {
		if len(cc) > maxClientContext {
			awsapi.WriteError(w, f.log, reqID, errdefs.InvalidParameter("Client context must be at most %d bytes.", maxClientContext))
			return
		}
		dec, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || !json.Valid(dec) {
			awsapi.WriteError(w, f.log, reqID, errdefs.InvalidRequestContent("Client context must be a valid Base64-encoded JSON object."))
			return
		}
		clientContext = string(dec)
	}
	if len(body) > 0 && !json.Valid(body) {
		awsapi.WriteError(w, f.log, reqID, errdefs.InvalidRequestContent(
			"Could not parse request body into json: Could not parse payload into json: Unexpected character: was expecting a JSON value"))
		return
	}

	if invType == "Event" {
		f.enqueue(ctx, w, r, reqID, account, ref, body, clientContext, false)
		return
	}
	if invType == "DryRun" {
		res, err := f.cfg.Functions.Resolve(ctx, account, ref, queryValue(r, "Qualifier"), rand.Float64())
		if err != nil {
			awsapi.WriteError(w, f.log, reqID, err)
			return
		}
		awsapi.SetCommonHeaders(w, reqID)
		w.Header()["X-Amz-Executed-Version"] = []string{res.ExecutedVersion}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	out, err := f.Invoke(ctx, &InvokeInput{
		RequestID:     reqID,
		AccountID:     account,
		FunctionRef:   ref,
		Qualifier:     queryValue(r, "Qualifier"),
		Payload:       body,
		ClientContext: clientContext,
		Tail:          logType == "Tail",
	})
	if err != nil {
		awsapi.WriteError(w, f.log, reqID, err)
		return
	}
	hdr := w.Header()
	awsapi.SetCommonHeaders(w, reqID)
	hdr["X-Amz-Executed-Version"] = []string{out.ExecutedVersion}
	ct := out.ContentType
	if ct == "" {
		ct = "application/json"
	}
	hdr["Content-Type"] = []string{ct}
	if out.FunctionError != "" {
		hdr["X-Amz-Function-Error"] = []string{out.FunctionError}
	}
	if logType == "Tail" {
		hdr["X-Amz-Log-Result"] = []string{base64.StdEncoding.EncodeToString(out.LogTail)}
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(out.Payload))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Payload)
}

// InvokeInput is one synchronous invocation, already parsed and validated
// at the edge (HTTP here; a poller for async events and event sources).
type InvokeInput struct {
	RequestID     string
	AccountID     string
	FunctionRef   string // name, name:qualifier, or ARN
	Qualifier     string
	Payload       []byte
	ClientContext string // decoded JSON
	Tail          bool
}

// InvokeOutput is what the function returned. A function error is an
// output with FunctionError set, not a Go error.
type InvokeOutput struct {
	ExecutedVersion string
	Payload         []byte
	ContentType     string
	FunctionError   string
	ErrorType       string
	LogTail         []byte
	Cold            bool
	Duration        time.Duration
}

// Invoke runs one synchronous invocation: resolve the version, admit it
// with counting, reserve a sandbox, run, release. Errors are API errors
// (not found, throttled, …); the function's own failures are in the output.
func (f *Frontend) Invoke(ctx context.Context, in *InvokeInput) (*InvokeOutput, error) {
	res, err := f.cfg.Functions.Resolve(ctx, in.AccountID, in.FunctionRef, in.Qualifier, rand.Float64())
	if err != nil {
		return nil, err
	}
	v := res.Version
	tok, err := f.cfg.Counting.Acquire(counting.WithInvoked(ctx, res.InvokedArn, res.ExecutedVersion), counting.Request{AccountID: in.AccountID, Function: v.FunctionName, Reserved: counting.FromState})
	if err != nil {
		return nil, err
	}
	defer f.cfg.Counting.Release(tok)

	// The client hanging up must not abandon a running invoke: Lambda runs
	// it to completion and the sandbox stays consistent.
	ictx := context.WithoutCancel(ctx)
	spec := worker.FunctionSpec{
		Key:             v.Key(),
		AccountID:       in.AccountID,
		FunctionName:    v.FunctionName,
		FunctionVersion: v.Version,
		Runtime:         v.Runtime,
		Handler:         v.Handler,
		MemoryMB:        v.MemorySize,
		TimeoutSec:      v.Timeout,
		EphemeralMB:     v.EphemeralStorage,
		Env:             v.Environment,
		CodeSha256Hex:   v.CodeSha256Hex,
	}
	req := &worker.InvokeRequest{
		RequestID:     in.RequestID,
		Payload:       in.Payload,
		InvokedArn:    res.InvokedArn,
		ClientContext: in.ClientContext,
		Tail:          in.Tail,
	}
	var (
		lease *workermgr.Lease
		out   *worker.InvokeResponse
	)
	// A sandbox whose runtime died before it took the event (it exited after
	// its previous invoke) did not run the function: run it in another one.
	for attempt := 0; ; attempt++ {
		lease, err = f.cfg.Sandboxes.Reserve(ictx, spec)
		if err != nil {
			return nil, err
		}
		out, err = lease.Invoke(ictx, req)
		if err == nil {
			break
		}
		lease.Release(false)
		if !errors.Is(err, worker.ErrSandboxGone) || attempt == 2 {
			return nil, err
		}
	}
	lease.Release(!out.Retire)
	if f.log.Enabled(ctx, slog.LevelDebug) {
		f.log.Debug("invoke", "request_id", in.RequestID, "function", v.FunctionName, "version", v.Version,
			"duration", out.Duration, "cold", lease.Cold, "error", out.ErrorType)
	}
	return &InvokeOutput{
		ExecutedVersion: res.ExecutedVersion,
		Payload:         out.Payload,
		ContentType:     out.ContentType,
		FunctionError:   out.FunctionError,
		ErrorType:       out.ErrorType,
		LogTail:         out.LogTail,
		Cold:            lease.Cold,
		Duration:        out.Duration,
	}, nil
}

func headerValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func queryValue(r *http.Request, key string) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get(key)
}
