package runtimes

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed bootstrap
var bootstraps embed.FS

// Install writes the embedded bootstraps under dir, which becomes the
// runtime dir (LAMBDA_RUNTIME_DIR) given to Command and Environment. It is
// idempotent and safe to run while sandboxes use an older copy: a file whose
// content differs is replaced by rename, never rewritten in place.
func Install(dir string) error {
	// Resolve the interpreters now, so that no cold start pays for it.
	_, _ = lookPython()
	_, _ = lookNode()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runtimes: install: %w", err)
	}
	err := fs.WalkDir(bootstraps, "bootstrap", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("bootstrap", p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := bootstraps.ReadFile(p)
		if err != nil {
			return err
		}
		return writeIfChanged(dst, data)
	})
	if err != nil {
		return fmt.Errorf("runtimes: install: %w", err)
	}
	return nil
}

func writeIfChanged(dst string, data []byte) error {
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm() == 0o644 {
			return nil
		}
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".install-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// Sandboxed runtimes run as other users later: the files must be world-readable.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
