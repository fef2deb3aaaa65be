package codepkg

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// zipEpoch is the timestamp ZipDir gives every entry, so the same tree always
// zips to the same bytes (and the same CodeSha256) wherever it was built.
func zipEpoch() time.Time { return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC) }

// ZipDir builds a deployment package from a directory for the CLI's deploy:
// entries in lexical order with fixed timestamps (the same tree gives the
// same bytes), Unix modes kept (exec bits), symlinks stored as symlinks, and
// directories included. If dir itself is a symlink, its target is zipped.
// Sockets, pipes and devices are an error rather than silently left out.
func ZipDir(dir string) ([]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("codepkg: zip %s: %w", dir, err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info() // lstat: links are not followed
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: filepath.ToSlash(rel), Modified: zipEpoch()}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			h.Name += "/"
			h.SetMode(fs.ModeDir | mode.Perm())
			_, err = zw.CreateHeader(h)
			return err
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			h.SetMode(fs.ModeSymlink | 0o777)
			h.Method = zip.Store
			w, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			_, err = io.WriteString(w, target)
			return err
		case mode.IsRegular():
			h.SetMode(mode.Perm())
			h.Method = zip.Deflate
			w, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		default:
			return fmt.Errorf("%s: unsupported file type %v", rel, mode.Type())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("codepkg: zip %s: %w", dir, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("codepkg: zip %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}
