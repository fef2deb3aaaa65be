package controlplane

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseFunctionRef: whatever parses yields valid parts, and the parts
// rebuilt as a full ARN parse back to the same function and qualifier.
func FuzzParseFunctionRef(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := parseFunctionRef(s)
		if !ok {
			return
		}
		if !isName(r.name) || (r.qualifier != "" && !isQualifier(r.qualifier)) ||
			(r.account != "" && !isAccountID(r.account)) || (r.region != "" && !isRegion(r.region)) {
			t.Fatalf("parse(%q) = %+v: invalid part", s, r)
		}
		region, acct := r.region, r.account
		if region == "" {
			region = "us-east-1"
		}
		if acct == "" {
			acct = "123456789012"
		}
		arn := "arn:aws:lambda:" + region + ":" + acct + ":function:" + r.name
		if r.qualifier != "" {
			arn += ":" + r.qualifier
		}
		r2, ok := parseFunctionRef(arn)
		if len(arn) <= maxRefLen && (!ok || r2.name != r.name || r2.qualifier != r.qualifier || r2.account != acct) {
			t.Fatalf("rebuilt %q parsed as %+v %v, want %+v", arn, r2, ok, r)
		}
	})
}

// fuzzOps are the body-taking operations FuzzManagementBody drives.
var fuzzOps = []struct{ method, path string }{
	{"POST", "/2015-03-31/functions"},
	{"PUT", "/2015-03-31/functions/fz/configuration"},
	{"PUT", "/2015-03-31/functions/fz/code"},
	{"POST", "/2015-03-31/functions/fz/versions"},
	{"POST", "/2015-03-31/functions/fz/aliases"},
	{"PUT", "/2015-03-31/functions/fz/aliases/a1"},
	{"POST", "/2026-01-01/kiln/accounts"},
}

// FuzzManagementBody sends arbitrary JSON bodies through the real Handler:
// the reply is always AWS-shaped JSON and never a server fault.
func FuzzManagementBody(f *testing.F) {
	e := newEnv(f, f.TempDir())
	defer e.Close()
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(f, "fz")); w.Code != 201 {
		f.Fatal(w.Body)
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		o := fuzzOps[int(op)%len(fuzzOps)]
		w := e.do(acctA, o.method, o.path, body)
		checkShape(t, w)
	})
}

// FuzzFunctionPath sends arbitrary raw paths and queries to the Handler.
func FuzzFunctionPath(f *testing.F) {
	e := newEnv(f, f.TempDir())
	defer e.Close()
	if w := e.do(acctA, "POST", "/2015-03-31/functions", createBody(f, "fz")); w.Code != 201 {
		f.Fatal(w.Body)
	}
	methods := []string{"GET", "DELETE", "GET", "GET"}
	f.Fuzz(func(t *testing.T, m uint8, path string) {
		// net/http refuses request lines it cannot parse before any handler runs.
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			return
		}
		req := httptest.NewRequest(methods[int(m)%len(methods)], "http://kiln"+path, nil)
		w := httptest.NewRecorder()
		e.svc.Handler().ServeHTTP(w, req.WithContext(withAcct(req, acctA)))
		checkShape(t, w)
	})
}

func checkShape(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	// InvalidZipFileException is a 502 in Lambda's model; any other 5xx is a fault.
	if w.Code >= 500 && w.Header().Get("X-Amzn-Errortype") != "InvalidZipFileException" {
		t.Fatalf("server fault %d: %s", w.Code, w.Body)
	}
	if w.Code >= 400 {
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("error reply not JSON: %s", w.Body)
		}
		_, lower := m["message"]
		_, upper := m["Message"]
		if w.Header().Get("X-Amzn-Errortype") == "" || lower == upper {
			t.Fatalf("error reply not AWS-shaped: %v %v", w.Header(), m)
		}
	}
}
