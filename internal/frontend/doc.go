// Package frontend is where every request enters: it authenticates the caller
// (SigV4 → account), routes management calls to the control plane, and runs
// the invoke path — check limits (payload size, function state), confirm
// concurrency with counting, get a sandbox from the worker manager, send the
// request to that sandbox's worker, and shape Lambda's reply.
//
// It owns: no state. Many frontends can run behind a load balancer.
//
// It must never: keep per-function state, wait on consensus per invoke, or
// write an AWS error shape anywhere but through package awsapi.
package frontend
