//go:build linux && !cgo

package nsinit

// SmallSupervisor reports whether an isolated sandbox's init is the small C
// init (cgo builds; cinit_cgo.go) rather than this Go one.
const SmallSupervisor = false
