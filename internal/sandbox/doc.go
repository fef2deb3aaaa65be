// Package sandbox defines what an execution environment backend is: the Spec
// a worker asks for, the Sandbox it gets back (start, wait, stop, read usage,
// delete) and the Backend that makes them. Implementations live in
// subpackages (linux now, microvm later) and must all pass the conformance
// suite in package sandboxtest.
//
// It owns: the backend contract, its shared value types and sentinel errors.
//
// It must never: import a backend, know about functions, invokes, the Runtime
// API or placement, or decide policy (which limits a function gets is the
// worker's call; a backend only enforces what the Spec says).
package sandbox
