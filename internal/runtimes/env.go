package runtimes

import (
	"sort"
	"strconv"
	"strings"
)

// ReservedEnvKeys are the environment variables a function's configuration
// may not set (Lambda's list). Treat it as read-only; IsReservedEnvKey does
// not depend on it.
var ReservedEnvKeys = reservedList()

func reservedList() []string {
	return []string{
		"_HANDLER",
		"_X_AMZN_TRACE_ID",
		"AWS_DEFAULT_REGION",
		"AWS_REGION",
		"AWS_EXECUTION_ENV",
		"AWS_LAMBDA_FUNCTION_NAME",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
		"AWS_LAMBDA_FUNCTION_VERSION",
		"AWS_LAMBDA_INITIALIZATION_TYPE",
		"AWS_LAMBDA_LOG_GROUP_NAME",
		"AWS_LAMBDA_LOG_STREAM_NAME",
		"AWS_ACCESS_KEY",
		"AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN",
		"AWS_LAMBDA_RUNTIME_API",
		"LAMBDA_TASK_ROOT",
		"LAMBDA_RUNTIME_DIR",
	}
}

// IsReservedEnvKey reports whether k is one of Lambda's reserved environment
// variables, which users may not set.
func IsReservedEnvKey(k string) bool {
	switch k {
	case "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION",
		"AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
		"AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
		"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR":
		return true
	}
	return false
}

// neverSet are keys that change how runtimes talk to Kiln and so are dropped
// even when a user sets them: _LAMBDA_SERVER_PORT switches aws-lambda-go to
// the go1.x RPC mode and AWS_LAMBDA_MAX_CONCURRENCY makes it run several
// /next loops at once, which a sandbox (one invoke at a time) cannot serve.
func neverSet(k string) bool {
	return k == "_LAMBDA_SERVER_PORT" || k == "AWS_LAMBDA_MAX_CONCURRENCY"
}

// EnvParams describes one runtime process for Environment.
type EnvParams struct {
	Runtime         Runtime
	FunctionName    string
	FunctionVersion string
	Handler         string
	Region          string
	MemoryMB        int
	RuntimeAPI      string // host:port, no scheme
	TaskRoot        string
	RuntimeDir      string
	LogGroup        string
	LogStream       string
	InitType        string // "on-demand" | "provisioned-concurrency"
	// Role credentials; an empty value leaves the variable out.
	AccessKeyID, SecretAccessKey, SessionToken string
	User                                       map[string]string // Environment.Variables
}

// Environment returns the runtime process's environment as KEY=VALUE
// strings: Lambda's platform variables, then defaults a user may override
// (TZ, LANG, PATH, ...), then the user's variables in key order. Reserved
// keys in User are ignored.
func Environment(p EnvParams) []string {
	var e envList
	e.set("_HANDLER", p.Handler)
	e.set("LAMBDA_TASK_ROOT", p.TaskRoot)
	e.set("LAMBDA_RUNTIME_DIR", p.RuntimeDir)
	e.set("AWS_LAMBDA_FUNCTION_NAME", p.FunctionName)
	mem := p.MemoryMB
	if mem <= 0 {
		mem = 128
	}
	e.set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", strconv.Itoa(mem))
	ver := p.FunctionVersion
	if ver == "" {
		ver = "$LATEST"
	}
	e.set("AWS_LAMBDA_FUNCTION_VERSION", ver)
	e.set("AWS_REGION", p.Region)
	e.set("AWS_DEFAULT_REGION", p.Region)
	logGroup := p.LogGroup
	if logGroup == "" && p.FunctionName != "" {
		logGroup = "/aws/lambda/" + p.FunctionName
	}
	e.set("AWS_LAMBDA_LOG_GROUP_NAME", logGroup)
	e.set("AWS_LAMBDA_LOG_STREAM_NAME", p.LogStream)
	if x := p.Runtime.ExecutionEnv(); x != "" {
		e.set("AWS_EXECUTION_ENV", x)
	}
	initType := p.InitType
	if initType == "" {
		initType = "on-demand"
	}
	e.set("AWS_LAMBDA_INITIALIZATION_TYPE", initType)
	e.set("AWS_LAMBDA_RUNTIME_API", p.RuntimeAPI)
	if p.AccessKeyID != "" {
		e.set("AWS_ACCESS_KEY_ID", p.AccessKeyID)
	}
	if p.SecretAccessKey != "" {
		e.set("AWS_SECRET_ACCESS_KEY", p.SecretAccessKey)
	}
	if p.SessionToken != "" {
		e.set("AWS_SESSION_TOKEN", p.SessionToken)
	}

	// Defaults below are Lambda's too, but users may change them.
	e.set("TZ", ":UTC")
	e.set("LANG", "en_US.UTF-8")
	e.set("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
	e.set("LD_LIBRARY_PATH", "/lib64:/usr/lib64:"+p.RuntimeDir+":"+p.RuntimeDir+"/lib:"+p.TaskRoot+":"+p.TaskRoot+"/lib:/opt/lib")
	switch p.Runtime.Family {
	case FamilyPython:
		// print() must reach the log pipe before the invoke's END line.
		e.set("PYTHONUNBUFFERED", "1")
	case FamilyNodejs:
		e.set("NODE_PATH", "/opt/nodejs/node_modules:"+p.RuntimeDir+"/nodejs/node_modules:"+p.TaskRoot)
	}

	keys := make([]string, 0, len(p.User))
	for k := range p.User {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := p.User[k]
		if k == "" || IsReservedEnvKey(k) || neverSet(k) ||
			strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			continue
		}
		e.set(k, v)
	}
	return e.list()
}

// envList keeps the insertion order of keys; setting a key again replaces
// its value in place.
type envList struct {
	keys []string
	vals map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = make(map[string]string, 32)
	}
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}
