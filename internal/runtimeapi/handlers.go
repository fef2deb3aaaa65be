package runtimeapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Paths served.
const (
	pathNext          = "/2018-06-01/runtime/invocation/next"
	pathInvocation    = "/2018-06-01/runtime/invocation/"
	pathInitError     = "/2018-06-01/runtime/init/error"
	pathExtRegister   = "/2020-01-01/extension/register"
	pathExtNext       = "/2020-01-01/extension/event/next"
	pathExtInitError  = "/2020-01-01/extension/init/error"
	pathExtExitError  = "/2020-01-01/extension/exit/error"
	pathPing          = "/ping"
	maxExtensionBytes = 1 << 20
)

// Precomputed replies: the hot path must not encode JSON.
var (
	bodyAccepted      = []byte(`{"status":"OK"}`)
	hvJSON            = []string{"application/json"}
	hvAcceptedLength  = []string{strconv.Itoa(len(bodyAccepted))}
	bodyInvalidID     = errorBody("Invalid request ID", "InvalidRequestID")
	bodyInvalidState  = errorBody("State transition from ResponseSent to ResponseSent is not allowed", "InvalidStateTransition")
	bodyInitState     = errorBody("Init error reported outside of the init phase", "InvalidStateTransition")
	bodyTruncated     = errorBody("Truncated HTTP request body", "TruncatedHTTPRequest")
	bodyResponseMode  = errorBody("Invalid function response mode: only streaming is accepted", "InvalidFunctionResponseMode")
	bodyShuttingDown  = errorBody("Runtime API server is shutting down", "ServerShutdown")
	bodyNotFound      = errorBody("Resource not found", "NotFound")
	bodyMethod        = errorBody("Method not allowed", "MethodNotAllowed")
	bodyExtNoName     = errorBody("Empty extension name", "Extension.InvalidExtensionName")
	bodyExtNoID       = errorBody("Missing Lambda-Extension-Identifier header", "Extension.MissingExtensionIdentifier")
	bodyExtUnknownID  = errorBody("Unknown extension identifier", "Extension.InvalidExtensionIdentifier")
	bodyPong          = []byte("pong")
	errRequestTooLong = errors.New("runtimeapi: request body too large")
)

func errorBody(msg, typ string) []byte {
	b, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{msg, typ})
	return b
}

func registerReply(name, version, handler string) []byte {
	b, _ := json.Marshal(struct {
		FunctionName    string `json:"functionName"`
		FunctionVersion string `json:"functionVersion"`
		Handler         string `json:"handler"`
	}{name, version, handler})
	return b
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h[hdrContentType] = hvJSON
	if len(body) == len(bodyAccepted) {
		h[hdrContentLength] = hvAcceptedLength
	} else {
		h[hdrContentLength] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeAccepted(w http.ResponseWriter) { writeJSON(w, http.StatusAccepted, bodyAccepted) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch path {
	case pathNext:
		if allow(w, r, http.MethodGet) {
			s.handleNext(w, r)
		}
		return
	case pathInitError:
		if allow(w, r, http.MethodPost) {
			s.handleInitError(w, r)
		}
		return
	case pathExtRegister:
		if allow(w, r, http.MethodPost) {
			s.handleExtRegister(w, r)
		}
		return
	case pathExtNext:
		if allow(w, r, http.MethodGet) {
			s.handleExtNext(w, r)
		}
		return
	case pathExtInitError, pathExtExitError:
		if allow(w, r, http.MethodPost) {
			s.handleExtError(w, r)
		}
		return
	case pathPing:
		if r.Method == http.MethodHead || allow(w, r, http.MethodGet) {
			w.Header()[hdrContentType] = []string{"text/plain"}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(bodyPong)
		}
		return
	}
	if id, isError, ok := parseInvocationPath(path); ok {
		if allow(w, r, http.MethodPost) {
			s.handleResult(w, r, id, isError)
		}
		return
	}
	writeJSON(w, http.StatusNotFound, bodyNotFound)
}

// allow reports whether r uses method, answering 405 when it does not.
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	methodNotAllowed(w, method)
	return false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, bodyMethod)
}

