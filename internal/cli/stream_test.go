package cli

import (
	"context"
	"strings"
	"testing"
)

// TestStreamUsage covers what the stream verbs decide before any request;
// test/acceptance runs them against a real server.
func TestStreamUsage(t *testing.T) {
	isolate(t)
	cases := []struct {
		args []string
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{[]string{"stream", "--help"}, exitOK, "put NAME KEY [DATA]"},
		{[]string{"stream"}, exitUsage, "missing or unknown subcommand"},
		{[]string{"stream", "bogus"}, exitUsage, "missing or unknown subcommand"},
		{[]string{"stream", "create", "--help"}, exitOK, "--shards"},
		{[]string{"stream", "create", "s", "--shards", "0"}, exitUsage, "--shards must be between 1 and 64"},
		{[]string{"stream", "create"}, exitUsage, "missing arguments"},
		{[]string{"stream", "put", "s"}, exitUsage, "missing arguments"},
		{[]string{"stream", "read", "s", "--after", "00000000000000000001"}, exitUsage, "--after needs --shard"},
		{[]string{"stream", "read", "s", "--from", "AT_TIMESTAMP"}, exitUsage, "needs --at"},
		{[]string{"stream", "read", "s", "--from", "AT_TIMESTAMP", "--at", "yesterday"}, exitUsage, "neither RFC 3339"},
		{[]string{"stream", "read", "s", "--max", "0"}, exitUsage, "--max must be between"},
		{[]string{"stream", "read", "--help"}, exitOK, "TRIM_HORIZON"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := run(t, context.Background(), "", tc.args...)
			got := r.stderr
			if tc.code == exitOK {
				got = r.stdout
			}
			if r.code != tc.code || !strings.Contains(got, tc.out) {
				t.Fatalf("code %d (want %d)\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
}
