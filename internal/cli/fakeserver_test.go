package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/sigv4"
)

// BOUNDARY FAKE OF THE KILN SERVER.
//
// fakeKiln stands in for `kiln server` at the HTTP boundary so the client's
// requests can be tested before the server exists; the lead's end-to-end
// tests against a real server replace it for behaviour. It is real where it
// matters to the client: every request's SigV4 signature is verified by
// internal/sigv4's Verifier, error replies are rendered by internal/awsapi
// (the server's own error writer), and success replies are Lambda JSON
// recorded in testdata/lambda/.

const (
	userKey      = "AKIDKILNUSER"
	userSecret   = "user/secret+key"
	userAccount  = "111122223333"
	adminKey     = "AKIDKILNADMIN"
	adminSecret  = "admin/secret+key"
	adminAccount = "000000000001"
	fakeRegion   = "us-east-1"
)

// fakeKeys is the fake's key store.
type fakeKeys map[string][2]string // access key id → {secret, account}

func (k fakeKeys) LookupKey(_ context.Context, id string) (string, string, error) {
	v, ok := k[id]
	if !ok {
		return "", "", errdefs.ResourceNotFound("access key %s", id)
	}
	return v[0], v[1], nil
}

// route answers one "METHOD /raw/path"; n counts earlier hits of the route.
type route func(w http.ResponseWriter, r *http.Request, body []byte, id sigv4.Identity, n int)

type seenRequest struct {
	method, path, query string
	header              http.Header
	body                []byte
	account             string
}

type fakeKiln struct {
	t        *testing.T
	srv      *httptest.Server
	verifier *sigv4.Verifier

	mu     sync.Mutex
	routes map[string]route
	hits   map[string]int
	seen   []seenRequest
}

func newFakeKiln(t *testing.T, routes map[string]route) *fakeKiln {
	return startFakeKiln(t, routes, httptest.NewServer)
}

// newFakeKilnTLS serves https with httptest's self-signed certificate.
func newFakeKilnTLS(t *testing.T, routes map[string]route) *fakeKiln {
	return startFakeKiln(t, routes, httptest.NewTLSServer)
}

func startFakeKiln(t *testing.T, routes map[string]route, start func(http.Handler) *httptest.Server) *fakeKiln {
	t.Helper()
	f := &fakeKiln{
		t:      t,
		routes: routes,
		hits:   map[string]int{},
		verifier: sigv4.NewVerifier(fakeRegion, "lambda", fakeKeys{
			userKey:  {userSecret, userAccount},
			adminKey: {adminSecret, adminAccount},
		}, time.Now),
	}
	f.srv = start(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKiln) serve(w http.ResponseWriter, r *http.Request) {
	reqID := awsapi.RequestID()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		awsapi.WriteError(w, nil, reqID, err)
		return
	}
	id, err := f.verifier.Verify(r.Context(), r, body)
	key := r.Method + " " + r.URL.EscapedPath()
	f.mu.Lock()
	f.seen = append(f.seen, seenRequest{
		method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery,
		header: r.Header.Clone(), body: body, account: id.AccountID,
	})
	rt, ok := f.routes[key]
	n := f.hits[key]
	f.hits[key]++
	f.mu.Unlock()
	if err != nil {
		awsapi.WriteError(w, nil, reqID, err)
		return
	}
	if !ok {
		f.t.Errorf("fake kiln: unexpected request %s", key)
		awsapi.WriteError(w, nil, reqID, &errdefs.APIError{Class: errdefs.ErrInvalid, Code: "UnknownOperationException", Message: "Unknown operation " + key})
		return
	}
	awsapi.SetCommonHeaders(w, reqID)
	rt(w, r, body, id, n)
}

// requests returns what the fake received, in order.
func (f *fakeKiln) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

// url is the endpoint to pass as --endpoint-url.
func (f *fakeKiln) url() string { return f.srv.URL }

// recorded answers with a recorded reply from testdata/lambda.
func recorded(status int, file string) route {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, _ int) {
		writeRecorded(w, status, file)
	}
}

func writeRecorded(w http.ResponseWriter, status int, file string) {
	b, err := os.ReadFile(filepath.Join(testdataDir, "lambda", file))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// jsonReply answers with status and a literal JSON body.
func jsonReply(status int, body string) route {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// apiError answers with err rendered as the server renders errors.
func apiError(err *errdefs.APIError) route {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte, _ sigv4.Identity, _ int) {
		awsapi.WriteError(w, nil, awsapi.RequestID(), err)
	}
}

// testdataDir is absolute because tests change the working directory.
var testdataDir = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "testdata")
}()

// asUser sets environment credentials of the fake's ordinary account.
func asUser(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", userKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", userSecret)
}

func asAdmin(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", adminKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", adminSecret)
}