// parseInvocationPath splits /2018-06-01/runtime/invocation/{id}/response
// and .../{id}/error. The id is one non-empty path segment.
func parseInvocationPath(path string) (id string, isError, ok bool) {
	rest, found := strings.CutPrefix(path, pathInvocation)
	if !found {
		return "", false, false
	}
	switch {
	case strings.HasSuffix(rest, "/response"):
		id = rest[:len(rest)-len("/response")]
	case strings.HasSuffix(rest, "/error"):
		id, isError = rest[:len(rest)-len("/error")], true
	default:
		return "", false, false
	}
	if id == "" || strings.IndexByte(id, '/') >= 0 {
		return "", false, false
	}
	return id, isError, true
}

// handleNext answers GET /runtime/invocation/next: the open invocation at
// once (again, if it was delivered before), or the next one when it comes.
func (s *Server) handleNext(w http.ResponseWriter, r *http.Request) {
	waiting := false // counted in s.waiters
	for {
		s.mu.Lock()
		if waiting {
			s.waiters--
			waiting = false
		}
		if s.initState == initPending {
			s.initState = initReady
			close(s.initDone)
		}
		p := s.cur
		others := s.waiters > 0
		if p != nil {
			p.delivered = true
		}
		if p == nil {
			s.waiters++
			waiting = true
		}
		s.mu.Unlock()
		if p != nil {
			if others {
				// Every /next pending while an invocation is open gets it:
				// pass the wake-up on to the next waiter.
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
			p.writeHeaders(w.Header())
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(p.payload)
			return
		}
		select {
		case <-s.wake:
			continue
		case <-r.Context().Done():
		case <-s.closed:
			writeJSON(w, http.StatusInternalServerError, bodyShuttingDown)
		}
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
		return
	}
}

// handleResult answers POST /runtime/invocation/{id}/response and /error.
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request, id string, isError bool) {
	s.mu.Lock()
	p := s.cur
	responded := s.respondedID
	s.mu.Unlock()
	if p == nil || p.id != id {
		s.rejectID(w, id, responded)
		return
	}
	if !isError {
		if mode := r.Header.Get(hdrResponseMode); mode != "" && !strings.EqualFold(mode, "streaming") {
			writeJSON(w, http.StatusBadRequest, bodyResponseMode)
			return
		}
	}

	body, size, err := s.readBody(r, s.maxResp)
	over := errors.Is(err, errRequestTooLong)
	if err != nil && !over {
		s.log.Warn("runtime result body unreadable", "request_id", id, "err", err)
		writeJSON(w, http.StatusBadRequest, bodyTruncated)
		return
	}

	res := &Result{ContentType: r.Header.Get(hdrContentType)}
	switch {
	case over:
		res.Payload = tooLargeBody(size, s.maxResp)
		res.ContentType = "application/json"
		res.FunctionError = true
		res.ErrorType = "Function.ResponseSizeTooLarge"
	case isError:
		res.Payload = body
		res.FunctionError = true
		res.ErrorType = sanitizeErrorType(r.Header.Get(hdrErrorType))
		if res.ErrorType == "" {
			res.ErrorType = errorTypeOf(body)
		}
	default:
		// aws-lambda-go declares these trailers on every /response and fills
		// them in when the handler's reader fails partway through.
		if t := r.Trailer.Get(hdrErrorType); t != "" {
			res.Payload = trailerErrorBody(t, r.Trailer.Get(hdrErrorBody))
			res.ContentType = "application/json"
			res.FunctionError = true
			res.ErrorType = sanitizeErrorType(t)
		} else {
			res.Payload = body
		}
	}

	s.mu.Lock()
	if s.cur != p {
		// Abandoned, or another post for this id won, while we read the body.
		responded = s.respondedID
		s.mu.Unlock()
		s.rejectID(w, id, responded)
		return
	}
	s.cur = nil
	s.respondedID = id
	s.results <- res // never blocks: one result per invocation, and the channel is drained before the next
	s.mu.Unlock()

	if over {
		s.log.Info("function response too large", "request_id", id, "bytes", size, "limit", s.maxResp)
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(
			"Exceeded maximum allowed payload size ("+strconv.Itoa(s.maxResp)+" bytes).", "RequestEntityTooLarge"))
		return
	}
	writeAccepted(w)
}

func (s *Server) rejectID(w http.ResponseWriter, id, responded string) {
	if id == responded {
		writeJSON(w, http.StatusForbidden, bodyInvalidState)
		return
	}
	s.log.Debug("runtime posted for an unknown request id", "request_id", id)
	writeJSON(w, http.StatusBadRequest, bodyInvalidID)
}

func tooLargeBody(size int64, limit int) []byte {
	return errorBody("Response payload size ("+strconv.FormatInt(size, 10)+
		" bytes) exceeded maximum allowed payload size ("+strconv.Itoa(limit)+" bytes).",
		"Function.ResponseSizeTooLarge")
}

