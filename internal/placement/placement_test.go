package placement

import (
	"context"
	"errors"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/worker"
)

type hosts []Host

func (h hosts) Hosts(context.Context) ([]Host, error) { return h, nil }

func TestPlace(t *testing.T) {
	spec := worker.FunctionSpec{MemoryMB: 512, CodeSha256Hex: "abc"}
	tests := []struct {
		name  string
		hosts hosts
		want  string
	}{
		{"packs the fuller host", hosts{
			{WorkerID: "a", MemoryMB: 4096, UsedMemoryMB: 0, Healthy: true},
			{WorkerID: "b", MemoryMB: 4096, UsedMemoryMB: 2048, Healthy: true},
		}, "b"},
		{"skips a full host", hosts{
			{WorkerID: "a", MemoryMB: 4096, UsedMemoryMB: 0, Healthy: true},
			{WorkerID: "b", MemoryMB: 4096, UsedMemoryMB: 3900, Healthy: true},
		}, "a"},
		{"skips an unhealthy host", hosts{
			{WorkerID: "a", MemoryMB: 4096, UsedMemoryMB: 0, Healthy: true},
			{WorkerID: "b", MemoryMB: 4096, UsedMemoryMB: 2048, Healthy: false},
		}, "a"},
		{"prefers cached code", hosts{
			{WorkerID: "a", MemoryMB: 4096, UsedMemoryMB: 1024, Healthy: true, CachedCode: map[string]bool{"abc": true}},
			{WorkerID: "b", MemoryMB: 4096, UsedMemoryMB: 2048, Healthy: true},
		}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Default(tt.hosts).Place(context.Background(), spec)
			if err != nil || got != tt.want {
				t.Fatalf("Place = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	_, err := Default(hosts{{WorkerID: "a", MemoryMB: 256, Healthy: true}}).Place(context.Background(), spec)
	if !errors.Is(err, errdefs.ErrThrottled) {
		t.Fatalf("no capacity: got %v", err)
	}
}
