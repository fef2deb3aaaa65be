// Package runtimes knows the managed runtimes Kiln accepts and how a runtime
// process is started: which argv runs it, which environment it gets, and the
// bootstraps (python, nodejs) that Kiln ships for them, written against the
// languages' standard libraries and embedded in the binary.
//
// It owns: the runtime name list, the Lambda process environment (reserved
// keys included), the embedded bootstrap sources and their installation into
// a worker's runtime directory.
//
// It must never: start processes, talk to the Runtime API itself, or import
// package runtimeapi (that package tests the bootstraps end to end against
// its server). Bootstraps must never hard-code /var/task: the task root is
// whatever LAMBDA_TASK_ROOT says.
package runtimes
