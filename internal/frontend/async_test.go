package frontend

import (
	"net/http"
	"testing"
)

func TestAsyncRoutes(t *testing.T) {
	cases := []struct {
		method, path string
		want         route
	}{
		{http.MethodPost, "/2026-01-01/kiln/queues", routeAsyncAPI},
		{http.MethodGet, "/2026-01-01/kiln/queues/q/messages", routeAsyncAPI},
		{http.MethodDelete, "/2026-01-01/kiln/queues/q", routeAsyncAPI},
		{http.MethodGet, "/2026-01-01/kiln/async/metrics", routeAsyncAPI},
		{http.MethodGet, "/2026-01-01/kiln/functions/f/logs", routeLogs},
		{http.MethodGet, "/2019-09-25/functions/f/event-invoke-config", routeManagement},
	}
	for _, tc := range cases {
		if got, _ := classify(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s → %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestQualifierOf(t *testing.T) {
	cases := map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:function:f":         "",
		"arn:aws:lambda:us-east-1:123456789012:function:f:prod":    "prod",
		"arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST": "$LATEST",
		"arn:aws:lambda:us-east-1:123456789012:function:f:7":       "7",
	}
	for arn, want := range cases {
		if got := qualifierOf(arn); got != want {
			t.Errorf("qualifierOf(%s) = %q, want %q", arn, got, want)
		}
	}
}
