package codepkg

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	msgUnreadable = "Could not unzip uploaded file. Please check your file, then try to upload again."
	codeInvalid   = "InvalidParameterValueException"
	codeZip       = "InvalidZipFileException"
	codeTooLarge  = "RequestEntityTooLargeException"
)

type rejectCase struct {
	name string
	zip  func(t *testing.T) []byte
	lim  Limits
	code string
	msg  string
	// extractOnly: Inspect accepts it (headers look fine); Extract must not.
	extractOnly bool
}

func rejectCases() []rejectCase {
	z := func(ents ...zent) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return buildZip(t, ents...) }
	}
	raw := func(b []byte) func(t *testing.T) []byte { return func(*testing.T) []byte { return b } }
	return []rejectCase{
		{name: "not a zip", zip: raw([]byte("hello, world")), code: codeInvalid, msg: msgUnreadable},
		{name: "empty input", zip: raw(nil), code: codeInvalid, msg: msgUnreadable},
		{name: "truncated", zip: func(t *testing.T) []byte {
			b := buildZip(t, file("a", "aaaa", 0o644))
			return b[:len(b)-10]
		}, code: codeInvalid, msg: msgUnreadable},
		{name: "zipped too large", zip: z(file("a", strings.Repeat("x", 100), 0o644)), lim: Limits{MaxZipped: 50},
			code: codeTooLarge, msg: "Zipped size must be smaller than 50 bytes"},
		{name: "declared unzipped too large", zip: z(file("a", strings.Repeat("x", 600), 0o644), file("b", strings.Repeat("y", 600), 0o644)),
			lim: Limits{MaxUnzipped: 1000}, code: codeInvalid, msg: "Unzipped size must be smaller than 1000 bytes"},
		{name: "too many files", zip: z(file("a", "", 0o644), file("b", "", 0o644), file("c", "", 0o644)), lim: Limits{MaxFiles: 2},
			code: codeZip, msg: "Could not unzip uploaded file: too many files"},
		{name: "zip slip", zip: z(file("../evil", "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: path escapes the root: '../evil'"},
		{name: "zip slip in the middle", zip: z(file("a/../../evil", "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: path escapes the root: 'a/../../evil'"},
		{name: "zip slip with backslashes", zip: z(noMode(`..\..\evil`, "x")), code: codeZip, msg: `Could not unzip uploaded file: path escapes the root: '..\..\evil'`},
		{name: "absolute path", zip: z(file("/etc/x", "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: absolute path: '/etc/x'"},
		{name: "windows drive path", zip: z(noMode(`C:\Windows\x`, "x")), code: codeZip, msg: `Could not unzip uploaded file: absolute path: 'C:\Windows\x'`},
		{name: "backslash absolute", zip: z(noMode(`\etc\x`, "x")), code: codeZip, msg: "Could not unzip uploaded file: absolute path…"},
		{name: "NUL in name", zip: z(file("a\x00b", "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: NUL in file name: 'a?b'"},
		{name: "component too long", zip: z(file(strings.Repeat("n", 256), "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: file name too long: '" + strings.Repeat("n", 64) + "...'"},
		{name: "name too long", zip: z(file(strings.Repeat("d/", 2049)+"f", "x", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: file name too long…"},
		{name: "symlink to /etc/passwd", zip: z(link("passwd", "/etc/passwd")), code: codeZip, msg: "Could not unzip uploaded file: symlink target is absolute: 'passwd'"},
		{name: "symlink up and out", zip: z(link("a/b/up", "../../../etc")), code: codeZip, msg: "Could not unzip uploaded file: symlink escapes the root: 'a/b/up'"},
		{name: "symlink chain escaping", zip: z(link("x/l1", ".."), link("l2", "x/l1/..")), code: codeZip, msg: "Could not unzip uploaded file: symlink escapes the root: 'l2'"},
		{name: "symlink chain via dir link", zip: z(link("d", "a/b"), dir("a/b/"), link("e", "d/../../..")), code: codeZip, msg: "Could not unzip uploaded file: symlink escapes the root: 'e'"},
		{name: "symlink loop", zip: z(link("a", "b"), link("b", "a")), code: codeZip, msg: "Could not unzip uploaded file: symlink loop…"},
		{name: "empty symlink", zip: z(link("a", "")), code: codeZip, msg: "Could not unzip uploaded file: empty symlink target: 'a'"},
		{name: "file through symlink", zip: z(link("lib", "real"), dir("real/"), file("lib/x", "x", 0o644)),
			code: codeZip, msg: "Could not unzip uploaded file: entry inside a symlinked directory: 'lib/x'"},
		{name: "file through escaping symlink", zip: z(link("lib", "/etc"), file("lib/cron", "x", 0o644)),
			code: codeZip, msg: "Could not unzip uploaded file: symlink target is absolute: 'lib'"},
		{name: "file through symlink listed first", zip: z(file("lib/x", "x", 0o644), link("lib", "real")),
			code: codeZip, msg: "Could not unzip uploaded file: entry inside a symlinked directory: 'lib/x'"},
		{name: "duplicate file", zip: z(file("a", "1", 0o644), file("./a", "2", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: duplicate entry: './a'"},
		{name: "file then dir of the same name", zip: z(file("a", "1", 0o644), dir("a/")), code: codeZip, msg: "Could not unzip uploaded file: duplicate entry: 'a/'"},
		{name: "entry inside a file", zip: z(file("a", "1", 0o644), file("a/b", "2", 0o644)), code: codeZip, msg: "Could not unzip uploaded file: entry inside a file: 'a/b'"},
		{name: "device entry", zip: z(zent{name: "dev", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}), code: codeZip, msg: "Could not unzip uploaded file: unsupported file type: 'dev'"},
		{name: "named pipe", zip: z(zent{name: "fifo", mode: fs.ModeNamedPipe | 0o644}), code: codeZip, msg: "Could not unzip uploaded file: unsupported file type: 'fifo'"},
		{name: "encrypted entry", zip: func(t *testing.T) []byte {
			h := &zip.FileHeader{Name: "secret", Method: zip.Store, Flags: 0x1, CompressedSize64: 3, UncompressedSize64: 3}
			return buildZip(t, zent{raw: h, rawData: []byte("abc")})
		}, code: codeZip, msg: "Could not unzip uploaded file: encrypted entries are not supported: 'secret'"},
		{name: "unknown compression", zip: func(t *testing.T) []byte {
			h := &zip.FileHeader{Name: "lzma", Method: 14, CompressedSize64: 3, UncompressedSize64: 3}
			return buildZip(t, zent{raw: h, rawData: []byte("abc")})
		}, code: codeZip, msg: "Could not unzip uploaded file: unsupported compression method: 'lzma'"},
		{name: "long hostile name is cut and sanitised", zip: z(file("../\x1b[31m"+strings.Repeat("é", 100), "x", 0o644)), code: codeZip,
			msg: "Could not unzip uploaded file: path escapes the root: '../?[31m" + strings.Repeat("?", 64-8) + "...'"},
		// Headers that lie: Inspect cannot see these without inflating.
		{name: "deflate bomb with lying size", zip: func(t *testing.T) []byte {
			return buildZip(t, file("ok", "fine", 0o644), lyingBomb(t, "bomb", 1000, 20<<20))
		}, lim: Limits{MaxUnzipped: 1 << 20}, code: codeInvalid, msg: msgUnreadable, extractOnly: true},
		{name: "stored entry with lying size", zip: func(t *testing.T) []byte {
			return buildZip(t, storedLiar("liar", 10, bytes.Repeat([]byte("z"), 5000)))
		}, code: codeInvalid, msg: msgUnreadable, extractOnly: true},
		{name: "bad checksum", zip: func(t *testing.T) []byte {
			h := &zip.FileHeader{Name: "crc", Method: zip.Store, CRC32: 12345, CompressedSize64: 3, UncompressedSize64: 3}
			return buildZip(t, zent{raw: h, rawData: []byte("abc")})
		}, code: codeInvalid, msg: msgUnreadable, extractOnly: true},
	}
}

func TestInspectRejects(t *testing.T) {
	for _, tc := range rejectCases() {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(tc.zip(t), tc.lim)
			if tc.extractOnly {
				if err != nil {
					t.Fatalf("Inspect: %v (headers alone look valid)", err)
				}
				return
			}
			checkErr(t, err, tc.code, tc.msg)
		})
	}
}

func TestExtractRejects(t *testing.T) {
	for _, tc := range rejectCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dst := filepath.Join(base, "out")
			err := Extract(context.Background(), tc.zip(t), dst, tc.lim)
			checkErr(t, err, tc.code, tc.msg)
			assertOnlyChildren(t, base)
		})
	}
}

func checkErr(t *testing.T, err error, code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %s %q", code, msg)
	}
	ae := apiErr(t, err)
	if ae.Code != code {
		t.Fatalf("code = %s (%v), want %s", ae.Code, err, code)
	}
	if p, ok := strings.CutSuffix(msg, "…"); ok {
		if !strings.HasPrefix(ae.Message, p) {
			t.Fatalf("message = %q, want prefix %q", ae.Message, p)
		}
	} else if ae.Message != msg {
		t.Fatalf("message = %q\nwant      %q", ae.Message, msg)
	}
}

// assertOnlyChildren fails unless dir holds exactly the named entries (no
// temp leftovers, nothing written beside them).
func assertOnlyChildren(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range des {
		got = append(got, d.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func TestInspectInfo(t *testing.T) {
	b := buildZip(t, dir("lib/"), file("lib/a.so", "aaaa", 0o755), file("index.py", "print(1)\n", 0o644), link("lib/b.so", "a.so"), dir("./"))
	info, err := Inspect(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	want := Info{
		Sha256:       base64.StdEncoding.EncodeToString(sum[:]),
		Sha256Hex:    hex.EncodeToString(sum[:]),
		Size:         int64(len(b)),
		UnzippedSize: 4 + 9 + 4,
		Files:        5,
	}
	if info != want {
		t.Fatalf("Info = %+v\nwant   %+v", info, want)
	}
	if DefaultLimits != (Limits{MaxZipped: 52428800, MaxUnzipped: 262144000, MaxFiles: 20000}) {
		t.Fatalf("DefaultLimits = %+v", DefaultLimits)
	}
}

func TestExtractModesAndLinks(t *testing.T) {
	old := syscall.Umask(0o077) // modes must not depend on the caller's umask
	defer syscall.Umask(old)
	b := buildZip(t,
		file("bootstrap", "#!/bin/sh\n", 0o755),
		file("bin/tool", "t", 0o700),
		file("data.json", "{}", 0o600),
		file("setuid", "s", fs.ModeSetuid|0o4755),
		file("readonly", "r", 0o444),
		file("lib/libfoo.so.1", "elf", 0o755),
		link("lib/libfoo.so", "libfoo.so.1"),
		link("current", "lib"),
		dir("empty/"),
		dir("./"),
	)
	dst := filepath.Join(t.TempDir(), "fn")
	if err := Extract(context.Background(), b, dst, Limits{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		".":               fs.ModeDir | 0o755,
		"bootstrap":       0o755,
		"bin":             fs.ModeDir | 0o755,
		"bin/tool":        0o755,
		"data.json":       0o644,
		"setuid":          0o755,
		"readonly":        0o644,
		"lib":             fs.ModeDir | 0o755,
		"lib/libfoo.so.1": 0o755,
		"lib/libfoo.so":   fs.ModeSymlink,
		"current":         fs.ModeSymlink,
		"empty":           fs.ModeDir | 0o755,
	}
	got := treeModes(t, dst)
	for name, m := range want {
		if g, ok := got[name]; !ok || g != m && !(m == fs.ModeSymlink && g.Type() == fs.ModeSymlink) {
			t.Errorf("%s: mode %v, want %v", name, g, m)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tree has %d entries, want %d: %v", len(got), len(want), got)
	}
	if tgt, _ := os.Readlink(filepath.Join(dst, "lib/libfoo.so")); tgt != "libfoo.so.1" {
		t.Errorf("link target %q", tgt)
	}
	if data, err := os.ReadFile(filepath.Join(dst, "current/libfoo.so")); err != nil || string(data) != "elf" {
		t.Errorf("through links: %q %v", data, err)
	}
}

func TestExtractWithoutUnixModes(t *testing.T) {
	b := buildZip(t, noMode("bootstrap", "#!/bin/sh"), noMode("sub/bootstrap", "x"), noMode("handler.py", "x"), noMode(`dir\nested.txt`, "n"))
	dst := filepath.Join(t.TempDir(), "fn")
	if err := Extract(context.Background(), b, dst, Limits{}); err != nil {
		t.Fatal(err)
	}
	got := treeModes(t, dst)
	for name, m := range map[string]fs.FileMode{"bootstrap": 0o755, "sub/bootstrap": 0o644, "handler.py": 0o644, "dir/nested.txt": 0o644, "dir": fs.ModeDir | 0o755} {
		if got[name] != m {
			t.Errorf("%s: mode %v, want %v", name, got[name], m)
		}
	}
}

func treeModes(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExtractTargetMustNotExist(t *testing.T) {
	b := buildZip(t, file("a", "a", 0o644))
	for _, pre := range []func(string) error{
		func(p string) error { return os.Mkdir(p, 0o755) },                 // empty dir: rename(2) would replace it
		func(p string) error { return os.WriteFile(p, nil, 0o644) },        // a file
		func(p string) error { return os.Symlink("/nonexistent-kiln", p) }, // a dangling link
	} {
		base := t.TempDir()
		dst := filepath.Join(base, "out")
		if err := pre(dst); err != nil {
			t.Fatal(err)
		}
		if err := Extract(context.Background(), b, dst, Limits{}); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("err = %v, want fs.ErrExist", err)
		}
		assertOnlyChildren(t, base, "out")
	}
}

func TestRenameNoReplaceRace(t *testing.T) {
	base := t.TempDir()
	from, to := filepath.Join(base, "from"), filepath.Join(base, "to")
	os.Mkdir(from, 0o755)
	os.Mkdir(to, 0o755) // appeared after Extract's check
	if err := renameNoReplace(from, to); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
}

func TestExtractCancelled(t *testing.T) {
	var ents []zent
	for i := range 50 {
		ents = append(ents, file(filepath.Join("d", strings.Repeat("f", i+1)), strings.Repeat("x", 1<<16), 0o644))
	}
	b := buildZip(t, ents...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	base := t.TempDir()
	if err := Extract(ctx, b, filepath.Join(base, "out"), Limits{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	assertOnlyChildren(t, base)

	// Cancelled mid-way, while files are being written.
	for _, after := range []int32{3, 20, 60} {
		ctx := &cancelAfter{Context: context.Background()}
		ctx.left.Store(after)
		if err := Extract(ctx, b, filepath.Join(base, "out"), Limits{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("after %d checks: err = %v", after, err)
		}
		assertOnlyChildren(t, base)
	}
}

// cancelAfter is a context that reports cancellation once Err has been
// asked a given number of times, to cancel at a precise point of Extract.
type cancelAfter struct {
	context.Context
	left atomic.Int32
}

func (c *cancelAfter) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestExtractBudget drives the written-bytes cap directly: archive/zip
// already refuses more bytes than an entry declares, so through Extract the
// cap is a second line that a zip cannot reach on its own.
func TestExtractBudget(t *testing.T) {
	b := buildZip(t, file("a", strings.Repeat("a", 5000), 0o644))
	_, entries, err := inspect(b, Limits{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	x := extractor{ctx: context.Background(), root: root, budget: 4096, max: 4096, buf: make([]byte, 1024), dirs: map[string]bool{}}
	err = x.writeFile(entries[0])
	checkErr(t, err, codeInvalid, "Unzipped size must be smaller than 4096 bytes")
	if fi, err := root.Stat("a"); err != nil || fi.Size() > 4096 {
		t.Fatalf("wrote %v bytes (%v)", fi.Size(), err)
	}
}

func TestZipDirRoundTrip(t *testing.T) {
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(src, "bootstrap"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "lib", "deep", "er"), 0o755))
	must(os.MkdirAll(filepath.Join(src, "empty"), 0o755))
	must(os.WriteFile(filepath.Join(src, "lib", "deep", "er", "data.bin"), bytes.Repeat([]byte{0, 1, 2, 3}, 10000), 0o644))
	must(os.WriteFile(filepath.Join(src, "lib", "libx.so.1"), []byte("elf"), 0o755))
	must(os.Symlink("libx.so.1", filepath.Join(src, "lib", "libx.so")))
	must(os.Symlink("lib/deep", filepath.Join(src, "deep")))
	must(os.WriteFile(filepath.Join(src, "README"), []byte("read me"), 0o600))

	z1, err := ZipDir(src)
	must(err)
	// Same tree, other timestamps: same bytes.
	must(os.Chtimes(filepath.Join(src, "README"), time.Now(), time.Now().Add(-time.Hour)))
	z2, err := ZipDir(src)
	must(err)
	if !bytes.Equal(z1, z2) {
		t.Fatal("ZipDir is not deterministic")
	}
	// Through a symlink to the directory.
	alias := filepath.Join(t.TempDir(), "alias")
	must(os.Symlink(src, alias))
	z3, err := ZipDir(alias)
	must(err)
	if !bytes.Equal(z1, z3) {
		t.Fatal("ZipDir via a symlinked dir differs")
	}

	zr, err := zip.NewReader(bytes.NewReader(z1), int64(len(z1)))
	must(err)
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	wantNames := "README,bootstrap,deep,empty/,lib/,lib/deep/,lib/deep/er/,lib/deep/er/data.bin,lib/libx.so,lib/libx.so.1"
	if got := strings.Join(names, ","); got != wantNames {
		t.Fatalf("entries %s\nwant    %s", got, wantNames)
	}

	dst := filepath.Join(t.TempDir(), "out")
	must(Extract(context.Background(), z1, dst, Limits{}))
	srcModes, dstModes := treeModes(t, src), treeModes(t, dst)
	for name, m := range srcModes {
		want := m
		switch {
		case m.IsDir():
			want = fs.ModeDir | 0o755
		case m.Type() == 0 && m&0o111 != 0:
			want = 0o755
		case m.Type() == 0:
			want = 0o644
		}
		got := dstModes[name]
		if m.Type() == fs.ModeSymlink {
			if got.Type() != fs.ModeSymlink {
				t.Errorf("%s: not a symlink after round trip", name)
			}
			a, _ := os.Readlink(filepath.Join(src, name))
			b, _ := os.Readlink(filepath.Join(dst, name))
			if a != b {
				t.Errorf("%s: link %q became %q", name, a, b)
			}
			continue
		}
		if got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
		if m.Type() == 0 {
			a, _ := os.ReadFile(filepath.Join(src, name))
			b, _ := os.ReadFile(filepath.Join(dst, name))
			if !bytes.Equal(a, b) {
				t.Errorf("%s: contents differ", name)
			}
		}
	}
	if len(srcModes) != len(dstModes) {
		t.Errorf("source has %d entries, extracted %d", len(srcModes), len(dstModes))
	}
}

func TestZipDirRefusesSpecialFiles(t *testing.T) {
	src := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, err := ZipDir(src); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Fatalf("err = %v", err)
	}
}

// TestCentralDirectoryBound checks that a zip whose end record claims one
// entry but whose directory holds 65537 is refused before archive/zip parses
// them all (archive/zip compares the count only modulo 65536).
func TestCentralDirectoryBound(t *testing.T) {
	var ents []zent
	for i := range 65537 {
		// Stored, empty: cheap to write and read back.
		ents = append(ents, zent{raw: &zip.FileHeader{Name: "f" + itoa(i), Method: zip.Store}})
	}
	b := buildZip(t, ents...)
	// Make the zip64 end record claim a single entry.
	p := bytes.LastIndex(b, []byte("PK\x06\x06"))
	if p < 0 {
		t.Fatal("no zip64 end record")
	}
	binary.LittleEndian.PutUint64(b[p+24:], 1)
	binary.LittleEndian.PutUint64(b[p+32:], 1)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(zr.File) != 65537 {
		t.Fatalf("archive/zip read %d entries (%v); the test no longer shows the wrap", len(zr.File), err)
	}
	if n := centralHeaderBound(b); n != 65537 {
		t.Fatalf("bound = %d, want 65537", n)
	}
	_, err = Inspect(b, Limits{MaxFiles: 100})
	checkErr(t, err, codeZip, "Could not unzip uploaded file: too many files")
	if _, err := Inspect(b, Limits{MaxFiles: 70000}); err != nil {
		t.Fatalf("within limit: %v", err)
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}
