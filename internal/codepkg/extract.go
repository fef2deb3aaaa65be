package codepkg

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// copyChunk is how much is decompressed between checks of the byte budget
// and of ctx.
const copyChunk = 256 << 10

// Extract unpacks a deployment package into dir, which must not exist yet.
// It runs Inspect's checks first, then writes into a temporary sibling
// directory through an os.Root (no path can leave it, no open follows a
// symlink), counting the bytes actually written so a zip whose headers lie
// stops at MaxUnzipped. Files are written before any symlink exists; modes
// are 0644 or 0755 for files and 0755 for directories. The result is synced
// and renamed into place atomically, so after a crash dir either does not
// exist or is complete. Extract honours ctx between and within entries.
func Extract(ctx context.Context, zip []byte, dir string, lim Limits) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	lim = lim.withDefaults()
	_, entries, err := inspect(zip, lim)
	if err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("codepkg: extract into %s: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, modeDir); err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	defer root.Close()

	x := extractor{ctx: ctx, root: root, budget: lim.MaxUnzipped, max: lim.MaxUnzipped, buf: make([]byte, copyChunk), dirs: map[string]bool{}}
	// Directories first (explicit ones and every file's parents), then
	// files, then symlinks last: while anything is being written there is
	// no symlink in the tree to be written through.
	for _, e := range entries {
		switch e.kind {
		case kindDir:
			err = x.mkdirAll(e.name)
		default:
			if i := strings.LastIndexByte(e.name, '/'); i >= 0 {
				err = x.mkdirAll(e.name[:i])
			}
		}
		if err != nil {
			return err
		}
	}
	for _, e := range entries {
		if e.kind == kindFile {
			if err := x.writeFile(e); err != nil {
				return err
			}
		}
	}
	// Force directory modes past the umask before symlinks exist, since
	// Root.Chmod follows them.
	for d := range x.dirs {
		if err := root.Chmod(d, modeDir); err != nil {
			return fmt.Errorf("codepkg: extract: %w", err)
		}
	}
	for _, e := range entries {
		if e.kind == kindSymlink {
			if err := root.Symlink(e.target, e.name); err != nil {
				return fmt.Errorf("codepkg: extract: symlink: %w", err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, modeDir); err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	if err := syncFS(tmp); err != nil {
		return fmt.Errorf("codepkg: extract: sync: %w", err)
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		return fmt.Errorf("codepkg: extract into %s: %w", dir, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("codepkg: extract: sync: %w", err)
	}
	return nil
}

type extractor struct {
	ctx    context.Context
	root   *os.Root
	budget int64 // bytes still allowed
	max    int64
	buf    []byte
	dirs   map[string]bool
}

func (x *extractor) mkdirAll(name string) error {
	if x.dirs[name] {
		return nil
	}
	if err := x.root.MkdirAll(name, modeDir); err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	for d := name; ; {
		x.dirs[d] = true
		i := strings.LastIndexByte(d, '/')
		if i < 0 {
			return nil
		}
		d = d[:i]
	}
}

func (x *extractor) writeFile(e entry) (err error) {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	rc, err := e.f.Open()
	if err != nil {
		if errors.Is(err, zip.ErrAlgorithm) {
			return errUnsafe("unsupported compression method", e.f.Name)
		}
		return errUnreadable()
	}
	defer rc.Close()
	// O_EXCL: never reuse or follow anything already at this name.
	out, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("codepkg: extract: %w", cerr)
		}
	}()
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		n, rerr := rc.Read(x.buf)
		if n > 0 {
			if int64(n) > x.budget {
				return errUnzippedTooLarge(x.max)
			}
			x.budget -= int64(n)
			if _, err := out.Write(x.buf[:n]); err != nil {
				return fmt.Errorf("codepkg: extract: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Corrupt data, a CRC mismatch, or more bytes than the header
			// declared (archive/zip stops those with ErrFormat).
			return errUnreadable()
		}
	}
	if err := out.Chmod(e.mode); err != nil {
		return fmt.Errorf("codepkg: extract: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// renameChecked is the portable fallback for an exclusive rename; it leaves a
// tiny race that renameat2(RENAME_NOREPLACE) closes where it exists.
func renameChecked(from, to string) error {
	if _, err := os.Lstat(to); err == nil {
		return fs.ErrExist
	}
	return os.Rename(from, to)
}
