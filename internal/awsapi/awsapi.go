package awsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// errorSpec is how one AWS error code appears on the wire.
type errorSpec struct {
	status int
	// capitalMessage is true where the SDK decodes "Message" (capital M);
	// the SDK matches message keys by exact case on typed errors.
	capitalMessage bool
	service        bool // Type "Service" rather than "User"
}

var errorSpecs = map[string]errorSpec{
	"ResourceNotFoundException":                     {status: 404, capitalMessage: true},
	"ResourceConflictException":                     {status: 409},
	"ResourceInUseException":                        {status: 400, capitalMessage: true},
	"InvalidParameterValueException":                {status: 400},
	"ValidationException":                           {status: 400},
	"InvalidRequestContentException":                {status: 400},
	"InvalidZipFileException":                       {status: 502, capitalMessage: true, service: true},
	"InvalidRuntimeException":                       {status: 502, capitalMessage: true, service: true},
	"PreconditionFailedException":                   {status: 412},
	"RequestEntityTooLargeException":                {status: 413},
	"RequestTooLargeException":                      {status: 413},
	"TooManyRequestsException":                      {status: 429},
	"UnrecognizedClientException":                   {status: 403},
	"InvalidSignatureException":                     {status: 403},
	"MissingAuthenticationTokenException":           {status: 403},
	"IncompleteSignatureException":                  {status: 403},
	"AccessDeniedException":                         {status: 403},
	"ServiceException":                              {status: 500, capitalMessage: true, service: true},
	"UnsupportedMediaTypeException":                 {status: 415},
	"CodeStorageExceededException":                  {status: 400},
	"ProvisionedConcurrencyConfigNotFoundException": {status: 404},
	"UnknownOperationException":                     {status: 400},
}

// RequestID returns a new AWS-style request id (a UUID).
func RequestID() string { return uuid.NewString() }

// SetCommonHeaders sets the headers every AWS reply carries.
func SetCommonHeaders(w http.ResponseWriter, requestID string) {
	h := w.Header()
	h["X-Amzn-Requestid"] = []string{requestID}
	h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
}

// WriteError renders err as an AWS error response. Errors that are not
// *errdefs.APIError are logged and reported as a generic ServiceException so
// internal text never reaches the caller.
func WriteError(w http.ResponseWriter, log *slog.Logger, requestID string, err error) {
	var ae *errdefs.APIError
	if !errors.As(err, &ae) {
		if log != nil {
			log.Error("internal error", "request_id", requestID, "err", err)
		}
		ae = errdefs.ServiceUnavailable("An internal error occurred (request %s).", requestID)
	}
	spec, ok := errorSpecs[ae.Code]
	if !ok {
		spec = errorSpec{status: 400}
	}
	body := map[string]any{}
	if spec.service {
		body["Type"] = "Service"
	} else {
		body["Type"] = "User"
	}
	if spec.capitalMessage {
		body["Message"] = ae.Message
	} else {
		body["message"] = ae.Message
	}
	if ae.Reason != "" {
		body["Reason"] = ae.Reason
	}
	if ae.RetryAfterSeconds > 0 {
		body["retryAfterSeconds"] = strconv.Itoa(ae.RetryAfterSeconds)
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfterSeconds))
	}
	SetCommonHeaders(w, requestID)
	w.Header().Set("X-Amzn-Errortype", ae.Code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(spec.status)
	_ = json.NewEncoder(w).Encode(body)
}

// WriteJSON writes v as the JSON reply with the given status.
func WriteJSON(w http.ResponseWriter, requestID string, status int, v any) {
	SetCommonHeaders(w, requestID)
	w.Header().Set("Content-Type", "application/json")
	if v == nil {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, nil, requestID, fmt.Errorf("marshal reply: %w", err))
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ReadBody reads at most limit bytes of r's body. A longer body returns
// tooLarge (so each caller chooses the AWS error for its operation).
func ReadBody(r *http.Request, limit int64, tooLarge error) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	if r.ContentLength >= 0 && r.ContentLength <= 1<<20 {
		// The usual case: one allocation of the exact size, where ReadAll
		// would grow a buffer from 512 bytes. Larger bodies grow as their
		// bytes arrive, so a client cannot make Kiln reserve 70 MB up front
		// by declaring it in a header it has not signed yet.
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, errdefs.InvalidRequestContent("Could not read request body.")
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, errdefs.InvalidRequestContent("Could not read request body.")
	}
	if int64(len(b)) > limit {
		return nil, tooLarge
	}
	return b, nil
}

// DecodeJSON unmarshals an API request body into v, answering in AWS's words
// when the body is not JSON of the right shape.
func DecodeJSON(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errdefs.InvalidRequestContent("Could not parse request body into json: Cannot deserialize value of type %s for field %q", te.Type, te.Field)
		}
		return errdefs.InvalidRequestContent("Could not parse request body into json: %s", sanitizeJSONErr(err))
	}
	return nil
}

func sanitizeJSONErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "json: ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Segments splits a raw (still escaped) URL path on "/" and unescapes each
// segment on its own, so "name%3Aalias" stays one segment "name:alias" and an
// escaped "/" inside a segment cannot change routing.
func Segments(rawPath string) ([]string, error) {
	rawPath = strings.Trim(rawPath, "/")
	if rawPath == "" {
		return nil, nil
	}
	parts := strings.Split(rawPath, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, errdefs.Validation("Invalid path segment.")
		}
		parts[i] = u
	}
	return parts, nil
}
