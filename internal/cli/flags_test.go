package cli

import (
	"context"
	"flag"
	"reflect"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos []string
		wantQ   string
		wantT   bool
		wantErr bool
	}{
		{"flags first", []string{"--qualifier", "prod", "--tail", "fn", "{}"}, []string{"fn", "{}"}, "prod", true, false},
		{"flags last", []string{"fn", "{}", "--qualifier=prod", "--tail"}, []string{"fn", "{}"}, "prod", true, false},
		{"flags between", []string{"fn", "-tail", "{}", "-qualifier", "1"}, []string{"fn", "{}"}, "1", true, false},
		{"stdin dash is positional", []string{"fn", "-", "--tail"}, []string{"fn", "-"}, "", true, false},
		{"terminator", []string{"--tail", "--", "fn", "--qualifier", "x"}, []string{"fn", "--qualifier", "x"}, "", true, false},
		{"no args", nil, nil, "", false, false},
		{"unknown flag", []string{"fn", "--nope"}, nil, "", false, true},
		{"missing value", []string{"fn", "--qualifier"}, nil, "", false, true},
		{"help", []string{"fn", "--help"}, nil, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(nilWriter{})
			q := fs.String("qualifier", "", "")
			tail := fs.Bool("tail", false, "")
			pos, err := parseInterspersed(fs, tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !reflect.DeepEqual(pos, tt.wantPos) {
				t.Errorf("positional = %q, want %q", pos, tt.wantPos)
			}
			if *q != tt.wantQ || *tail != tt.wantT {
				t.Errorf("qualifier=%q tail=%v, want %q %v", *q, *tail, tt.wantQ, tt.wantT)
			}
		})
	}
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }

// commandsForHelp builds every verb's command so the help of each can be
// checked against its own flag set.
func commandsForHelp() []*command {
	deploy, _ := newDeployCommand()
	invoke, _ := newInvokeCommand()
	rm, _ := newRmCommand()
	logs, _ := newLogsCommand()
	acct, _ := newAccountCreateCommand()
	return []*command{deploy, invoke, newLsCommand(), rm, logs, acct, newVersionCommand()}
}

