//go:build !linux

package nsinit

import "os"

// Main is linux-only; elsewhere an init marker is an error.
func Main() { os.Exit(126) }