// trailerErrorBody is the invoke result for a /response whose error trailers
// are set: the base64 JSON of the Error-Body trailer, or a minimal error.
func trailerErrorBody(errType, b64 string) []byte {
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil && json.Valid(b) {
			return b
		}
	}
	return errorBody("The function's response stream failed", errType)
}

// readBody reads r's body whole, chunked or not, so that trailers are
// available afterwards. Past limit bytes it keeps reading only to count them
// and returns errRequestTooLong with the total size.
func (s *Server) readBody(r *http.Request, limit int) ([]byte, int64, error) {
	if r.ContentLength > int64(limit) {
		_, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return nil, 0, err
		}
		return nil, r.ContentLength, errRequestTooLong
	}
	if r.ContentLength >= 0 {
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, 0, err
		}
		return b, r.ContentLength, nil
	}
	bp := s.bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			rest, cerr := io.Copy(io.Discard, r.Body)
			size := int64(len(buf)) + rest
			s.putBuf(bp, buf)
			if cerr != nil {
				return nil, 0, cerr
			}
			return nil, size, errRequestTooLong
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.putBuf(bp, buf)
			return nil, 0, err
		}
	}
	out := make([]byte, len(buf))
	copy(out, buf)
	s.putBuf(bp, buf)
	return out, int64(len(out)), nil
}

func (s *Server) putBuf(bp *[]byte, buf []byte) {
	// Keep typical buffers; let a rare multi-megabyte one go to the GC.
	if cap(buf) > 1<<20 {
		return
	}
	*bp = buf[:0]
	s.bufPool.Put(bp)
}

// handleInitError answers POST /runtime/init/error.
func (s *Server) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, size, err := s.readBody(r, s.maxResp)
	if err != nil && !errors.Is(err, errRequestTooLong) {
		writeJSON(w, http.StatusBadRequest, bodyTruncated)
		return
	}
	ie := &InitError{ErrorType: sanitizeErrorType(r.Header.Get(hdrErrorType)), Payload: body}
	if body == nil {
		ie.Payload = tooLargeBody(size, s.maxResp)
	}
	if ie.ErrorType == "" {
		ie.ErrorType = errorTypeOf(body)
	}
	if ie.ErrorType == "" {
		ie.ErrorType = "Runtime.Unknown"
	}
	s.mu.Lock()
	if s.initState != initPending {
		s.mu.Unlock()
		writeJSON(w, http.StatusForbidden, bodyInitState)
		return
	}
	s.initState = initFailed
	s.initErr = ie
	close(s.initFailed)
	close(s.initDone)
	s.mu.Unlock()
	s.log.Info("runtime init error", "error_type", ie.ErrorType)
	writeAccepted(w)
}

// handleExtRegister answers POST /2020-01-01/extension/register.
func (s *Server) handleExtRegister(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxExtensionBytes))
	name := r.Header.Get(hdrExtName)
	if name == "" {
		writeJSON(w, http.StatusForbidden, bodyExtNoName)
		return
	}
	id := uuid.NewString()
	s.mu.Lock()
	s.extensions[id] = name
	s.mu.Unlock()
	s.log.Debug("extension registered", "name", name, "id", id)
	w.Header()[hdrExtID] = []string{id}
	writeJSON(w, http.StatusOK, s.registerBody)
}

// handleExtNext answers GET /2020-01-01/extension/event/next. Kiln sends
// extensions no INVOKE events, so this blocks until the server shuts down.
func (s *Server) handleExtNext(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(hdrExtID)
	if id == "" {
		writeJSON(w, http.StatusForbidden, bodyExtNoID)
		return
	}
	s.mu.Lock()
	_, ok := s.extensions[id]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusForbidden, bodyExtUnknownID)
		return
	}
	select {
	case <-s.closed:
		deadline := time.Now().Add(2 * time.Second).UnixMilli()
		writeJSON(w, http.StatusOK, []byte(`{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":`+
			strconv.FormatInt(deadline, 10)+`}`))
	case <-r.Context().Done():
	}
}

// handleExtError answers the extensions' init/error and exit/error.
func (s *Server) handleExtError(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxExtensionBytes))
	s.log.Info("extension reported an error", "path", r.URL.Path,
		"error_type", sanitizeErrorType(r.Header.Get("Lambda-Extension-Function-Error-Type")))
	writeAccepted(w)
}
