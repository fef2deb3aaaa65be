package codepkg

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes everything written under dir with one syncfs(2) instead of
// an fsync per file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// renameNoReplace renames without ever replacing an existing dir (a plain
// rename(2) silently replaces an empty directory).
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	switch {
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		// Filesystems without RENAME_NOREPLACE: check, then rename.
		return renameChecked(from, to)
	case errors.Is(err, unix.EEXIST):
		return fs.ErrExist
	}
	return err
}
