package frontend

import (
	"net/http"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path string
		route        route
		name         string
	}{
		{http.MethodPost, "/2015-03-31/functions/fn/invocations", routeInvoke, "fn"},
		{http.MethodPost, "/2015-03-31/functions/fn%3Alive/invocations", routeInvoke, "fn%3Alive"},
		{http.MethodPost, "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn/invocations", routeInvoke, "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn"},
		{http.MethodGet, "/2015-03-31/functions/fn/invocations", routeManagement, ""},
		{http.MethodPost, "/2015-03-31/functions/a/b/invocations", routeManagement, ""},
		{http.MethodPost, "/2015-03-31/functions//invocations", routeManagement, ""},
		{http.MethodPost, "/2014-11-13/functions/fn/invoke-async", routeInvokeAsync, "fn"},
		{http.MethodGet, "/2026-01-01/kiln/functions/fn/logs", routeLogs, "fn"},
		{http.MethodGet, "/2015-03-31/functions", routeManagement, ""},
	}
	for _, tt := range tests {
		r, name := classify(tt.method, tt.path)
		if r != tt.route || name != tt.name {
			t.Errorf("classify(%s %s) = %v %q; want %v %q", tt.method, tt.path, r, name, tt.route, tt.name)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("/2015-03-31/functions/fn/invocations")
	f.Add("/2015-03-31/functions/invocations")
	f.Add("/2026-01-01/kiln/functions/x/logs")
	f.Fuzz(func(t *testing.T, path string) {
		r, name := classify(http.MethodPost, path)
		if r != routeManagement && (name == "" || strings.Contains(name, "/")) {
			t.Fatalf("classify(%q) = %v with name %q", path, r, name)
		}
	})
}
