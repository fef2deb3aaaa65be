//go:build !linux

package linux

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Backend is unavailable off Linux; New always fails.
type Backend struct{}

// New fails: the linux backend needs Linux.
func New(Config) (*Backend, error) {
	return nil, fmt.Errorf("sandbox/linux: %w on this OS", errors.ErrUnsupported)
}

func (b *Backend) Name() string                       { return Name }
func (b *Backend) Capabilities() sandbox.Capabilities { return sandbox.Capabilities{} }
func (b *Backend) CgroupVersion() int                 { return 0 }
func (b *Backend) Close() error                       { return nil }
func (b *Backend) Cleanup(context.Context) error      { return nil }
func (b *Backend) Create(context.Context, sandbox.Spec) (sandbox.Sandbox, error) {
	return nil, errors.ErrUnsupported
}
