package codepkg

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"strings"
)

const (
	maxNameLen      = 4096 // PATH_MAX
	maxComponentLen = 255  // NAME_MAX
	maxLinkTarget   = 4096
	maxLinkHops     = 40 // Linux's MAXSYMLINKS

	modeFile = 0o644
	modeExec = 0o755
	modeDir  = 0o755
)

// Info describes a validated deployment package.
type Info struct {
	Sha256       string // base64(SHA-256(zip bytes)) — Lambda's CodeSha256
	Sha256Hex    string // hex, used as the content address on disk
	Size         int64  // zipped bytes — Lambda's CodeSize
	UnzippedSize int64  // sum of declared uncompressed sizes
	Files        int    // entries in the zip, directories included
}

type kind uint8

const (
	kindFile kind = iota
	kindDir
	kindSymlink
)

// entry is one zip member that passed the checks, with its cleaned name.
type entry struct {
	f      *zip.File
	name   string // relative, '/'-separated, no "." or ".." parts, no trailing '/'
	kind   kind
	mode   fs.FileMode // for files: modeFile or modeExec
	target string      // for symlinks
}

// Inspect validates a zip without extracting: readable zip; zipped size ≤
// MaxZipped; declared unzipped total ≤ MaxUnzipped; entry count ≤ MaxFiles; no
// absolute paths, no "..", no NUL, backslashes treated as separators; no
// device, pipe or socket entries; no entry beneath a symlink; symlinks
// relative and resolving inside the root. It reads symlink targets but no
// file contents, so lying sizes and bad checksums surface only in Extract.
func Inspect(zip []byte, lim Limits) (Info, error) {
	info, _, err := inspect(zip, lim.withDefaults())
	return info, err
}

func inspect(data []byte, lim Limits) (Info, []entry, error) {
	var info Info
	if int64(len(data)) > lim.MaxZipped {
		return info, nil, errZippedTooLarge(lim.MaxZipped)
	}
	sum := sha256.Sum256(data)
	info.Sha256 = base64.StdEncoding.EncodeToString(sum[:])
	info.Sha256Hex = hex.EncodeToString(sum[:])
	info.Size = int64(len(data))

	// archive/zip allocates a File for every central-directory header it
	// finds, however many the end record claims; count them first.
	if centralHeaderBound(data) > lim.MaxFiles {
		return info, nil, errUnsafe("too many files", "")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// ErrInsecurePath (GODEBUG zipinsecurepath=0) still returns a
		// usable reader; the checks below say precisely what is wrong.
		return info, nil, errUnreadable()
	}
	if len(zr.File) > lim.MaxFiles {
		return info, nil, errUnsafe("too many files", "")
	}
	info.Files = len(zr.File)

	entries := make([]entry, 0, len(zr.File))
	kinds := make(map[string]kind, len(zr.File))
	links := map[string]string{}
	var total uint64
	for _, f := range zr.File {
		total += f.UncompressedSize64
		if f.UncompressedSize64 > uint64(lim.MaxUnzipped) || total > uint64(lim.MaxUnzipped) {
			return info, nil, errUnzippedTooLarge(lim.MaxUnzipped)
		}
		if f.Flags&0x1 != 0 {
			return info, nil, errUnsafe("encrypted entries are not supported", f.Name)
		}
		if f.Method != zip.Store && f.Method != zip.Deflate {
			return info, nil, errUnsafe("unsupported compression method", f.Name)
		}
		name, isDir, reason := cleanName(f.Name)
		if reason != "" {
			return info, nil, errUnsafe(reason, f.Name)
		}
		if name == "" {
			continue // "./": the root itself
		}
		e := entry{f: f, name: name}
		mode := f.Mode()
		unixMode := hasUnixMode(f)
		switch {
		case isDir || mode.IsDir():
			e.kind = kindDir
		case unixMode && mode&fs.ModeSymlink != 0:
			e.kind = kindSymlink
			target, err := readLink(f)
			if err != nil {
				return info, nil, err
			}
			e.target = target
			links[name] = target
		case unixMode && mode.Type() != 0:
			return info, nil, errUnsafe("unsupported file type", f.Name)
		default:
			e.kind = kindFile
			e.mode = fileMode(f, name, unixMode)
		}
		if prev, dup := kinds[name]; dup {
			if prev == kindDir && e.kind == kindDir {
				continue
			}
			return info, nil, errUnsafe("duplicate entry", f.Name)
		}
		kinds[name] = e.kind
		entries = append(entries, e)
	}
	info.UnzippedSize = int64(total)

	for _, e := range entries {
		// No entry may live beneath a symlink (it would be written through
		// it) or beneath a file.
		for i := 0; i < len(e.name); i++ {
			if e.name[i] != '/' {
				continue
			}
			switch k, ok := kinds[e.name[:i]]; {
			case ok && k == kindSymlink:
				return info, nil, errUnsafe("entry inside a symlinked directory", e.f.Name)
			case ok && k == kindFile:
				return info, nil, errUnsafe("entry inside a file", e.f.Name)
			}
		}
		if e.kind == kindSymlink {
			if reason := checkLink(links, e.name); reason != "" {
				return info, nil, errUnsafe(reason, e.f.Name)
			}
		}
	}
	return info, entries, nil
}

