package runtimes

import (
	"slices"
	"strings"
	"testing"
)

func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("malformed entry %q", kv)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("duplicate key %q in %q", k, env)
		}
		m[k] = v
	}
	return m
}

func TestEnvironment(t *testing.T) {
	py, _ := Lookup("python3.12")
	node, _ := Lookup("nodejs20.x")
	prov, _ := Lookup("provided.al2023")
	base := EnvParams{
		FunctionName:    "fn",
		FunctionVersion: "$LATEST",
		Handler:         "app.handler",
		Region:          "eu-west-1",
		MemoryMB:        256,
		RuntimeAPI:      "127.0.0.1:9001",
		TaskRoot:        "/data/code/abc",
		RuntimeDir:      "/data/runtime",
		LogGroup:        "/aws/lambda/fn",
		LogStream:       "2025/01/02/[$LATEST]abc",
		InitType:        "on-demand",
	}
	common := map[string]string{
		"_HANDLER":                        "app.handler",
		"LAMBDA_TASK_ROOT":                "/data/code/abc",
		"LAMBDA_RUNTIME_DIR":              "/data/runtime",
		"AWS_LAMBDA_FUNCTION_NAME":        "fn",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_REGION":                      "eu-west-1",
		"AWS_DEFAULT_REGION":              "eu-west-1",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/fn",
		"AWS_LAMBDA_LOG_STREAM_NAME":      "2025/01/02/[$LATEST]abc",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_RUNTIME_API":          "127.0.0.1:9001",
		"TZ":                              ":UTC",
		"LANG":                            "en_US.UTF-8",
		"PATH":                            "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		"LD_LIBRARY_PATH":                 "/lib64:/usr/lib64:/data/runtime:/data/runtime/lib:/data/code/abc:/data/code/abc/lib:/opt/lib",
	}
	tests := []struct {
		name   string
		mod    func(p *EnvParams)
		want   map[string]string // in addition to common
		absent []string
	}{
		{
			name:   "provided has no AWS_EXECUTION_ENV",
			mod:    func(p *EnvParams) { p.Runtime = prov },
			absent: []string{"AWS_EXECUTION_ENV", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "_LAMBDA_SERVER_PORT", "AWS_LAMBDA_MAX_CONCURRENCY", "PYTHONUNBUFFERED"},
		},
		{
			name: "python",
			mod:  func(p *EnvParams) { p.Runtime = py },
			want: map[string]string{"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "PYTHONUNBUFFERED": "1"},
		},
		{
			name: "nodejs",
			mod:  func(p *EnvParams) { p.Runtime = node },
			want: map[string]string{"AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x", "NODE_PATH": "/opt/nodejs/node_modules:/data/runtime/nodejs/node_modules:/data/code/abc"},
		},
		{
			name: "credentials and provisioned",
			mod: func(p *EnvParams) {
				p.Runtime = prov
				p.AccessKeyID, p.SecretAccessKey, p.SessionToken = "AKID", "SECRET", "TOKEN"
				p.InitType = "provisioned-concurrency"
			},
			want: map[string]string{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "TOKEN", "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"},
		},
		{
			name: "user vars cannot override reserved keys but may change defaults",
			mod: func(p *EnvParams) {
				p.Runtime = py
				p.User = map[string]string{
					"GREETING":                   "hello=world",
					"AWS_REGION":                 "us-east-1",
					"_HANDLER":                   "evil.handler",
					"AWS_LAMBDA_RUNTIME_API":     "10.0.0.1:1",
					"LAMBDA_TASK_ROOT":           "/",
					"_X_AMZN_TRACE_ID":           "x",
					"AWS_ACCESS_KEY_ID":          "user",
					"_LAMBDA_SERVER_PORT":        "8000",
					"AWS_LAMBDA_MAX_CONCURRENCY": "4",
					"TZ":                         "Europe/Paris",
					"BAD=KEY":                    "x",
					"NUL":                        "a\x00b",
				}
			},
			want:   map[string]string{"GREETING": "hello=world", "TZ": "Europe/Paris", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12"},
			absent: []string{"_X_AMZN_TRACE_ID", "AWS_ACCESS_KEY_ID", "_LAMBDA_SERVER_PORT", "AWS_LAMBDA_MAX_CONCURRENCY", "BAD", "NUL"},
		},
		{
			name: "defaults for empty fields",
			mod: func(p *EnvParams) {
				p.Runtime = prov
				p.MemoryMB, p.FunctionVersion, p.InitType, p.LogGroup = 0, "", "", ""
			},
			want: map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			tt.mod(&p)
			env := Environment(p)
			got := envMap(t, env)
			for k, v := range common {
				if w, ok := tt.want[k]; ok {
					v = w
				}
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := got[k]; ok {
					t.Errorf("%s should be absent, is %q", k, v)
				}
			}
			if !slices.Equal(env, Environment(p)) {
				t.Error("Environment is not deterministic")
			}
		})
	}
}

func TestReservedEnvKeys(t *testing.T) {
	if len(ReservedEnvKeys) != 18 {
		t.Errorf("ReservedEnvKeys has %d keys", len(ReservedEnvKeys))
	}
	for _, k := range ReservedEnvKeys {
		if !IsReservedEnvKey(k) {
			t.Errorf("IsReservedEnvKey(%q) = false", k)
		}
	}
	for _, k := range []string{"PATH", "TZ", "LANG", "MY_VAR", "aws_region", "LD_LIBRARY_PATH", ""} {
		if IsReservedEnvKey(k) {
			t.Errorf("IsReservedEnvKey(%q) = true", k)
		}
	}
}
