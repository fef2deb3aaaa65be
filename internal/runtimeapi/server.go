package runtimeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxResponseBytes is Lambda's cap on a synchronous response:
// 6 MiB + 100 bytes (RIE's MaxPayloadSize).
const DefaultMaxResponseBytes = 6291556

// maxHeaderBytes leaves room for 1 MiB X-Ray error-cause headers, which Go's
// 1 MiB default would turn into a 431 that makes aws-lambda-go exit.
const maxHeaderBytes = 4 << 20

// shutdownGrace bounds how long Close waits for in-flight replies (the
// extensions' SHUTDOWN event) before it drops every connection.
const shutdownGrace = 250 * time.Millisecond

var (
	// ErrClosed is returned by Invoke and WaitInit once Close has been called.
	ErrClosed = errors.New("runtimeapi: server closed")
	// ErrBusy is returned by Invoke when another Invoke is still running on
	// the same Server; callers must serialise invokes per sandbox.
	ErrBusy = errors.New("runtimeapi: an invocation is already in progress")
	// ErrNotDelivered wraps the reason an abandoned Invoke gives when the
	// runtime never fetched the event: the function did not run, so the
	// caller may safely run it elsewhere (e.g. the runtime exited right
	// after its previous invoke, as aws-lambda-go does after a panic).
	ErrNotDelivered = errors.New("runtimeapi: event was never delivered to the runtime")
)

// Invocation is one event handed to the runtime.
type Invocation struct {
	RequestID          string
	Payload            []byte
	ContentType        string    // default application/json
	Deadline           time.Time // → Lambda-Runtime-Deadline-Ms (epoch ms)
	InvokedFunctionArn string
	// TraceID → Lambda-Runtime-Trace-Id. When empty a fresh unsampled X-Ray
	// id is generated.
	TraceID         string
	ClientContext   string // raw JSON (already base64-decoded); header omitted when empty
	CognitoIdentity string // raw JSON; header omitted when empty
}

// Result is what the runtime reported for an invocation.
type Result struct {
	Payload     []byte // body of /response or /error, byte for byte
	ContentType string
	// FunctionError is set when the runtime reported through /error, through
	// the error trailers of /response, or sent an oversized response. The
	// caller sets X-Amz-Function-Error: Unhandled.
	FunctionError bool
	// ErrorType is for log lines: the Lambda-Runtime-Function-Error-Type
	// header (or trailer) when present, else the body's "errorType".
	ErrorType string
}

// InitError is the runtime's report from POST /runtime/init/error.
type InitError struct {
	ErrorType string
	Payload   []byte // the body the runtime posted, byte for byte
}

func (e *InitError) Error() string {
	return "runtimeapi: runtime init failed: " + e.ErrorType
}

// Config configures a Server.
type Config struct {
	FunctionName, FunctionVersion, Handler string
	MaxResponseBytes                       int          // 0 → DefaultMaxResponseBytes
	Logger                                 *slog.Logger // nil → discard
}

// Init states.
const (
	initPending = iota
	initReady
	initFailed
)

// Server is the Runtime API of one sandbox. Create it with NewServer, run
// Serve on a listener the runtime can reach, and call Close when the sandbox
// goes away.
type Server struct {
	log          *slog.Logger
	maxResp      int
	srv          *http.Server
	registerBody []byte // extension register reply, fixed per function

	busy atomic.Bool // an Invoke is running

	mu          sync.Mutex
	cur         *pending // the open invocation, nil when there is none
	respondedID string   // the last invocation that got its result, until a new one starts
	waiters     int      // GET /next calls blocked waiting for an invocation
	initState   int
	initErr     *InitError
	extensions  map[string]string // identifier → name

	wake       chan struct{} // cap 1: an invocation is waiting for /next
	results    chan *Result  // cap 1: the current Invoke's result
	initDone   chan struct{} // closed on the first /next or init error
	initFailed chan struct{} // closed on init error
	closed     chan struct{} // closed by Close
	closeOnce  sync.Once

	bufPool sync.Pool // *[]byte scratch for chunked bodies
}

// NewServer returns a Server for one sandbox of the given function.
func NewServer(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxResp := cfg.MaxResponseBytes
	if maxResp <= 0 {
		maxResp = DefaultMaxResponseBytes
	}
	s := &Server{
		log:          log,
		maxResp:      maxResp,
		registerBody: registerReply(cfg.FunctionName, cfg.FunctionVersion, cfg.Handler),
		extensions:   make(map[string]string),
		wake:         make(chan struct{}, 1),
		results:      make(chan *Result, 1),
		initDone:     make(chan struct{}),
		initFailed:   make(chan struct{}),
		closed:       make(chan struct{}),
	}
	s.bufPool.New = func() any {
		b := make([]byte, 0, 4096)
		return &b
	}
	s.srv = &http.Server{
		Handler:        s,
		MaxHeaderBytes: maxHeaderBytes,
		// No read or idle timeouts: /next is a long poll and the runtime keeps
		// one connection for the life of the sandbox.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Serve answers the runtime on l until Close. It returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving. Pending GET /next calls are answered 500 and the
// extensions' pending event/next calls get a SHUTDOWN event; a running Invoke
// returns ErrClosed. Close is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if s.srv.Shutdown(ctx) != nil {
			err = s.srv.Close()
		}
	})
	return err
}

