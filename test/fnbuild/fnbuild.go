// Package fnbuild builds the Go Lambda functions (aws-lambda-go) that tests
// deploy, the way a user would: `go build` with CGO off, then a zip with
// the binary as `bootstrap`. A go build costs about a second, so each
// package's zip is built once per test binary.
package fnbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/internal/codepkg"
)

// Binary builds the Go package at srcDir into outDir/bootstrap and returns
// the binary's path.
func Binary(tb testing.TB, srcDir, outDir string) string {
	tb.Helper()
	boot, err := build(srcDir, outDir)
	if err != nil {
		tb.Fatal(err)
	}
	return boot
}

func build(srcDir, outDir string) (string, error) {
	boot := filepath.Join(outDir, "bootstrap")
	cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", boot, srcDir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build go function %s: %v\n%s", srcDir, err, out)
	}
	return boot, nil
}

type zipResult struct {
	once sync.Once
	zip  []byte
	err  error
}

var zips sync.Map // absolute srcDir → *zipResult

// Zip returns the deployment package of the Go function at srcDir: its
// binary as `bootstrap`, zipped. Built once per test binary.
func Zip(tb testing.TB, srcDir string) []byte {
	tb.Helper()
	abs, err := filepath.Abs(srcDir)
	if err != nil {
		tb.Fatal(err)
	}
	v, _ := zips.LoadOrStore(abs, &zipResult{})
	r := v.(*zipResult)
	r.once.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-fn-")
		if err != nil {
			r.err = err
			return
		}
		defer os.RemoveAll(dir)
		if _, r.err = build(abs, dir); r.err != nil {
			return
		}
		r.zip, r.err = codepkg.ZipDir(dir)
	})
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.zip
}
