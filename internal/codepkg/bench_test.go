package codepkg

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// benchZip is a ~5 MB (unzipped) package of 300 files in 10 directories,
// half text-like and half incompressible, like a real dependency tree.
func benchZip(b *testing.B) ([]byte, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ents []zent
	var total int64
	for i := range 300 {
		size := 8<<10 + rng.IntN(18<<10)
		data := make([]byte, size)
		if i%2 == 0 {
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			words := []string{"import ", "def ", "return ", "self", "(x)", "\n    ", "value", " = ", "1234", "class "}
			n := 0
			for n < size {
				w := words[rng.IntN(len(words))]
				n += copy(data[n:], w)
			}
		}
		total += int64(size)
		ents = append(ents, file(fmt.Sprintf("pkg%d/mod%03d.py", i%10, i), string(data), 0o644))
	}
	ents = append(ents, file("bootstrap", "#!/bin/sh\n", 0o755))
	return buildZip(b, ents...), total
}

func BenchmarkExtract(b *testing.B) {
	z, total := benchZip(b)
	base := b.TempDir()
	b.SetBytes(total)
	i := 0
	for b.Loop() {
		i++
		if err := Extract(context.Background(), z, filepath.Join(base, fmt.Sprint(i)), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(z))/(1<<20), "zip-MB")
}

func BenchmarkInspect(b *testing.B) {
	z, total := benchZip(b)
	b.SetBytes(total)
	for b.Loop() {
		if _, err := Inspect(z, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
