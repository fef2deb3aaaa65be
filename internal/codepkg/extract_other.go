//go:build !linux

package codepkg

import (
	"os"
	"path/filepath"
)

// syncFS fsyncs every file and directory under dir; only Linux has syncfs(2).
func syncFS(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink != 0 {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

func renameNoReplace(from, to string) error { return renameChecked(from, to) }