// cleanName turns a zip entry name into a safe relative path. Backslashes
// count as separators: zips made on Windows use them, and treating them as
// plain bytes would let "..\..\x" through to tools that do not.
func cleanName(raw string) (name string, isDir bool, reason string) {
	switch {
	case raw == "":
		return "", false, "empty file name"
	case len(raw) > maxNameLen:
		return "", false, "file name too long"
	case strings.IndexByte(raw, 0) >= 0:
		return "", false, "NUL in file name"
	}
	s := strings.ReplaceAll(raw, `\`, "/")
	if s[0] == '/' || len(s) >= 2 && s[1] == ':' && ('a' <= s[0]|0x20 && s[0]|0x20 <= 'z') {
		return "", false, "absolute path"
	}
	isDir = strings.HasSuffix(s, "/")
	parts := make([]string, 0, strings.Count(s, "/")+1)
	for p := range strings.SplitSeq(s, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", false, "path escapes the root"
		}
		if len(p) > maxComponentLen {
			return "", false, "file name too long"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 && !isDir {
		return "", false, "empty file name"
	}
	return strings.Join(parts, "/"), isDir, ""
}

// hasUnixMode reports whether the entry carries Unix mode bits (made on
// Unix or macOS, with the high 16 bits of the external attributes set).
func hasUnixMode(f *zip.File) bool {
	switch f.CreatorVersion >> 8 {
	case 3, 19: // Unix, macOS
		return f.ExternalAttrs>>16 != 0
	}
	return false
}

// fileMode normalises a regular file's mode to 0644 or 0755. Zips without
// Unix modes (Windows tools, some CI zippers) lose exec bits; a root-level
// bootstrap must still run, so it gets 0755.
func fileMode(f *zip.File, name string, unixMode bool) fs.FileMode {
	if unixMode {
		if f.Mode().Perm()&0o111 != 0 {
			return modeExec
		}
		return modeFile
	}
	if name == "bootstrap" {
		return modeExec
	}
	return modeFile
}

func readLink(f *zip.File) (string, error) {
	if f.UncompressedSize64 > maxLinkTarget {
		return "", errUnsafe("symlink target too long", f.Name)
	}
	rc, err := f.Open()
	if err != nil {
		return "", errUnreadable()
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", errUnreadable()
	}
	switch {
	case len(b) > maxLinkTarget:
		return "", errUnsafe("symlink target too long", f.Name)
	case len(b) == 0:
		return "", errUnsafe("empty symlink target", f.Name)
	case bytes.IndexByte(b, 0) >= 0:
		return "", errUnsafe("NUL in symlink target", f.Name)
	case b[0] == '/':
		return "", errUnsafe("symlink target is absolute", f.Name)
	}
	return string(b), nil
}

// checkLink resolves the symlink named name the way the kernel would, through
// the other symlinks in the zip, and reports a reason if it leaves the root
// at any step or loops. Paths not in the zip are taken as plain directories.
func checkLink(links map[string]string, name string) string {
	stack := strings.Split(name, "/")
	stack = stack[:len(stack)-1] // resolve relative to the link's directory
	queue := splitPath(links[name])
	hops := 1
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "symlink escapes the root"
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		t, ok := links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		if hops++; hops > maxLinkHops {
			return "symlink loop"
		}
		if strings.HasPrefix(t, "/") {
			return "symlink escapes the root"
		}
		stack = stack[:len(stack)-1]
		queue = append(splitPath(t), queue...)
	}
	return ""
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// centralHeaderBound is an upper bound on the central-directory headers
// archive/zip will parse: the central-directory signatures from the earliest
// offset it may start reading at. 0 when there is no end record (archive/zip
// will refuse the file).
func centralHeaderBound(data []byte) int {
	start, ok := centralDirectoryStart(data)
	if !ok {
		return 0
	}
	return bytes.Count(data[start:], []byte("PK\x01\x02"))
}

// centralDirectoryStart finds where archive/zip starts reading the central
// directory, following its own search (end record in the last 1 KiB, then the
// last 65 KiB; zip64 locator; base-offset fix-up). Of the two offsets it may
// pick, the earlier is returned.
func centralDirectoryStart(data []byte) (int64, bool) {
	const eocdLen, loc64Len, eocd64Len = 22, 20, 56
	size := int64(len(data))
	eocd := int64(-1)
	for _, n := range []int64{1024, 65 * 1024} {
		n = min(n, size)
		if p := findEOCD(data[size-n:]); p >= 0 {
			eocd = size - n + int64(p)
			break
		}
		if n == size {
			break
		}
	}
	if eocd < 0 {
		return 0, false
	}
	le := binary.LittleEndian
	b := data[eocd:]
	records, dirSize, dirOff := uint64(le.Uint16(b[10:])), uint64(le.Uint32(b[12:])), uint64(le.Uint32(b[16:]))
	end := eocd
	if records == 0xffff || dirSize == 0xffff || dirOff == 0xffffffff {
		if loc := eocd - loc64Len; loc >= 0 && le.Uint32(data[loc:]) == 0x07064b50 && le.Uint32(data[loc+4:]) == 0 && le.Uint32(data[loc+16:]) == 1 {
			p := le.Uint64(data[loc+8:])
			if p > uint64(size) || uint64(size)-p < eocd64Len || le.Uint32(data[p:]) != 0x06064b50 {
				return 0, false
			}
			dirSize, dirOff = le.Uint64(data[p+40:]), le.Uint64(data[p+48:])
			end = int64(p)
		}
	}
	// archive/zip reads from end-dirSize (base offset + directory offset),
	// which must lie in the file, or from dirOff when that base offset is
	// positive and a header sits at dirOff.
	if dirSize > uint64(end) {
		return 0, false
	}
	start := end - int64(dirSize)
	if start >= size {
		return 0, false
	}
	if dirOff < uint64(start) {
		start = int64(dirOff)
	}
	return start, true
}

// findEOCD finds the end-of-central-directory record in b the way
// archive/zip does: the last signature whose comment fits in b.
func findEOCD(b []byte) int {
	for i := len(b) - 22; i >= 0; i-- {
		if b[i] == 'P' && b[i+1] == 'K' && b[i+2] == 0x05 && b[i+3] == 0x06 {
			n := int(b[i+20]) | int(b[i+21])<<8
			if n+22+i <= len(b) {
				return i
			}
		}
	}
	return -1
}
