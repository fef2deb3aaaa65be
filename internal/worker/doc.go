// Package worker is the host agent: it fetches and caches function code,
// creates sandboxes through a sandbox backend, serves each sandbox its own
// Runtime API, runs invokes with the timeout and memory limit enforced,
// collects each sandbox's log lines (START/END/REPORT and what the function
// printed) and reports host capacity.
//
// It owns: the sandboxes on this host and their Runtime API servers, the
// unpacked-code cache, per-invocation log capture.
//
// It must never: decide which sandbox serves an invoke (that is workermgr),
// admit or throttle (counting), or read control-plane state; everything it
// needs about a function arrives in a FunctionSpec.
package worker
