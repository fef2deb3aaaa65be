// Package runtimeapi serves the Lambda Runtime API (2018-06-01) to the one
// runtime process of one sandbox, plus the minimal Extensions API
// (2020-01-01) that runtimes such as aws-lambda-go touch at start-up.
//
// It owns: the per-sandbox invoke channel (an Invoke hands an event to the
// runtime's pending GET /next and waits for its /response or /error), the
// init handshake (first /next or /runtime/init/error), and the wire details
// runtimes depend on: status codes, headers, chunked bodies and trailers,
// large headers, the response size limit.
//
// It must never: run two invocations at once, interpret the function's
// response or error body beyond extracting errorType for logs, enforce
// timeouts or kill processes (the caller cancels the Invoke context and owns
// the process), or allocate per-invoke goroutines on the hot path.
package runtimeapi