func TestHelp(t *testing.T) {
	isolate(t)
	tests := []struct {
		args      []string
		wantLines []string
	}{
		{[]string{"deploy", "--help"}, []string{"Usage: kiln deploy NAME PATH --runtime RT --handler H", "--runtime ID", "--handler HANDLER", "--memory MB", "--timeout SECONDS", "--env KEY=VALUE", "--description DESCRIPTION", "--role ARN", "--endpoint-url URL", "--region REGION", "--profile PROFILE"}},
		{[]string{"invoke", "-h"}, []string{"Usage: kiln invoke NAME [JSON|-]", "--qualifier QUALIFIER", "--tail", "--event", "--endpoint-url URL"}},
		{[]string{"ls", "--help"}, []string{"Usage: kiln ls", "--endpoint-url URL", "--profile PROFILE"}},
		{[]string{"rm", "fn", "--help"}, []string{"Usage: kiln rm NAME", "--qualifier VERSION"}},
		{[]string{"logs", "--help"}, []string{"Usage: kiln logs NAME", "--limit N", "--follow"}},
		{[]string{"account", "create", "--help"}, []string{"Usage: kiln account create", "--profile NAME", "--endpoint-url URL", "--region REGION"}},
		{[]string{"account", "--help"}, []string{"Usage: kiln account create"}},
		{[]string{"version", "--help"}, []string{"Usage: kiln version"}},
		{[]string{"help", "invoke"}, []string{"Usage: kiln invoke NAME"}},
		{[]string{"--help"}, []string{"Usage: kiln COMMAND", "deploy", "invoke", "ls", "rm", "logs", "account", "version", "server", "--endpoint-url URL"}},
		{[]string{"help"}, []string{"Usage: kiln COMMAND"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := run(t, context.Background(), "", tt.args...)
			if r.code != exitOK {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q, want empty", r.stderr)
			}
			for _, want := range tt.wantLines {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

// TestHelpListsEveryFlag checks that each flag a verb accepts appears in its
// help, so help and parser cannot drift apart.
func TestHelpListsEveryFlag(t *testing.T) {
	for _, cmd := range commandsForHelp() {
		help := cmd.help()
		if !strings.HasPrefix(help, "Usage: kiln "+cmd.name) {
			t.Errorf("%s help starts %q", cmd.name, help[:min(40, len(help))])
		}
		cmd.fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(help, "--"+f.Name) {
				t.Errorf("%s help lacks --%s", cmd.name, f.Name)
			}
		})
	}
	// account create names its block with --profile, so the common
	// --profile must not be registered twice.
	acct := newCommand("account create", "", "", 0, 0, false)
	if acct.fs.Lookup("profile") != nil {
		t.Error("account create got the common --profile flag")
	}
}

func TestUsageErrors(t *testing.T) {
	isolate(t)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage: kiln COMMAND"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"deploy"}, "missing arguments"},
		{[]string{"deploy", "fn"}, "missing arguments"},
		{[]string{"deploy", "fn", ".", "--handler", "h"}, "--runtime is required"},
		{[]string{"deploy", "fn", ".", "--runtime", "python3.12"}, "--handler is required"},
		{[]string{"deploy", "fn", ".", "x", "--runtime", "r", "--handler", "h"}, `unexpected argument "x"`},
		{[]string{"deploy", "fn", ".", "--runtime", "r", "--handler", "h", "--memory", "-5"}, "--memory"},
		{[]string{"deploy", "fn", ".", "--runtime", "r", "--handler", "h", "--memory", "lots"}, "invalid value"},
		{[]string{"deploy", "fn", ".", "--runtime", "r", "--handler", "h", "--env", "NOEQUALS"}, "not KEY=VALUE"},
		{[]string{"deploy", "fn", ".", "--runtime", "r", "--handler", "h", "--env", "=v"}, "empty KEY"},
		{[]string{"invoke"}, "missing arguments"},
		{[]string{"invoke", "fn", "{}", "extra"}, `unexpected argument "extra"`},
		{[]string{"invoke", "fn", "--tail", "--event"}, "--tail works only"},
		{[]string{"invoke", "fn", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"ls", "extra"}, `unexpected argument "extra"`},
		{[]string{"rm"}, "missing arguments"},
		{[]string{"logs", "fn", "--limit", "0"}, "--limit must be between 1 and 10000"},
		{[]string{"logs", "fn", "--limit", "10001"}, "--limit must be between"},
		{[]string{"account"}, "missing or unknown subcommand"},
		{[]string{"account", "delete"}, "missing or unknown subcommand"},
		{[]string{"account", "create", "--profile", "a]b"}, "cannot contain brackets"},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"ls", "--endpoint-url", "127.0.0.1:9001"}, "invalid --endpoint-url"},
		{[]string{"ls", "--endpoint-url", "ftp://x"}, "invalid --endpoint-url"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := run(t, context.Background(), "", tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty", r.stdout)
			}
		})
	}
}

func TestParseEnvAssignment(t *testing.T) {
	tests := []struct {
		in, k, v string
		wantErr  bool
	}{
		{"A=b", "A", "b", false},
		{"A=", "A", "", false},
		{"URL=http://x/?a=b", "URL", "http://x/?a=b", false},
		{"A", "", "", true},
		{"=b", "", "", true},
		{"A B=c", "", "", true},
	}
	for _, tt := range tests {
		k, v, err := parseEnvAssignment(tt.in)
		if (err != nil) != tt.wantErr || k != tt.k || v != tt.v {
			t.Errorf("parseEnvAssignment(%q) = %q, %q, %v", tt.in, k, v, err)
		}
	}
	ev := envVars{}
	for _, s := range []string{"B=2", "A=1", "B=3"} {
		if err := ev.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := ev.String(); got != "A=1,B=3" {
		t.Errorf("envVars = %q, want later values to win", got)
	}
}

func TestEndpointResolution(t *testing.T) {
	isolate(t)
	var cf commonFlags
	if got := cf.endpointURL(); got != defaultEndpoint {
		t.Errorf("default endpoint = %q", got)
	}
	t.Setenv("KILN_ENDPOINT", "http://127.0.0.1:7777")
	if got := cf.endpointURL(); got != "http://127.0.0.1:7777" {
		t.Errorf("endpoint from env = %q", got)
	}
	cf.endpoint = "http://localhost:1"
	if got := cf.endpointURL(); got != "http://localhost:1" {
		t.Errorf("flag should win, got %q", got)
	}
}

func TestVersion(t *testing.T) {
	r := run(t, context.Background(), "", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "kiln ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version: exit %d stdout %q", r.code, r.stdout)
	}
}