// WaitInit waits for the runtime to finish its init: nil once it first calls
// GET /next, an *InitError if it posted /runtime/init/error first, ctx.Err()
// when ctx ends (the caller ends it when the process dies or the init time
// limit passes), ErrClosed after Close.
func (s *Server) WaitInit(ctx context.Context) error {
	select {
	case <-s.initDone:
	default:
		select {
		case <-s.initDone:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return ErrClosed
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.initErr != nil {
		return s.initErr
	}
	return nil
}

// Invoke hands inv to the runtime's pending (or next) GET /next and waits for
// its /response or /error. If ctx ends first, Invoke returns ctx.Err() and
// the invocation is abandoned: later posts for its id get 400
// InvalidRequestID and the next /next waits for a new Invoke. If the runtime
// reports an init error meanwhile, that *InitError is returned.
func (s *Server) Invoke(ctx context.Context, inv *Invocation) (*Result, error) {
	if !s.busy.CompareAndSwap(false, true) {
		return nil, ErrBusy
	}
	defer s.busy.Store(false)
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	p := newPending(inv, time.Now())
	s.mu.Lock()
	s.cur = p
	s.respondedID = ""
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending
	}

	select {
	case res := <-s.results:
		return res, nil
	case <-ctx.Done():
		return s.abandon(p, ctx.Err())
	case <-s.closed:
		return s.abandon(p, ErrClosed)
	case <-s.initFailed:
		return s.abandon(p, s.initErr)
	}
}

// abandon withdraws p unless the runtime's result won the race, in which case
// that result is returned instead of err.
func (s *Server) abandon(p *pending, err error) (*Result, error) {
	s.mu.Lock()
	if s.cur == p {
		s.cur = nil
		delivered := p.delivered
		s.mu.Unlock()
		s.log.Debug("invocation abandoned", "request_id", p.id, "err", err, "delivered", delivered)
		if !delivered {
			return nil, fmt.Errorf("%w: %w", ErrNotDelivered, err)
		}
		return nil, err
	}
	s.mu.Unlock()
	// The handler committed a result under s.mu before we looked, so it is
	// already in the channel.
	return <-s.results, nil
}

// Header names, in canonical form so they can be assigned to an http.Header
// map directly.
const (
	hdrRequestID       = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline        = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionArn     = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID         = "Lambda-Runtime-Trace-Id"
	hdrClientContext   = "Lambda-Runtime-Client-Context"
	hdrCognitoIdentity = "Lambda-Runtime-Cognito-Identity"
	hdrContentType     = "Content-Type"
	hdrContentLength   = "Content-Length"
	hdrErrorType       = "Lambda-Runtime-Function-Error-Type"
	hdrErrorBody       = "Lambda-Runtime-Function-Error-Body"
	hdrResponseMode    = "Lambda-Runtime-Function-Response-Mode"
	hdrExtName         = "Lambda-Extension-Name"
	hdrExtID           = "Lambda-Extension-Identifier"
)

// pending is an invocation with its /next headers rendered once, so that a
// re-delivery costs nothing and the hot path does no formatting.
type pending struct {
	// delivered is set (under Server.mu) once a /next handed the event out.
	delivered bool
	id        string
	payload   []byte
	vals      [8]string
}

const (
	vRequestID = iota
	vDeadline
	vArn
	vTrace
	vClientContext
	vCognito
	vContentType
	vContentLength
)

func newPending(inv *Invocation, now time.Time) *pending {
	p := &pending{id: inv.RequestID, payload: inv.Payload}
	deadline := inv.Deadline
	if deadline.IsZero() {
		// aws-lambda-go fails every invoke without a parseable deadline.
		deadline = now.Add(15 * time.Minute)
	}
	var buf [20]byte
	p.vals[vRequestID] = inv.RequestID
	p.vals[vDeadline] = string(strconv.AppendInt(buf[:0], deadline.UnixMilli(), 10))
	p.vals[vArn] = inv.InvokedFunctionArn
	p.vals[vTrace] = inv.TraceID
	if p.vals[vTrace] == "" {
		p.vals[vTrace] = newTraceID(now)
	}
	p.vals[vClientContext] = inv.ClientContext
	p.vals[vCognito] = inv.CognitoIdentity
	p.vals[vContentType] = inv.ContentType
	if p.vals[vContentType] == "" {
		p.vals[vContentType] = "application/json"
	}
	p.vals[vContentLength] = strconv.Itoa(len(inv.Payload))
	return p
}

func (p *pending) one(i int) []string { return p.vals[i : i+1 : i+1] }

func (p *pending) writeHeaders(h http.Header) {
	h[hdrRequestID] = p.one(vRequestID)
	h[hdrDeadline] = p.one(vDeadline)
	if p.vals[vArn] != "" {
		h[hdrFunctionArn] = p.one(vArn)
	}
	h[hdrTraceID] = p.one(vTrace)
	if p.vals[vClientContext] != "" {
		h[hdrClientContext] = p.one(vClientContext)
	}
	if p.vals[vCognito] != "" {
		h[hdrCognitoIdentity] = p.one(vCognito)
	}
	h[hdrContentType] = p.one(vContentType)
	h[hdrContentLength] = p.one(vContentLength)
}
