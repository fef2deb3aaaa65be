package worker

import (
	"fmt"
	"time"
)

// FunctionSpec is everything a worker needs to run one function version.
// It is filled by the caller from the control plane's view of the version.
type FunctionSpec struct {
	// Key identifies the version (and its revision); a sandbox serves one Key
	// for its whole life.
	Key             string
	AccountID       string
	FunctionName    string
	FunctionVersion string // "$LATEST" or "N"
	Runtime         string
	Handler         string
	MemoryMB        int
	TimeoutSec      int
	EphemeralMB     int
	Env             map[string]string
	CodeSha256Hex   string
	// Provisioned marks sandboxes created ahead of demand (the runtime sees
	// AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency).
	Provisioned bool
}

// InvokeRequest is one synchronous invocation routed to a sandbox.
type InvokeRequest struct {
	RequestID     string
	Payload       []byte
	ContentType   string
	InvokedArn    string
	ClientContext string // decoded JSON, may be empty
	TraceID       string
	// Tail asks for the invocation's last 4 KB of log in the response.
	Tail bool
}

// InvokeResponse is what the invocation produced. A function error is not a
// Go error: it is a response with FunctionError set.
type InvokeResponse struct {
	Payload       []byte
	ContentType   string
	FunctionError string // "Unhandled" when the function (or its runtime) failed
	ErrorType     string // e.g. "Sandbox.Timedout", for metrics and logs
	LogTail       []byte // raw, at most 4 KB; only when requested
	// Retire is true when the sandbox must not serve another invoke
	// (timeout, crash, init failure); the worker has already destroyed it.
	Retire   bool
	Duration time.Duration
}

// SandboxInfo describes a sandbox that CreateSandbox made.
type SandboxInfo struct {
	ID       string
	WorkerID string
	Key      string
	MemoryMB int
	// InitDuration is how long the runtime took to become ready; zero when
	// init failed (the failure is reported on the first invoke).
	InitDuration time.Duration
}

// Capacity is a host's resource picture for placement.
type Capacity struct {
	WorkerID     string
	Zone         string
	MemoryMB     int // total memory the host offers to sandboxes
	UsedMemoryMB int
	Sandboxes    int
	CachedCode   map[string]bool // code sha256 hex → unpacked here
	Healthy      bool
}

// ErrSandboxGone is returned when an invoke targets a sandbox that no longer
// exists on this worker.
var ErrSandboxGone = fmt.Errorf("sandbox gone")
